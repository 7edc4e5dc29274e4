"""The inference fast path (archspec/ops/fastpath.py): kernels that compute the same output another
way inside `fast()` must still compute the definition (naive loops), and leave measurement alone."""

from __future__ import annotations

import naive
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from archspec.ops import REGISTRY, MatMul, Weights, conv, windows
from archspec.ops.base import Activation, pair
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


@pytest.mark.parametrize(
    "fields, in_channels, size",
    [
        ({"out_channels": 32, "kernel": 3, "padding": 1, "groups": 8}, 16, 9),  # small products: NumPy's matmul
        ({"out_channels": 256, "kernel": 3, "stride": 2, "padding": 1, "groups": 2}, 256, 16),  # BLAS's batch
    ],
)
def test_a_grouped_conv_on_one_image_is_one_stack_of_products(monkeypatch, fields, in_channels, size):
    """On the fast path a grouped conv on one image multiplies its groups' columns as one stack
    (MatMul.batched; the second case's products, 128 x 1152 x 64, are large enough for BLAS's batched call):
    the convolution, with the definition's multiply-adds counted."""
    rng = np.random.default_rng(9)
    x = rng.normal(size=(1, in_channels, size, size)).astype(np.float32)
    op, tensors = _conv(fields, in_channels, rng)
    stacks = []
    original = MatMul.batched
    monkeypatch.setattr(MatMul, "batched", lambda self, a, b, out: stacks.append(a.shape) or original(self, a, b, out))
    mm = MatMul()
    with fast():
        got = op.forward([x], Weights(tensors, "c"), mm)
    groups = fields["groups"]
    depth = in_channels // groups * 9
    assert stacks == [(groups, fields["out_channels"] // groups, depth)]
    want = naive.conv2d(x, tensors["weight"], tensors["bias"], pair(op.stride), (1, 1), (1, 1), groups)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert mm.macs == op.macs([x.shape[1:]], got.shape[1:])


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


def _silu(y):
    return y / (1 + np.exp(-y.astype(np.float64)))


@settings(max_examples=40, deadline=None)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(2, 5),  # (one input channel and one group is a depthwise conv)
    out_channels=st.integers(1, 5),
    height=st.integers(1, 7),
    width=st.integers(1, 7),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    bias=st.booleans(),
    affine=st.booleans(),
    activation=st.sampled_from([None, "relu6", "silu"]),
    compiled_transforms=st.booleans(),
    four_by_four=st.booleans(),
    one_tile_row_a_block=st.booleans(),
    channels_last_input=st.booleans(),
)
def test_winograd_is_the_convolution(
    batch,
    channels,
    out_channels,
    height,
    width,
    padding,
    bias,
    affine,
    activation,
    compiled_transforms,
    four_by_four,
    one_tile_row_a_block,
    channels_last_input,
):
    """F(2x2, 3x3), and with the compiled transforms F(4x4, 3x3), on the fast path (thresholds lowered so
    that small layers take it): odd and even sizes, partial tiles, any padding, with and without bias, a
    fused per-channel affine (an inference batch norm) and a fused activation, with the NumPy transforms
    and with the compiled ones (in blocks of one tile row, or one block), against naive loops."""
    assume(height + 2 * padding[0] >= 3 and width + 2 * padding[1] >= 3)
    rng = np.random.default_rng(batch * 1000 + channels * 100 + height * 10 + width)
    x = rng.normal(size=(batch, channels, height, width)).astype(np.float32)
    if channels_last_input:  # as a depthwise conv leaves its output on the fast path
        x = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    fields = {"out_channels": out_channels, "kernel": 3, "padding": list(padding), "bias": bias}
    op, tensors = _conv(fields, channels, rng)
    act = {None: None, "relu6": Activation(lo=0.0, hi=6.0), "silu": Activation(silu=True)}[activation]
    scale, shift = rng.normal(size=(2, out_channels)).astype(np.float32)
    mm = MatMul()
    with pytest.MonkeyPatch.context() as patch, fast():
        _every_layer_takes_winograd(patch)
        if not compiled_transforms:
            patch.setattr(conv, "kernels", lambda: None)
        four_by_four = four_by_four and compiled_transforms
        if not four_by_four:
            patch.setattr(conv, "WINOGRAD43_MIN_OUTPUT", 10**9)
        if one_tile_row_a_block:
            patch.setattr(conv, "WINOGRAD_BLOCK_BYTES", 1)
        if affine or act is not None:
            got = op.forward_fused([x], Weights(tensors, "c"), mm, (lambda c: (scale, shift)) if affine else None, act)
        else:
            got = op.forward([x], Weights(tensors, "c"), mm)
    want = naive.conv2d(x, tensors["weight"], tensors.get("bias"), (1, 1), padding, (1, 1), 1)
    if affine:
        want = want * scale.reshape(-1, 1, 1) + shift.reshape(-1, 1, 1)
    if activation == "relu6":
        want = np.clip(want, 0, 6)
    elif activation == "silu":
        want = _silu(want)
    assert got.shape == want.shape and got.flags.c_contiguous and got.dtype == np.float32
    if four_by_four:  # its transforms multiply by up to 8 and 1/24: float32 error about 1e-5 of the largest output
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(1.0, float(np.abs(want).max())) * 4)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # It did run as Winograd: 16 products per 2x2 output tile (36 per 4x4 tile with F(4x4, 3x3)), plus the
    # kernels' transform (as many per channel pair, times 9 taps), not 9 per output pixel.
    tile, positions = (4, 36) if four_by_four else (2, 16)
    tiles = batch * -(-want.shape[2] // tile) * -(-want.shape[3] // tile)
    assert mm.macs == positions * out_channels * channels * (tiles + 9)


@pytest.mark.parametrize("layout", ["one block", "blocks"])
@pytest.mark.parametrize("activation", [None, Activation(lo=0.0)])
@pytest.mark.parametrize("affine", [False, True])
def test_the_compiled_winograd_transforms_are_the_numpy_ones_bit_for_bit(monkeypatch, layout, activation, affine):
    """The compiled transforms add in the NumPy transforms' order: in one block (the same products) the
    outputs are equal bit for bit; in blocks of tile rows BLAS forms products of other widths and may sum
    them in another order, so they agree to float32 round-off. With a fused batch norm, whose scale goes
    on the output here (the weights, 36 x 40 x 9, outnumber the outputs, 2 x 36 x 13 x 10)."""
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 40, 13, 10)).astype(np.float32)  # odd height: the last tile row is cropped
    op, tensors = _conv({"out_channels": 36, "kernel": 3, "padding": 1}, 40, rng)
    scale, shift = rng.normal(size=(2, 36)).astype(np.float32)

    def run(compiled: bool):
        with pytest.MonkeyPatch.context() as patch, fast():
            _every_layer_takes_winograd(patch)
            patch.setattr(conv, "WINOGRAD43_MIN_OUTPUT", 10**9)  # F(2x2, 3x3) both ways
            if not compiled:
                patch.setattr(conv, "kernels", lambda: None)
            if layout == "blocks":  # 3 tile rows a block: 7 rows in blocks of 3, 3 and 1
                patch.setattr(conv, "WINOGRAD_BLOCK_BYTES", 16 * 2 * 40 * 5 * 4 * 3)
            norm = (lambda channels: (scale, shift)) if affine else None
            return op.forward_fused([x], Weights(tensors, "c"), MatMul(), norm, activation)

    compiled, numpy = run(True), run(False)
    if affine:  # and both are the convolution, scaled and shifted
        want = naive.conv2d(x, tensors["weight"], tensors["bias"], (1, 1), (1, 1), (1, 1), 1)
        want = want * scale.reshape(-1, 1, 1) + shift.reshape(-1, 1, 1)
        if activation is not None:
            want = np.maximum(want, 0)
        np.testing.assert_allclose(compiled, want, rtol=1e-4, atol=1e-4)
    if layout == "one block":
        np.testing.assert_array_equal(compiled, numpy)
    else:
        np.testing.assert_allclose(compiled, numpy, rtol=1e-5, atol=1e-5)


