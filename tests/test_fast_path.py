"""The inference fast path (archspec/ops/fastpath.py): kernels that compute the same output another
way inside `fast()` must still compute the definition (naive loops), and leave measurement alone."""

from __future__ import annotations

import naive
import numpy as np
import pytest

from archspec.ops import REGISTRY, MatMul, Weights
from archspec.ops.base import pair
from archspec.ops.fastpath import fast, fast_path
from archspec.reference.forward import cpu_pressure


def _conv(fields, in_channels, rng):
    op = REGISTRY["conv2d"](name="c", op="conv2d", **fields)
    tensors = {
        key: rng.normal(size=shape).astype(np.float32) for key, shape in op.param_shapes([(in_channels, 1, 1)]).items()
    }
    return op, tensors


@pytest.mark.parametrize(
    "fields",
    [
        {"out_channels": 4, "kernel": 3, "padding": 1},  # DenseNet's 3x3: fewer outputs than inputs
        {"out_channels": 4, "kernel": [3, 2], "padding": [2, 0], "dilation": [2, 1], "bias": False},
        {"out_channels": 2, "kernel": 3, "groups": 2},  # no padding, two groups
    ],
)
def test_the_fast_path_convolution_matches_the_definition(fields):
    """Inside fast() a stride-1 conv with fewer output than input channels sums one product per tap
    over padded rows; its output must still be the convolution."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 6, 7, 5)).astype(np.float32)
    op, tensors = _conv(fields, 6, rng)
    with fast():
        assert fast_path()
        got = op.forward([x], Weights(tensors, "c"), MatMul())
    assert not fast_path()
    want = naive.conv2d(
        x, tensors["weight"], tensors.get("bias"), (1, 1), pair(op.padding), pair(op.dilation), op.groups
    )
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("stride", [1, 2])
def test_a_depthwise_conv_is_channels_last_only_on_the_fast_path(stride):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2, 3, 9, 8)).astype(np.float32)
    op, tensors = _conv({"out_channels": 6, "kernel": 3, "stride": stride, "padding": 1, "groups": 3}, 3, rng)
    measured_mm, fast_mm = MatMul(), MatMul()
    measured = op.forward([x], Weights(tensors, "c"), measured_mm)
    with fast():
        quick = op.forward([x], Weights(tensors, "c"), fast_mm)
    want = naive.conv2d(x, tensors["weight"], tensors["bias"], (stride, stride), (1, 1), (1, 1), 3)
    np.testing.assert_allclose(measured, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(quick, measured)
    assert measured.flags.c_contiguous and not quick.flags.c_contiguous  # (N, H, W, C) in memory
    assert measured_mm.macs == fast_mm.macs == op.macs([x.shape[1:]], measured.shape[1:]) * 2


def test_cpu_pressure_reads_a_percentage_or_nothing():
    pressure = cpu_pressure()
    assert pressure is None or 0.0 <= pressure <= 100.0
