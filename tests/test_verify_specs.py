"""`archspec verify specs/*.yaml` passes: every shipped spec's static numbers equal the measured ones.

The default run verifies every spec, with two economies that keep CI well inside its limit on two
busy cores: stochastic depth is checked with DEFAULT_SAMPLES drop masks (the tolerance, 4 standard
errors, widens accordingly: the check stays exact in expectation), and a spec whose verification would
run more than WORK_BUDGET MACs of forward passes at its own input (a batch-2 pass, plus one pass per
drop mask for stochastic depth) is verified at a smaller input (same layers, rules and kernels).
`pytest -m slow` runs the exhaustive variants: the CLI's 400 masks, and every spec at its own input.
"""

from __future__ import annotations

import math

import pytest

import archspec
from archspec.errors import SpecError
from archspec.verify import render_report, verify_model
from conftest import SPECS

SPEC_FILES = sorted(SPECS.glob("*.yaml"))
DEFAULT_SAMPLES = 40
# MACs of all the forward passes one verification runs: VGG-16 (2 x 15.5 G) and the stochastic-depth
# EfficientNets and ConvNeXts beyond B0 (42 passes) are verified at a smaller input by default.
WORK_BUDGET = 20 * 10**9


def verification_work(analysis) -> int:
    """MACs of the forward passes `verify` runs: one pass of batch 2, plus one per sampled drop mask."""
    return analysis.totals.macs * (2 + (DEFAULT_SAMPLES if analysis.stochastic_depth else 0))


def affordable_input(model) -> tuple[int, int, int] | None:
    """None (the spec's input) when it fits WORK_BUDGET; else the spec's input scaled down (MACs grow with
    H x W) to a multiple of 32 pixels that the spec accepts (32 when even that exceeds the budget), or None
    if it accepts none."""
    c, h, w = model.input_shape
    work = verification_work(model.analyze())
    if work <= WORK_BUDGET:
        return None
    scale = math.sqrt(WORK_BUDGET / work)
    # Down from the largest multiple of 32 within budget (at least 32 pixels, the smallest tried).
    for side in range(max(32, int(min(h, w) * scale) // 32 * 32), 31, -32):
        shape = (c, max(32, int(h * side / min(h, w))), max(32, int(w * side / min(h, w))))
        try:
            model.analyze(shape)
        except SpecError:  # a size-pinned layer (e.g. a linear layer's in_features): try the next size
            continue
        return shape
    return None


@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_shipped_spec_verifies(path):
    model = archspec.load(str(path))
    report = verify_model(model, str(path), samples=DEFAULT_SAMPLES, input_shape=affordable_input(model))
    assert report.passed, render_report(report)
    assert all(check.checked for check in report.checks), render_report(report)


@pytest.mark.slow
@pytest.mark.parametrize("path", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_shipped_spec_verifies_in_full(path):
    model = archspec.load(str(path))
    report = verify_model(model, str(path), samples=400)
    assert report.passed, render_report(report)
    assert all(check.checked for check in report.checks), render_report(report)