def test_winograd_takes_only_the_layers_it_pays_for(monkeypatch):
    """With the compiled transforms (see conv.WINOGRAD_COMPILED_MIN_CHANNELS), measured in whole networks:
    ResNet-50's 64 to 256 channels at 56 x 56 to 14 x 14, DenseNet-121's 128 -> 32 down to 7 x 7 and VGG16's
    64 to 512 channels down to 28 x 28 take it; 512 -> 512 at 14 x 14 and 7 x 7 (16 MiB of transformed
    weights) and VGG16's 3-channel first layer do not, nor do stride 2, dilation and grouped convs."""
    op = REGISTRY["conv2d"](name="c", op="conv2d", out_channels=512, kernel=3, padding=1)
    assert conv.kernels() is not None  # numba is a dependency
    assert op._winograd_pays((1, 512, 28, 28), (3, 3), (1, 1), (1, 1), 28 * 28)
    assert not op._winograd_pays((1, 512, 14, 14), (3, 3), (1, 1), (1, 1), 14 * 14)
    assert not op._winograd_pays((1, 512, 7, 7), (3, 3), (1, 1), (1, 1), 7 * 7)
    assert op._winograd_pays((4, 512, 14, 14), (3, 3), (1, 1), (1, 1), 14 * 14)  # 4 images pay for it
    assert not op._winograd_pays((1, 512, 56, 56), (3, 3), (2, 2), (1, 1), 28 * 28)
    assert not op._winograd_pays((1, 512, 56, 56), (3, 3), (1, 1), (2, 2), 52 * 52)
    grouped = REGISTRY["conv2d"](name="c", op="conv2d", out_channels=512, kernel=3, padding=1, groups=2)
    assert not grouped._winograd_pays((1, 512, 28, 28), (3, 3), (1, 1), (1, 1), 28 * 28)
    for c, o, size in [(256, 256, 14), (128, 128, 28), (64, 64, 56), (128, 32, 7), (64, 64, 224)]:
        layer = REGISTRY["conv2d"](name="c", op="conv2d", out_channels=o, kernel=3, padding=1)
        assert layer._winograd_pays((1, c, size, size), (3, 3), (1, 1), (1, 1), size * size), (c, o, size)
    first = REGISTRY["conv2d"](name="c", op="conv2d", out_channels=64, kernel=3, padding=1)
    assert not first._winograd_pays((1, 3, 224, 224), (3, 3), (1, 1), (1, 1), 224 * 224)
    # With the NumPy transforms (no numba), measured on VGG16's shapes (see conv.WINOGRAD_MIN_CHANNELS):
    # 256 -> 256 channels at 56 x 56 and 512 -> 512 at 28 x 28 take it; 512 at 14 x 14 and 128 channels do not.
    monkeypatch.setattr(conv, "kernels", lambda: None)
    assert op._winograd_pays((1, 512, 28, 28), (3, 3), (1, 1), (1, 1), 28 * 28)
    assert op._winograd_pays((1, 256, 56, 56), (3, 3), (1, 1), (1, 1), 56 * 56)
    assert not op._winograd_pays((1, 512, 14, 14), (3, 3), (1, 1), (1, 1), 14 * 14)
    assert not op._winograd_pays((1, 128, 56, 56), (3, 3), (1, 1), (1, 1), 56 * 56)
    # A batch whose transforms would pass WINOGRAD_MAX_BYTES runs as im2col in row blocks.
    assert not op._winograd_pays((64, 512, 28, 28), (3, 3), (1, 1), (1, 1), 28 * 28)


