"""Verification keeps its teeth at the speed settings CI uses: a static rule broken on purpose (a
receptive field's padding or stride, a stride in the exact per-unit spans) must make `verify` fail."""

from __future__ import annotations

import pytest

import archspec
from archspec.analysis import receptive_field as rf
from archspec.ops import Window
from archspec.verify import render_report, verify_model

SPEC = """
name: mutants
input: [3, 40, 40]
metadata: {source: hand-written test network}
nodes:
  - {name: conv1, op: conv2d, out_channels: 4, kernel: 3, stride: 2, padding: 1}
  - {name: relu1, op: relu}
  - {name: pool, op: max_pool2d, kernel: 3, stride: 2, padding: 1}
  - {name: conv2, op: conv2d, out_channels: 4, kernel: 3, padding: 1}
  - {name: gap, op: adaptive_avg_pool2d, output_size: 1}
"""


def _textbook_padding(window: Window) -> Window:
    return Window(window.kernel, window.stride, (window.padding[0] + 1, window.padding[1]), window.dilation)


def _textbook_stride(window: Window) -> Window:
    return Window(window.kernel, (window.stride[0] + 1, window.stride[1]), window.padding, window.dilation)


@pytest.mark.parametrize("mutate", [_textbook_padding, _textbook_stride], ids=["padding", "stride"])
def test_a_wrong_textbook_field_fails_verify(write_spec, monkeypatch, mutate):
    honest = rf.apply_window
    monkeypatch.setattr(rf, "apply_window", lambda field, window: honest(field, mutate(window)))
    report = verify_model(archspec.load(write_spec(SPEC)), "mutants", samples=10)
    failed = {c.what for c in report.checks if c.mismatches}
    assert failed == {"receptive fields"}, render_report(report)


@pytest.mark.parametrize("mutate", [_textbook_padding, _textbook_stride], ids=["padding", "stride"])
def test_wrong_exact_spans_fail_verify(write_spec, monkeypatch, mutate):
    honest = rf._window_spans
    monkeypatch.setattr(rf, "_window_spans", lambda spans, window, *a: honest(spans, mutate(window), *a))
    report = verify_model(archspec.load(write_spec(SPEC)), "mutants", samples=10)
    failed = {c.what for c in report.checks if c.mismatches}
    assert failed == {"receptive fields"}, render_report(report)


def test_the_unmutated_network_verifies(write_spec):
    report = verify_model(archspec.load(write_spec(SPEC)), "mutants", samples=10)
    assert report.passed, render_report(report)
