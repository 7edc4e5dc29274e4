"""2-D convolution (PyTorch's nn.Conv2d semantics, weight layout O x I/groups x kH x kW)."""

from __future__ import annotations

import threading
from functools import cache
from typing import ClassVar, Literal

from archspec.lazy import numpy as np
from archspec.ops.base import (
    MatMul,
    NonNegativePair,
    OpBase,
    Plain,
    PositiveInt,
    PositivePair,
    Saved,
    ShapeError,
    TrainSaves,
    Weights,
    Window,
    pair,
    require_spatial,
    window_output_size,
)
from archspec.ops.compiled import activate_in_place, add_activate, epilogue, kernel_activation, kernels
from archspec.ops.explain import dot, num, window_size_lines
from archspec.ops.fastpath import fast_path
from archspec.ops.windows import pad_input, window_columns

# Upper bound on one row block of the im2col matrix (see Conv2d.forward): small enough that a big
# layer's matrix (C*kh*kw times its input) is never built whole, large enough that the matrix
# products stay few and large (each BLAS call with threads on a busy machine has a cost).
COLUMN_BLOCK_BYTES = 16 << 20

# Without numba, a strided conv on the fast path gathers its im2col columns from the input's stride phases
# (windows.window_columns with phases, by NumPy slice copies) when its output is at least this wide (measured
# faster from 56 on). With numba every im2col on the fast path does, by one compiled copy
# (`_jit_kernels.columns_from_phases`): inside ResNet-50, its stride-2 3x3 layers and layer 4's 7 x 7 ones
# took 0.04-0.13 ms less each than with NumPy's strided slice copies.
PHASE_MIN_WIDTH = 56

# Winograd's F(2x2, 3x3) (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2016): a 3x3
# convolution over each 4x4 input tile gives a 2x2 output tile with 16 products instead of 36, as
#   Y = A^T [(G g G^T) * (B^T d B)] A.
# On the inference path only, and only where it was measured faster than the other paths on this project's
# 2-core machine, counting the weights' transform, which is redone on every call like every other use of
# the weights. With the NumPy transforms (no numba): VGG16's 256- and 512-channel layers at 56x56 and 28x28
# (1.3-1.5x), hence both channel counts at least 256 (else the elementwise transforms outweigh the products
# saved) and an output of at least 28x28 (else the weights' transform does).
WINOGRAD_MIN_CHANNELS = 256
WINOGRAD_MIN_OUTPUT = 28 * 28
# The transforms' temporaries are about 4x the input plus 4x the output: above this many bytes the
# layer runs as im2col in row blocks instead.
WINOGRAD_MAX_BYTES = 256 << 20
# With the compiled transforms (one pass each): from 32 channels up (VGG's first layer, 3 deep, is faster
# as im2col), as long as the output pays for the weights' transform: at most 256 x 256 (input, output)
# channel pairs per 14 x 14 output pixels per image. Measured in whole networks: ResNet-50's 3x3 layers at
# 56x56, 28x28 and 14x14, DenseNet-121's (128 -> 32 at 56x56 to 7x7) and VGG16's from 64 channels at
# 224x224 to 512 at 28x28 are faster; 512 -> 512 at 14x14 (VGG16's last block) and at 7x7 (ResNet-50's
# layer 4), whose transformed weights are 16 MiB, are slower.
WINOGRAD_COMPILED_MIN_CHANNELS = 32
WINOGRAD_REFERENCE_PAIRS, WINOGRAD_REFERENCE_PIXELS = 256 * 256, 14 * 14
# In an inference session (Model.session), which transforms a layer's kernels once and keeps them, only the
# products' reading of the transformed kernels (16/9 of the weights) is left to pay for: at most 512 x 512
# channel pairs per 14 x 14 output pixels per image. Measured on one layer: 512 -> 512 at 14x14 3.9 ms
# against 6.0 as im2col; 256 -> 256 at 7x7 0.39 against 0.57. 512 -> 512 at 7x7 was level on one layer
# (1.8 against 1.9) and 0.2-0.4 ms slower in ResNet-50's layer 4, where its 16 MiB of transformed kernels
# stream from memory against 9 MiB of weights.
WINOGRAD_KEPT_PAIRS, WINOGRAD_KEPT_PIXELS = 512 * 512, 14 * 14
# Winograd's F(4x4, 3x3) (the same paper): 6x6 input tiles, 4 apart, give 4x4 output tiles with 36 products
# (2.25 per output, against F(2x2, 3x3)'s 4 and the definition's 9), and its transforms move 36/16 values per
# output pixel and channel against F(2x2)'s 4. Compiled transforms only. Its rounding error is larger (about
# 1e-5 of the output's largest value in float32, against 5e-7: its transforms multiply by up to 8 and 1/24),
# and its transformed kernels are 4x the weights (F(2x2)'s 16/9), which stream from memory in a network.
# Measured in whole networks, in a session, against F(2x2) (ms per layer shape, all layers of that shape):
# VGG16's 64 channels at 224x224 to 512 at 28x28 33 + 31 + 31 + 27 against 41 + 42 + 46 + 35; ResNet-50's 64
# at 56x56 and 128 at 28x28 level on a quiet machine, 4.2 and 4.5 against 8.5 and 7.8 when other tenants
# load the memory (F(2x2)'s passes move more data); DenseNet-121's 128 -> 32 at 56x56 9.6 against 10.8.
# Slower: at 14x14 and 7x7 (ResNet-50's 256 -> 256, DenseNet's 128 -> 32: their tiles of 4 overhang the
# output by 2 and 1 rows and columns) and DenseNet's 128 -> 32 at 28x28 (6.7 against 6.4). Hence an output of
# at least WINOGRAD43_MIN_OUTPUT pixels and at least WINOGRAD43_MIN_WORK channel pairs x output pixels per
# image; and without a session (the kernels' transform, 36 x 9 products per channel pair, paid on every
# call) at most WINOGRAD43_PAIRS channel pairs per WINOGRAD43_PIXELS output pixels per image.
WINOGRAD43_MIN_OUTPUT = 28 * 28
WINOGRAD43_MIN_WORK = 64 * 64 * 56 * 56
# Round 8 batched Winograd's products (`MatMul.batched`: one BLAS call, each thread running whole products).
# F(4x4)'s products on ResNet-50's layer 2 (36 of 128 x 128 x 49, at most 10^6 multiply-adds each) are too
# small for that and run on one thread; F(2x2)'s (16 of 128 x 128 x 196) are not: in a session, in the
# network, 1.05-1.11 ms per layer against 1.33-1.48 as F(4x4). So an output under WINOGRAD43_WIDE_OUTPUT
# takes F(4x4) only with at least WINOGRAD43_NARROW_PAIRS channel pairs: VGG16's 256 -> 512 and 512 -> 512 at
# 28 x 28 do (5.2 against 5.9 and 9.2-9.3 against 10.8 ms as F(2x2)). ResNet-50's layer 1 (64 at 56 x 56)
# keeps F(4x4) (1.29-1.45 against 1.39-1.50 ms as batched F(2x2)), and so does DenseNet-121's 128 -> 32 at 56.
WINOGRAD43_WIDE_OUTPUT = 56 * 56
WINOGRAD43_NARROW_PAIRS = 256 * 256
WINOGRAD43_PAIRS, WINOGRAD43_PIXELS = 128 * 128, 28 * 28
# The compiled transforms (Conv2d._winograd_compiled) work on blocks of tile rows whose transformed input
# takes at most this many bytes (VGG16 measured 15% faster with 16 MiB blocks than with 1 MiB ones), and
# place the 16 positions of a block this many bytes past a multiple of 4 KiB (64: measured best; 256 made
# the products slower).
WINOGRAD_BLOCK_BYTES = 16 << 20
WINOGRAD_POSITION_SKEW = 64
# A stride-1 convolution with at least this many output pixels sums its taps (Conv2d._tap_sum) when
# BLAS adds products in place (archspec.ops.blas), a single group and enough input channels (each tap's
# product is a C-deep sum: VGG's first layer, 3 deep, is faster as one 27-deep im2col product).
TAP_SUM_MIN_OUTPUT = 56 * 56
TAP_SUM_MIN_CHANNELS = 16