def test_winograd_takes_four_by_four_tiles_where_they_pay():
    """F(4x4, 3x3) (see conv.WINOGRAD43_MIN_OUTPUT and WINOGRAD43_WIDE_OUTPUT), measured in whole networks: in
    a session ResNet-50's 64 -> 64 at 56 x 56, DenseNet-121's 128 -> 32 at 56 x 56 and VGG16's 64 to 512
    channels at 224 x 224 to 28 x 28 take it; 14 x 14 and 7 x 7 outputs, DenseNet's 128 -> 32 at 28 x 28 and
    ResNet-50's 128 -> 128 at 28 x 28 (whose F(2x2) products are large enough to batch) do not. Without a
    session, VGG16's 512 -> 512 at 28 x 28 does not either (its kernels' transform, paid on every call:
    512 * 512 pairs * 784 is 16x 128 * 128 * 784)."""

    def takes(c, o, size, kept, images=1):
        layer = REGISTRY["conv2d"](name="c", op="conv2d", out_channels=o, kernel=3, padding=1)
        return layer._winograd43_pays(images, c, size * size, kept)

    for c, o, size in [(64, 64, 56), (128, 32, 56), (64, 64, 224), (256, 256, 56), (256, 512, 28), (512, 512, 28)]:
        assert takes(c, o, size, kept=True), (c, o, size)
    for c, o, size in [(256, 256, 14), (512, 512, 14), (512, 512, 7), (128, 32, 28), (128, 32, 14), (128, 128, 28)]:
        assert not takes(c, o, size, kept=True), (c, o, size)
    for c, o, size in [(64, 64, 56), (64, 64, 224), (256, 256, 56)]:
        assert takes(c, o, size, kept=False), (c, o, size)
    assert not takes(128, 128, 28, kept=False)
    assert not takes(512, 512, 28, kept=False)
    assert takes(512, 512, 28, kept=False, images=16)  # 16 images pay for the transform


