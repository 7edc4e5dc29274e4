"""The inference fast path (archspec/ops/fastpath.py): kernels that compute the same output another
way inside `fast()` must still compute the definition (naive loops), and leave measurement alone."""

from __future__ import annotations

import naive
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from archspec.ops import REGISTRY, MatMul, Weights, conv
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


@settings(max_examples=25, deadline=None)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(2, 5),  # (one input channel and one group is a depthwise conv)
    out_channels=st.integers(1, 5),
    height=st.integers(1, 7),
    width=st.integers(1, 7),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    bias=st.booleans(),
    affine=st.booleans(),
)
def test_winograd_is_the_convolution(batch, channels, out_channels, height, width, padding, bias, affine):
    """F(2x2, 3x3) on the fast path (thresholds lowered so that small layers take it): odd and even
    sizes, partial tiles, any padding, with and without bias and a fused per-channel affine (an
    inference batch norm), against naive loops."""
    assume(height + 2 * padding[0] >= 3 and width + 2 * padding[1] >= 3)
    rng = np.random.default_rng(batch * 1000 + channels * 100 + height * 10 + width)
    x = rng.normal(size=(batch, channels, height, width)).astype(np.float32)
    fields = {"out_channels": out_channels, "kernel": 3, "padding": list(padding), "bias": bias}
    op, tensors = _conv(fields, channels, rng)
    mm = MatMul()
    with pytest.MonkeyPatch.context() as patch, fast():
        _every_layer_takes_winograd(patch)
        if affine:
            scale, shift = rng.normal(size=(2, out_channels)).astype(np.float32)
            got = op.forward_fused([x], Weights(tensors, "c"), mm, lambda channels: (scale, shift))
        else:
            got = op.forward([x], Weights(tensors, "c"), mm)
    want = naive.conv2d(x, tensors["weight"], tensors.get("bias"), (1, 1), padding, (1, 1), 1)
    if affine:
        want = want * scale.reshape(-1, 1, 1) + shift.reshape(-1, 1, 1)
    assert got.shape == want.shape and got.flags.c_contiguous
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # It did run as Winograd: 16 products per 2x2 output tile (plus the kernels' transform), not 36.
    tiles = batch * ((want.shape[2] + 1) // 2) * ((want.shape[3] + 1) // 2)
    assert mm.macs == 16 * out_channels * channels * (tiles + 9)


def test_winograd_takes_only_the_layers_it_pays_for():
    """Measured on VGG16's shapes (see conv.WINOGRAD_*): 256 -> 256 channels at 56 x 56 and 512 -> 512 at
    28 x 28 take it; 512 at 14 x 14, 128 channels, stride 2 and grouped convs do not; neither does
    measurement, outside the fast path."""
    op = REGISTRY["conv2d"](name="c", op="conv2d", out_channels=512, kernel=3, padding=1)
    assert op._winograd_pays((1, 512, 28, 28), (3, 3), (1, 1), (1, 1), 28 * 28)
    assert op._winograd_pays((1, 256, 56, 56), (3, 3), (1, 1), (1, 1), 56 * 56)
    assert not op._winograd_pays((1, 512, 14, 14), (3, 3), (1, 1), (1, 1), 14 * 14)
    assert not op._winograd_pays((1, 128, 56, 56), (3, 3), (1, 1), (1, 1), 56 * 56)
    assert not op._winograd_pays((1, 512, 56, 56), (3, 3), (2, 2), (1, 1), 28 * 28)
    assert not op._winograd_pays((1, 512, 56, 56), (3, 3), (1, 1), (2, 2), 52 * 52)
    grouped = REGISTRY["conv2d"](name="c", op="conv2d", out_channels=512, kernel=3, padding=1, groups=2)
    assert not grouped._winograd_pays((1, 512, 28, 28), (3, 3), (1, 1), (1, 1), 28 * 28)
    # A batch whose transforms would pass WINOGRAD_MAX_BYTES runs as im2col in row blocks.
    assert not op._winograd_pays((64, 512, 28, 28), (3, 3), (1, 1), (1, 1), 28 * 28)


def _every_layer_takes_winograd(patch: pytest.MonkeyPatch) -> None:
    patch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 1)
    patch.setattr(conv, "WINOGRAD_MIN_OUTPUT", 1)


def test_measurement_never_takes_winograd(monkeypatch):
    _every_layer_takes_winograd(monkeypatch)
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1, 3, 6, 6)).astype(np.float32)
    op, tensors = _conv({"out_channels": 4, "kernel": 3, "padding": 1}, 3, rng)
    mm = MatMul()
    op.forward([x], Weights(tensors, "c"), mm)
    assert mm.macs == op.macs([x.shape[1:]], (4, 6, 6))  # the definition's products, exactly


@pytest.mark.parametrize("size", [(3, 3), (9, 8)])
@pytest.mark.parametrize("bias", [True, False])
def test_a_tap_sum_applies_a_fused_affine(size, bias):
    """The per-channel scale of an absorbed batch norm goes into the weights when they are the smaller
    (9 x 8 map: 216 weights, 432 outputs) and onto the output rows as they are cropped when they are not
    (3 x 3 map: 216 weights, 36 outputs); the shift joins the bias."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 6, *size)).astype(np.float32)
    op, tensors = _conv({"out_channels": 4, "kernel": 3, "padding": 1, "bias": bias}, 6, rng)
    scale, shift = rng.normal(size=(2, 4)).astype(np.float32)
    with fast():
        got = op.forward_fused([x], Weights(tensors, "c"), MatMul(), lambda channels: (scale, shift))
    want = naive.conv2d(x, tensors["weight"], tensors.get("bias"), (1, 1), (1, 1), (1, 1), 1)
    want = want * scale.reshape(-1, 1, 1) + shift.reshape(-1, 1, 1)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