class Conv2d(Plain, OpBase):
    """Convolution; MACs = out elements x (in_channels / groups) x kH x kW, bias excluded."""

    op: Literal["conv2d"]
    out_channels: PositiveInt
    kernel: PositivePair
    stride: PositivePair = 1
    padding: NonNegativePair = 0
    dilation: PositivePair = 1
    groups: PositiveInt = 1
    bias: bool = True
    in_channels: PositiveInt | None = None  # optional check; inferred from the input otherwise

    lecture_weights: ClassVar[tuple[str, ...]] = ("weight",)

    # ---- static rules ----
    def explain(self, in_shapes, out_shape):
        c = in_shapes[0][0]
        o, ho, wo = out_shape
        (kh, kw), g = pair(self.kernel), self.groups
        per = c // g  # channels each filter sees
        lines = window_size_lines(in_shapes[0], out_shape, self.kernel, self.stride, self.padding, self.dilation)
        lines.append(f"output volume = {o} filters x {ho} x {wo}")
        weights = kh * kw * per * o
        params = f"params = {dot(kh, kw, per, o)} weights"
        params += f" + {o} biases = {num(weights + o)}" if self.bias else f" = {num(weights)}"
        lines.append(params)
        if g > 1:
            lines.append(f"  (groups {g}: each filter sees {c}/{g} = {per} of the {c} input channels)")
        lines.append(f"MACs = {dot(ho, wo, o)} output units × {dot(kh, kw, per)} = {num(ho * wo * o * kh * kw * per)}")
        return lines

    def output_shape(self, in_shapes):
        c, h, w = require_spatial(in_shapes[0], "conv2d")
        if self.in_channels is not None and self.in_channels != c:
            raise ShapeError(
                f"in_channels is {self.in_channels} but the input has {c} channels",
                "fix in_channels, or remove it (it is inferred from the input)",
            )
        for what, count in (("input", c), ("output", self.out_channels)):
            if count % self.groups:
                raise ShapeError(
                    f"groups={self.groups} must divide the {what} channels, but {self.groups} does not divide {count}",
                    "choose groups that divides both the input and the output channels",
                )
        win = self.rf_rule(in_shapes)
        out_h = window_output_size(h, win.kernel[0], win.stride[0], win.padding[0], False)
        out_w = window_output_size(w, win.kernel[1], win.stride[1], win.padding[1], False)
        return (self.out_channels, out_h, out_w)

    def buffer_shapes(self, in_shapes):
        return {}

    def param_shapes(self, in_shapes):
        kh, kw = pair(self.kernel)
        shapes = {"weight": (self.out_channels, in_shapes[0][0] // self.groups, kh, kw)}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves((Saved("input", what="input"),))  # and the weight (a parameter); never the bias

    def macs(self, in_shapes, out_shape):
        kh, kw = pair(self.kernel)
        c_out, h, w = out_shape
        return c_out * h * w * (in_shapes[0][0] // self.groups) * kh * kw

    def rf_rule(self, in_shapes):
        k, d = pair(self.kernel), pair(self.dilation)
        return Window(
            kernel=(d[0] * (k[0] - 1) + 1, d[1] * (k[1] - 1) + 1),
            stride=pair(self.stride),
            padding=pair(self.padding),
            dilation=d,
        )

    # ---- kernel: im2col in row blocks (one slice copy per tap), one batched matrix product per block ----
    absorbs_affine: ClassVar[bool] = True
    absorbs_activation: ClassVar[bool] = True
    absorbs_residual: ClassVar[bool] = True

    def channel_affine(self, w, channels):
        return None  # it mixes channels

    def forward(self, xs, w: Weights, mm: MatMul):
        return self._forward(xs, w, mm, None, None)

    def forward_fused(self, xs, w: Weights, mm: MatMul, affine, activation=None, residual=None):
        scale_shift = None if affine is None else affine(self.out_channels)
        if affine is not None and scale_shift is None:
            return None
        return self._forward(xs, w, mm, scale_shift, activation, residual)

    def _forward(self, xs, w: Weights, mm: MatMul, affine, activation, residual=None):
        """The convolution, followed by y * scale + shift per output channel when `affine` is given: the
        scale goes onto the output (in the epilogue's pass) or into a copy of the weights, the shift joins
        the bias. Either way no extra pass of a separate batch-norm kernel. Then + residual when one is
        given (a residual block's add), and the activation when one is given (a ReLU's, a SiLU's), in the
        same pass as the bias (`compiled.epilogue`) where the output's last pass is the epilogue and the
        residual is laid out as the output; otherwise in one more pass (`_add_residual`)."""
        x = xs[0]
        n, c, _, _ = x.shape
        g, kh, kw = self.groups, *pair(self.kernel)
        stride, dilation = pair(self.stride), pair(self.dilation)
        weight = raw_weight = w.param("weight", (self.out_channels, c // g, kh, kw))
        bias = w.param("bias", (self.out_channels,)) if self.bias else None
        padding = pair(self.padding)
        padded_size = [x.shape[2 + a] + 2 * padding[a] for a in range(2)]
        extent = [dilation[a] * ((kh, kw)[a] - 1) + 1 for a in range(2)]
        if padded_size[0] < extent[0] or padded_size[1] < extent[1]:
            raise ValueError(f"window {extent} does not fit in padded input {tuple(padded_size)}")
        ho, wo = ((padded_size[a] - extent[a]) // stride[a] + 1 for a in range(2))
        scale_out = None  # a per-channel scale still to apply to the output
        if affine is not None:
            scale, shift = (np.asarray(a, dtype=weight.dtype) for a in affine)
            bias = shift if bias is None else bias * scale + shift
            # On the fast path the compiled epilogues multiply in the pass they make anyway: the scale then
            # costs nothing on the output, and a copy of the weights on them. Otherwise, scale the smaller.
            free_on_output = c != g and fast_path() and kernels() is not None
            if c == g or (not free_on_output and weight.size <= n * self.out_channels * ho * wo):
                weight = weight * scale.reshape(-1, 1, 1, 1)
            else:
                scale_out = scale
        depth = (c // g) * kh * kw
        later = activation  # with a residual, the activation comes after it, whichever pass adds it
        if residual is not None:
            activation = None
        if c == g:  # depthwise (each output channel reads one input channel): no matrix product to batch
            out = self._depthwise(x, weight, bias, activation, (ho, wo), stride, dilation, mm)
            return out if residual is None else _add_residual(out, residual, later)
        if (kh, kw) == (1, 1) and stride == (1, 1) and g == 1 and not any(padding) and _channels_last(x):
            # A pointwise conv on a channels-last map (after a depthwise conv): (N, H*W, C) is a free view,
            # so the product (H*W, C) @ (C, O) needs no copy and leaves its output channels-last too.
            out = mm(x.transpose(0, 2, 3, 1).reshape(n, ho * wo, c), weight.reshape(self.out_channels, c).T)
            out4 = out.reshape(n, ho, wo, self.out_channels).transpose(0, 3, 1, 2)
            return _epilogue(out4, out, scale_out, bias, activation, residual, later, channels_last=True)
        # An inference session keeps the transformed kernels of the weights as given (`Weights.derived`).
        kept = w.keeps_derived and weight is raw_weight
        if fast_path() and self._winograd_pays(x.shape, (kh, kw), stride, dilation, ho * wo, kept):
            # (a scale on the output, not on a copy of the weights: 2.4 MB for ResNet-50's 256-channel layers)
            out = self._winograd(x, weight, scale_out, bias, activation, padding, (ho, wo), mm, w if kept else None)
            return out if residual is None else _add_residual(out, residual, later)
        if stride == (1, 1) and (kh, kw) != (1, 1) and fast_path():
            from archspec.ops import blas  # (ctypes: not imported for analysis alone)

            # Fewer outputs than inputs (DenseNet's 128 -> 32): the output passes are cheap. A large map
            # (VGG16's first four layers, ResNet's 56 x 56 stage): the im2col copy costs more than the
            # taps' products, which BLAS then adds in place (measured 1.2-1.35x faster). BLAS's in-place
            # sum pays on large maps only: on DenseNet's 28 x 28 and smaller it was measured 1.15-1.25x
            # slower than NumPy's product followed by a sum.
            in_place = ho * wo >= TAP_SUM_MIN_OUTPUT and blas.available(x.dtype)
            if self.out_channels < c or (in_place and g == 1 and c >= TAP_SUM_MIN_CHANNELS):
                if scale_out is not None and weight.size <= n * self.out_channels * ho * wo:
                    weight, scale_out = weight * scale_out.reshape(-1, 1, 1, 1), None  # (its own pass otherwise)
                out = self._tap_sum(x, weight, bias, scale_out, activation, (ho, wo), mm, in_place)
                return out if residual is None else _add_residual(out, residual, later)
        # (O, C/G, kh, kw) -> (G, O/G, C/G*kh*kw): a free reshape.
        kernel = weight.reshape(g, self.out_channels // g, depth)
        if (kh, kw) == (1, 1) and stride == (1, 1):
            # A 1x1 stride-1 conv's im2col matrix is the (padded) input itself: no copy at all.
            out = mm(kernel, pad_input(x, padding).reshape(n, g, depth, ho * wo))  # (N, G, O/G, Ho*Wo)
            out4, out3 = out.reshape(n, self.out_channels, ho, wo), out.reshape(n, self.out_channels, ho * wo)
            return _epilogue(out4, out3, scale_out, bias, activation, residual, later)
        out = np.empty((n, g, self.out_channels // g, ho * wo), dtype=np.result_type(x, weight))
        # Output rows in blocks, so the im2col matrix in memory is at most ~COLUMN_BLOCK_BYTES at a time.
        block = max(1, COLUMN_BLOCK_BYTES // (n * c * kh * kw * wo * x.itemsize))
        # On the fast path the columns come from the input's stride phases (for stride 1: the input, padded)
        # by one compiled copy where numba is there, else by NumPy slice copies where that pays (PHASE_MIN_WIDTH).
        # (kernels() only on the fast path: measurement never imports numba.)
        phased = (
            fast_path()
            and kh * kw > 1
            and ((kernels() is not None and x.dtype == np.float32) or (stride != (1, 1) and wo >= PHASE_MIN_WIDTH))
        )
        buffer = np.empty(n * c * kh * kw * min(block, ho) * wo, dtype=x.dtype)  # reused by every block
        for top in range(0, ho, block):
            bottom = min(ho, top + block)
            # (N, C, kh, kw, rows, Wo) -> (N, G, C/G*kh*kw, rows*Wo): the im2col matrix, a free reshape.
            # (x read as zero-padded: no padded copy)
            cols = window_columns(x, (kh, kw), stride, dilation, wo, (top, bottom), buffer, phased, padding)
            if bottom - top == ho:  # one block: the product goes straight into the output
                if g > 1 and n == 1 and fast_path():
                    # The groups' products as one stack (`MatMul.batched`: one BLAS call where they are large
                    # enough), not a broadcast over images: in-process A/B, ResNeXt-50 86 -> 75 ms, RegNet-Y-1.6GF
                    # 45.5 -> 43.2, RegNet-X-8GF 144 -> 141.
                    mm.batched(kernel, cols.reshape(g, depth, ho * wo), out.reshape(g, self.out_channels // g, ho * wo))
                else:
                    mm(kernel, cols.reshape(n, g, depth, ho * wo), out=out)
            else:  # (N, G, O/G, rows*Wo)
                out[..., top * wo : bottom * wo] = mm(kernel, cols.reshape(n, g, depth, (bottom - top) * wo))
        out4, out3 = out.reshape(n, self.out_channels, ho, wo), out.reshape(n, self.out_channels, ho * wo)
        return _epilogue(out4, out3, scale_out, bias, activation, residual, later)

    def to_onnx(self, g, xs, in_shapes):
        p = pair(self.padding)
        tensors = [g.tensor("weight"), *([g.tensor("bias")] if self.bias else [])]
        g.node(
            "Conv",
            [xs[0], *tensors],
            kernel_shape=list(pair(self.kernel)),
            strides=list(pair(self.stride)),
            pads=[p[0], p[1], p[0], p[1]],
            dilations=list(pair(self.dilation)),
            group=self.groups,
        )

    def _tap_sum(self, x, weight, bias, scale_out, activation, size, mm: MatMul, in_place: bool):
        """A stride-1 convolution on the inference path: one product per kernel tap, summed, instead of
        an im2col matrix kh*kw times the input's size. The trick is to compute every output row over the
        padded width: then the input that tap (i, j) sees is one contiguous run of the flattened padded
        map, starting at i * Wp + j, which BLAS reads in place (rows C apart), so nothing is copied. The
        columns past each output row's end are computed and dropped (they are why measurement, which
        counts every product, never takes this path). With `in_place`, BLAS adds each tap's product into
        the sum itself; otherwise NumPy's matmul forms it and summing costs one pass over the output per
        tap, worth it only when the output is smaller than the input."""
        n, c = x.shape[:2]
        g, o = self.groups, self.out_channels
        (ho, wo), (dh, dw) = size, pair(self.dilation)
        kh, kw = weight.shape[2:]
        # One spare row at the bottom: the last tap's run ends (kw - 1) * dw cells past the padded map.
        padded = np.ascontiguousarray(pad_input(x, pair(self.padding), extra=(1, 0)))
        wp = padded.shape[3]
        flat = padded.reshape(n, g, c // g, -1)
        length = ho * wp
        taps = np.ascontiguousarray(weight.transpose(2, 3, 0, 1)).reshape(kh, kw, g, o // g, c // g)
        acc = np.empty((n, g, o // g, length), dtype=np.result_type(x, weight))
        term = None if in_place else np.empty_like(acc)
        for i in range(kh):
            for j in range(kw):
                start = i * dh * wp + j * dw
                window = flat[..., start : start + length]
                if not (i or j):
                    mm(taps[i, j], window, out=acc)
                elif in_place:
                    mm.accumulate(taps[i, j], window, acc)
                else:
                    acc += mm(taps[i, j], window, out=term)
        # The output without the junk columns, scaled or shifted on the way when there is an epilogue.
        rows = acc.reshape(n, o, ho, wp)[..., :wo]
        out = np.empty(rows.shape, dtype=acc.dtype)
        if scale_out is not None:
            np.multiply(rows, scale_out.reshape(-1, 1, 1), out=out)
            epilogue(out.reshape(n, o, ho * wo), None, bias, activation)
        elif bias is not None:
            np.add(rows, bias.reshape(-1, 1, 1), out=out)
            epilogue(out.reshape(n, o, ho * wo), None, None, activation)
        else:
            out[...] = rows
            epilogue(out.reshape(n, o, ho * wo), None, None, activation)
        return out

    def _winograd_pays(self, in_shape, kernel, stride, dilation, out_pixels, kept: bool = False) -> bool:
        """Whether this layer runs as Winograd's F(2x2, 3x3) on the fast path (see WINOGRAD_MIN_CHANNELS,
        WINOGRAD_COMPILED_MIN_CHANNELS and WINOGRAD_KEPT_PAIRS for the measurements behind each rule);
        `kept`: an inference session keeps the transformed kernels from call to call."""
        n, c = in_shape[:2]
        o = self.out_channels
        if kernel != (3, 3) or stride != (1, 1) or dilation != (1, 1) or self.groups != 1:
            return False
        if kernels() is not None:
            pairs, pixels = (
                (WINOGRAD_KEPT_PAIRS, WINOGRAD_KEPT_PIXELS)
                if kept
                else (WINOGRAD_REFERENCE_PAIRS, WINOGRAD_REFERENCE_PIXELS)
            )
            pays_weights = o * c * pixels <= pairs * n * out_pixels
            return min(c, o) >= WINOGRAD_COMPILED_MIN_CHANNELS and pays_weights
        # float32 tile transforms: 16 positions x (C + O) channels x out_pixels / 4 tiles x 4 bytes.
        temporaries = 16 * n * (c + o) * out_pixels
        return (
            min(c, o) >= WINOGRAD_MIN_CHANNELS
            and out_pixels >= WINOGRAD_MIN_OUTPUT
            and temporaries <= WINOGRAD_MAX_BYTES
        )

    def _winograd43_pays(self, images: int, in_channels: int, out_pixels: int, kept: bool) -> bool:
        """Whether a layer that runs as Winograd with the compiled transforms takes F(4x4, 3x3) rather than
        F(2x2, 3x3) (see WINOGRAD43_MIN_OUTPUT for the measurements); `kept`: in an inference session.
        `out_pixels` counts one image's output."""
        pairs = self.out_channels * in_channels
        if out_pixels < WINOGRAD43_MIN_OUTPUT or pairs * out_pixels < WINOGRAD43_MIN_WORK:
            return False
        if out_pixels < WINOGRAD43_WIDE_OUTPUT and pairs < WINOGRAD43_NARROW_PAIRS:
            return False
        return kept or pairs * WINOGRAD43_PIXELS <= WINOGRAD43_PAIRS * images * out_pixels

    def _winograd(self, x, weight, scale, bias, activation, padding, size, mm: MatMul, kept: Weights | None = None):
        """A dense 3x3 stride-1 convolution by Winograd's F(2x2, 3x3), on the inference path only: 2.25x
        fewer products than the definition (so measurement, which counts the products it forms, never
        takes this path). Tiles are 4x4 windows of the padded input, 2 apart; the output is computed on
        whole 2x2 tiles and cropped. Every transform is a handful of whole-array additions over strided
        views (B^T d B and A^T m A have entries 0 and +-1 only); the 16 tile positions are one batched
        matrix product over channels. Float32 error is that of the sums reordered (about 1e-6 relative).
        With the compiled transforms, where `_winograd43_pays` (outputs of 28 x 28 and more), F(4x4, 3x3)
        instead: 6x6 tiles, 4 apart, 4x4 output tiles, 36 tile positions, 4x fewer products than the
        definition (error about 1e-5 of the largest output).
        `kept`: the layer's Weights, when an inference session keeps the transformed kernels (of `weight`,
        which is then the layer's own weight tensor)."""
        n, c, h, w = x.shape
        o = self.out_channels
        ho, wo = size
        compiled = kernels() if x.dtype == weight.dtype == np.float32 else None
        # Output tiles of 4 x 4 (F(4x4, 3x3), compiled only) where they pay, else of 2 x 2.
        tile = 4 if compiled is not None and self._winograd43_pays(n, c, ho * wo, kept is not None) else 2
        th, tw = -(-ho // tile), -(-wo // tile)  # tiles down and across
        ph, pw = padding
        positions = (tile + 2) ** 2

        # G g G^T for all (O, C) kernels at once: one product with the positions x 9 matrix of G[a, i] G[b, j].
        def transform() -> np.ndarray:
            g = _winograd_kernel_transform(weight.dtype, tile)
            return mm(g, weight.reshape(o * c, 9).T).reshape(positions, 1, o, c)

        u = transform() if kept is None else kept.derived("winograd" if tile == 2 else "winograd43", transform)
        if compiled is not None:  # (its input transform reads x as padded: no padded copy)
            out = self._winograd_compiled(
                compiled, np.ascontiguousarray(x), padding, u, scale, bias, activation, (th, tw), tile, mm
            )
            return out if (tile * th, tile * tw) == (ho, wo) else np.ascontiguousarray(out[:, :, :ho, :wo])
        # The padded input, extended with zeros at the bottom and right to whole tiles (tile + 2 + tile *
        # (tiles - 1) cells each way; ho = h + 2 * ph - 2, so that is 0 to tile - 1 cells more than the padded input).
        padded = pad_input(x, padding, extra=(tile * th + 2 - (h + 2 * ph), tile * tw + 2 - (w + 2 * pw)))
        # B^T d B, first down the rows (row k of every tile: rows k, k+2, ... of the padded map) ...
        d = [padded[:, :, k : k + 2 * th : 2] for k in range(4)]
        down = np.empty((4, n, c, th, 2 * tw + 2), dtype=x.dtype)
        np.subtract(d[0], d[2], out=down[0])
        np.add(d[1], d[2], out=down[1])
        np.subtract(d[2], d[1], out=down[2])
        np.subtract(d[1], d[3], out=down[3])
        # ... then across: V[k, l] is tile position (k, l) of every tile, (N, C, tiles).
        v = np.empty((4, 4, n, c, th, tw), dtype=x.dtype)
        for k in range(4):
            e = [down[k][..., j : j + 2 * tw : 2] for j in range(4)]
            np.subtract(e[0], e[2], out=v[k, 0])
            np.add(e[1], e[2], out=v[k, 1])
            np.subtract(e[2], e[1], out=v[k, 2])
            np.subtract(e[1], e[3], out=v[k, 3])
        m = mm(u, v.reshape(16, n, c, th * tw)).reshape(4, 4, n, o, th, tw)  # (16, N, O, tiles)
        # A^T m A: down (two output rows per tile), then across into the interleaved output.
        half = np.empty((2, 4, n, o, th, tw), dtype=m.dtype)
        np.add(m[0], m[1], out=half[0])
        half[0] += m[2]
        np.subtract(m[1], m[2], out=half[1])
        half[1] -= m[3]
        out = np.empty((n, o, 2 * th, 2 * tw), dtype=m.dtype)
        tiles = out.reshape(n, o, th, 2, tw, 2)
        for a in range(2):
            s = half[a]
            np.add(s[0], s[1], out=tiles[:, :, :, a, :, 0])
            tiles[:, :, :, a, :, 0] += s[2]
            np.subtract(s[1], s[2], out=tiles[:, :, :, a, :, 1])
            tiles[:, :, :, a, :, 1] -= s[3]
        if (2 * th, 2 * tw) != (ho, wo):
            out = np.ascontiguousarray(out[:, :, :ho, :wo])
        epilogue(out.reshape(n, o, ho * wo), scale, bias, activation)
        return out

    @staticmethod
    def _winograd_compiled(compiled, x, padding, u, scale, bias, activation, tiles, tile, mm: MatMul):
        """`_winograd` with each transform in one compiled pass, for output tiles of `tile` x `tile` (2:
        F(2x2, 3x3), 16 positions; 4: F(4x4, 3x3), 36), on x (N, C, H, W, C-contiguous) read as padded by
        `padding` and by zeros to whole tiles (the input transform pads each channel's rows into a small
        buffer as it needs them: a padded copy of the whole input was one more pass, which took as long as
        the transform's on ResNet-50's 64 x 56 x 56 layers). For F(2x2) the sums are the NumPy transforms' in the
        same order, so the output is the same bit for bit when the layer is one block (BLAS may sum a
        product of another width in another order) and the activation is no SiLU. The tile rows go in
        blocks whose transformed input (16 or 36 x C values a tile) and products (16 or 36 x O) take at
        most WINOGRAD_BLOCK_BYTES each, in two buffers this thread keeps from call to call (`_scratch`).
        The positions of a block lie WINOGRAD_POSITION_SKEW bytes apart modulo 4 KiB, not a multiple of
        4 KiB (which a 64 x 56 x 56 layer's would be): the output transform reads all of them at once, and
        16 streams 4 KiB apart compete for one set of the L1 cache (measured 2.5x slower)."""
        n, c = x.shape[:2]
        positions, o = u.shape[0], u.shape[2]
        th, tw = tiles
        block = max(1, min(th, WINOGRAD_BLOCK_BYTES // (positions * n * max(c, o) * tw * x.itemsize)))
        largest = n * max(c, o) * block * tw
        stride = -(-largest // 1024) * 1024 + WINOGRAD_POSITION_SKEW // x.itemsize
        buffers = _scratch(2 * positions * stride, x.dtype)[: 2 * positions * stride]
        v_rows, m_rows = buffers.reshape(2, positions, stride)
        out = np.empty((n, o, tile * th, tile * tw), dtype=x.dtype)
        if tile == 2:
            transform_input, transform_output = compiled.winograd_input, compiled.winograd_output
        else:
            transform_input, transform_output = compiled.winograd43_input, compiled.winograd43_output
        bounds = kernel_activation(activation)
        vectors = [
            np.ones(o, np.float32) if v is None else np.ascontiguousarray(v, dtype=np.float32) for v in (scale, bias)
        ]
        for first in range(0, th, block):
            stop = min(th, first + block)
            count = (stop - first) * tw
            transform_input(x, v_rows, first, stop, *padding, tw)
            v = v_rows[:, : n * c * count].reshape(positions, n, c, count)  # a view: the row's start is split
            m = m_rows[:, : n * o * count].reshape(positions, n, o, count)
            for image in range(n):  # (positions, O, C) @ (positions, C, tiles) -> (positions, O, tiles)
                mm.batched(u[:, 0], v[:, image], m[:, image])
            transform_output(m_rows, out, *vectors, scale is not None, bias is not None, *bounds, first, stop)
        return out

    def _depthwise(self, x, weight, bias, activation, size, stride, dilation, mm: MatMul):
        """groups == input channels (MobileNet, EfficientNet): out[:, o] = sum over kernel taps of the
        input channel o // m (m = out/in channels), shifted by the tap, times weight[o, 0, tap].

        One vectorized multiply-accumulate per tap over all channels and positions, not one tiny product
        per group, computed channels-last: the padded input is (N, H, W, C), so each tap's shifted
        window has long contiguous rows of W x C values (channel-first rows are only W long, 7 values
        deep in a network), and the tap's weights are laid out as one (Wo, C) row that broadcasts along
        them. The first tap writes the output (no zero fill). On the inference path the result is an
        (N, C, H, W) view of the channels-last array, which the next pointwise conv reads without a copy;
        for measurement it is copied channel-first.

        On the fast path, when numba is there (`archspec.ops.compiled`) and each output channel reads its
        own input channel, one compiled loop does all the taps of each output pixel instead (2.5-6x faster on
        MobileNetV2's and EfficientNet-B0's layers), with the same sums in the same order."""
        n, c, h, w = x.shape
        (ho, wo), (sh, sw), (dh, dw) = size, stride, dilation
        (ph, pw), (kh, kw) = pair(self.padding), weight.shape[2:]
        if fast_path() and self.out_channels == c and x.dtype == weight.dtype == np.float32:
            if (compiled := kernels()) is not None:  # one compiled pass per output row instead of 2 per tap
                out = np.empty((n, ho, wo, c), dtype=np.float32)
                taps = np.ascontiguousarray(weight.reshape(c, kh * kw).T).reshape(kh, kw, c)
                bias = np.zeros(c, dtype=np.float32) if bias is None else np.ascontiguousarray(bias, dtype=np.float32)
                channels_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1))  # a free view after a depthwise conv
                arguments = (channels_last, taps, bias, out, stride, dilation, (ph, pw))
                if activation is not None and activation.silu:
                    compiled.depthwise_channels_last_silu(*arguments)
                else:
                    compiled.depthwise_channels_last(*arguments, *kernel_activation(activation)[:2])
                return out.transpose(0, 3, 1, 2)
        hp, wp = h + 2 * ph, w + 2 * pw
        padded = np.empty((n, hp, wp, c), dtype=x.dtype)  # only the border is zeroed: the rest is copied over
        padded[:, :ph], padded[:, ph + h :], padded[:, :, :pw], padded[:, :, pw + w :] = 0, 0, 0, 0
        padded[:, ph : ph + h, pw : pw + w] = x.transpose(0, 2, 3, 1)
        m = self.out_channels // c
        source = padded if m == 1 else np.repeat(padded, m, axis=3)  # output channel o reads input o // m
        out = np.empty((n, ho, wo, self.out_channels), dtype=np.result_type(x, weight))
        scratch = np.empty_like(out)
        # rows[t] is (Wo, O): tap t's weights repeated along the output row, contiguous like the windows.
        taps = weight.reshape(self.out_channels, kh * kw).T
        rows = np.ascontiguousarray(np.broadcast_to(taps[:, None, :], (kh * kw, wo, self.out_channels)))
        for i in range(kh):
            for j in range(kw):
                shifted = source[:, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw]
                if i == j == 0:
                    mm.multiply(out, shifted, rows[0])
                else:
                    mm.multiply_accumulate(out, shifted, rows[i * kw + j], scratch)
        epilogue(out.reshape(n, ho * wo, self.out_channels), None, bias, activation, channels_last=True)
        # Measurement keeps every array channel-first, as the static memory model assumes (a flatten of
        # a channels-last map would be a copy, not a view); the inference path keeps the layout.
        return out.transpose(0, 3, 1, 2) if fast_path() else np.ascontiguousarray(out.transpose(0, 3, 1, 2))

    def probe(self):
        return self.model_copy(update={"out_channels": 1, "groups": 1, "in_channels": None}), 1


@cache
def _winograd_kernel_transform(dtype, tile: int = 2) -> np.ndarray:
    """Winograd's G g G^T as one (tile + 2)^2 x 9 matrix: row (a, b), column (i, j) holds G[a, i] * G[b, j]
    (computed in float64, rounded once). For F(2x2, 3x3), G = [[1, 0, 0], [1/2, 1/2, 1/2], [1/2, -1/2, 1/2],
    [0, 0, 1]] (its entries are exact in binary); for F(4x4, 3x3) (tile 4), Lavin and Gray's
    G = [[1/4, 0, 0], [-1/6, -1/6, -1/6], [-1/6, 1/6, -1/6], [1/24, 1/12, 1/6], [1/24, -1/12, 1/6], [0, 0, 1]]."""
    if tile == 2:
        g = np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]])
    else:
        g = np.array(
            [
                [1 / 4, 0, 0],
                [-1 / 6, -1 / 6, -1 / 6],
                [-1 / 6, 1 / 6, -1 / 6],
                [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6],
                [0, 0, 1],
            ]
        )
    positions = (tile + 2) ** 2
    return np.einsum("ai,bj->abij", g, g).reshape(positions, 9).astype(dtype)


_SCRATCH = threading.local()


def _scratch(size: int, dtype) -> np.ndarray:
    """A flat array of at least `size` elements, this thread's own, reused from call to call (grown when too
    small): the Winograd blocks' buffers, a few MiB together. New memory of that size every call page-faulted
    on every use (glibc gives it back to the system between calls): 2,700 faults a call, measured 3x slower
    on a 64 x 56 x 56 layer."""
    dtype = np.dtype(dtype)
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer = buffers.get(dtype)
    if buffer is None or buffer.size < size:
        buffer = buffers[dtype] = np.empty(size, dtype=dtype)
    return buffer


def _epilogue(out4, out3, scale, bias, activation, residual, later, channels_last=False):
    """`compiled.epilogue` of a conv's output out4 (N, O, Ho, Wo), seen as out3 ((N, O, L), or (N, L, O) when
    `channels_last`), returning out4. With a residual: added in the same pass when it is laid out as the
    output (then the activation `later` follows in that pass too), else in one more pass."""
    if residual is None:
        epilogue(out3, scale, bias, activation, channels_last)
        return out4
    n, o, h, w = residual.shape
    view = residual.transpose(0, 2, 3, 1) if channels_last else residual
    if view.flags.c_contiguous and view.dtype == out3.dtype:
        epilogue(out3, scale, bias, later, channels_last, residual=view.reshape(out3.shape))
        return out4
    epilogue(out3, scale, bias, None, channels_last)
    return _add_residual(out4, residual, later)


def _add_residual(out, residual, activation):
    """activation(out + residual), for a residual the kernel's last pass did not add: one compiled pass
    when the two are laid out alike (`compiled.add_activate`), else NumPy's."""
    if (summed := add_activate(out, residual, activation)) is not None:
        return summed
    summed = np.add(out, residual)
    if activation is not None:
        activate_in_place(summed, activation)
    return summed


def _channels_last(x: np.ndarray) -> bool:
    """x (N, C, H, W) is laid out (N, H, W, C) in memory, as the depthwise kernel leaves its output on the
    inference path (and not also channel-first, as a single channel or a 1 x 1 map is)."""
    return x.transpose(0, 2, 3, 1).flags.c_contiguous and not x.flags.c_contiguous