def _every_layer_takes_winograd(patch: pytest.MonkeyPatch) -> None:
    """Every dense 3x3 stride-1 layer runs as Winograd, as F(4x4, 3x3) with the compiled transforms."""
    patch.setattr(conv, "WINOGRAD_MIN_CHANNELS", 1)
    patch.setattr(conv, "WINOGRAD_MIN_OUTPUT", 1)
    patch.setattr(conv, "WINOGRAD_COMPILED_MIN_CHANNELS", 1)
    patch.setattr(conv, "WINOGRAD_REFERENCE_PAIRS", 10**12)
    patch.setattr(conv, "WINOGRAD43_MIN_OUTPUT", 1)
    patch.setattr(conv, "WINOGRAD43_MIN_WORK", 1)
    patch.setattr(conv, "WINOGRAD43_WIDE_OUTPUT", 1)
    patch.setattr(conv, "WINOGRAD43_PAIRS", 10**12)


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


def _output_block(padded_size, kernel, stride, dilation, rows):
    """(output width, (start, stop)): the windows that fit a padded map of `padded_size` (H, W), and a block of
    their output rows, `rows` = (first, count) clipped to them (hypothesis skips kernels that do not fit)."""
    extent = [dilation[a] * (kernel[a] - 1) + 1 for a in range(2)]
    assume(padded_size[0] >= extent[0] and padded_size[1] >= extent[1])
    out = [(padded_size[a] - extent[a]) // stride[a] + 1 for a in range(2)]
    start = min(rows[0], out[0] - 1)
    return out[1], (start, min(out[0], start + rows[1]))


@settings(max_examples=60, deadline=None)
@given(
    channels=st.integers(1, 4),
    size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    kernel=st.tuples(st.integers(1, 7), st.integers(1, 7)),
    stride=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    dilation=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    rows=st.tuples(st.integers(0, 20), st.integers(1, 20)),
)
def test_columns_from_stride_phases_are_the_strided_columns(channels, size, kernel, stride, dilation, rows):
    """windows.window_columns from the stride phases gathers the same im2col array as by strided copies, for any block of
    output rows."""
    width, block = _output_block(size, kernel, stride, dilation, rows)
    padded = np.random.default_rng(0).normal(size=(2, channels, *size)).astype(np.float32)
    want = windows.window_columns(padded, kernel, stride, dilation, width, block)
    got = windows.window_columns(padded, kernel, stride, dilation, width, block, phases=True)
    np.testing.assert_array_equal(got, want)


@settings(max_examples=80, deadline=None)
@given(
    channels=st.integers(1, 3),
    size=st.tuples(st.integers(1, 10), st.integers(1, 10)),
    kernel=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    rows=st.tuples(st.integers(0, 20), st.integers(1, 20)),
    phases=st.booleans(),
)
def test_columns_of_an_input_read_as_padded_are_those_of_its_padded_copy(
    channels, size, kernel, stride, dilation, padding, rows, phases
):
    """windows.window_columns with `padding` reads the input as if zero-padded: the same im2col array as from
    pad_input's copy, every cell written (the reused buffer starts as NaN), for any block of output rows,
    including windows that lie wholly in the padding, by strided copies or from the stride phases."""
    padded_size = [size[a] + 2 * padding[a] for a in range(2)]
    width, block = _output_block(padded_size, kernel, stride, dilation, rows)
    x = np.random.default_rng(1).normal(size=(2, channels, *size)).astype(np.float32)
    want = windows.window_columns(windows.pad_input(x, padding), kernel, stride, dilation, width, block)
    buffer = np.full(want.size + 3, np.nan, dtype=np.float32)
    got = windows.window_columns(x, kernel, stride, dilation, width, block, buffer, phases, padding)
    np.testing.assert_array_equal(got, want)


def test_a_wide_strided_conv_gathers_from_its_stride_phases(monkeypatch):
    """ResNet's stem (7x7, stride 2, 112 wide) on the fast path takes the stride phases; measurement does
    not; both give the definition."""
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 3, 224, 224)).astype(np.float32)
    op, tensors = _conv({"out_channels": 4, "kernel": 7, "stride": 2, "padding": 3}, 3, rng)
    taken = []
    original = windows.window_columns

    def spy(*args):
        taken.append(args[7])  # the `phases` flag
        return original(*args)

    monkeypatch.setattr(conv, "window_columns", spy)
    measured = op.forward([x], Weights(tensors, "c"), MatMul())
    assert taken == [False]
    with fast():
        quick = op.forward([x], Weights(tensors, "c"), MatMul())
    assert taken == [False, True]
    np.testing.assert_array_equal(quick, measured)
    want = naive.conv2d(x, tensors["weight"], tensors["bias"], (2, 2), (3, 3), (1, 1), 1)
    np.testing.assert_allclose(quick, want, rtol=1e-4, atol=1e-4)
