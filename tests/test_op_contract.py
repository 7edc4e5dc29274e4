"""The op contract: every op states every fact about itself, and nothing else names an op."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import numpy as np
import pytest

import archspec
import archspec.verify
from archspec.ops import OP_CLASSES, OP_CONTRACT, REGISTRY, _check_contract
from archspec.ops.base import NoTensors, OpBase, Plain, Pointwise, TrainSaves

ROOT = Path(__file__).resolve().parent.parent / "archspec"


@pytest.mark.parametrize("cls", OP_CLASSES, ids=lambda c: c.__name__)
def test_every_op_declares_the_whole_contract(cls):
    own = [k for k in cls.__mro__ if k not in (OpBase, object) and k.__module__.startswith("archspec")]
    for member in OP_CONTRACT:
        assert any(member in vars(k) for k in own), f"{cls.__name__} does not declare {member}"


def test_an_op_that_forgets_its_macs_rule_is_refused():
    class Forgetful(Plain, Pointwise, OpBase):  # params and buffers given, MACs forgotten
        op: Literal["forgetful"]
        lecture_weights = ()
        absorbs_affine = False

        def channel_affine(self, w, channels):
            return None

        def output_shape(self, in_shapes):
            return in_shapes[0]

        def param_shapes(self, in_shapes):
            return {}

        def buffer_shapes(self, in_shapes):
            return {}

        def train_saves(self, in_shapes, out_shape):
            return TrainSaves()

        def forward(self, xs, w, mm):
            return xs[0]

        def explain(self, in_shapes, out_shape):
            return ["output shape = input shape"]

        def to_onnx(self, g, xs, in_shapes):
            g.node("Identity", xs)

    with pytest.raises(TypeError, match=r"Forgetful.*\['macs'\]"):
        _check_contract((Forgetful,))

    class Complete(Plain, Pointwise, NoTensors, OpBase):
        op: Literal["complete"]

        def output_shape(self, in_shapes):
            return in_shapes[0]

        def train_saves(self, in_shapes, out_shape):
            return TrainSaves()

        def forward(self, xs, w, mm):
            return xs[0]

        def explain(self, in_shapes, out_shape):
            return ["output shape = input shape"]

        def to_onnx(self, g, xs, in_shapes):
            g.node("Identity", xs)

    _check_contract((Complete,))  # mixins count as declarations


def test_no_layer_outside_ops_names_an_op():
    """Op knowledge lives on the op: no `.op == "relu"`-style test anywhere else in the package."""
    names = "|".join(re.escape(tag) for tag in REGISTRY)
    patterns = [
        re.compile(r"\.op\b\s*(==|!=|not in\b|in\b)"),  # op.op == ..., layer.op in (...)
        re.compile(rf"""(==|!=)\s*["']({names})["']"""),  # ... == "relu"
        re.compile(rf"""[{{(]\s*["']({names})["']\s*,"""),  # {"flatten", ...}, ("conv2d", ...)
    ]
    offenders = []
    for path in ROOT.rglob("*.py"):
        if path.parts[-2] == "ops" or path.name == "jsonschema.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.lstrip().startswith("#") and any(p.search(line) for p in patterns):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)


def _verify(tmp_path, body: str):
    path = tmp_path / "net.yaml"
    path.write_text("name: net\ninput: [3, 16, 16]\nmetadata: {source: test}\nnodes:\n" + body)
    return archspec.verify.verify_spec(str(path))


def test_channel_mixing_ops_after_a_feature_map_verify(tmp_path):
    """conv -> softmax over channels -> LRN: the probe feeds two differing channels, so the
    receptive field of a channel-mixing op is measured, not lost."""
    report = _verify(
        tmp_path,
        "  - {name: c, op: conv2d, out_channels: 4, kernel: 3, padding: 1}\n"
        "  - {name: s, op: softmax}\n"
        "  - {name: l, op: lrn, size: 3}\n",
    )
    assert report.passed, report


def test_the_same_input_twice_is_legal(tmp_path):
    """x + x and cat([x, x]) are legal in PyTorch; add is an element-wise sum of its inputs."""
    path = tmp_path / "t.yaml"
    path.write_text(
        "name: t\ninput: [3, 8, 8]\nmetadata: {source: t}\nnodes:\n"
        "  - {name: c, op: relu}\n  - {name: sum, op: add, inputs: [c, c]}\n"
        "  - {name: cat, op: concat, inputs: [sum, sum]}\n"
    )
    model = archspec.load(str(path))
    analysis = model.analyze()
    assert analysis.layers[-1].output_shape == (6, 8, 8)  # 3 + 3 channels
    x = np.arange(3 * 8 * 8, dtype=np.float32).reshape(1, 3, 8, 8) - 90
    y = model.forward(x, {})
    np.testing.assert_array_equal(y[0, :3], 2 * np.maximum(x[0], 0))
    assert archspec.verify.verify_spec(str(path)).passed
