"""Normalization: batch norm (inference, running statistics), local response norm, layer norm over
channels, and ConvNeXt's learnable per-channel scale."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from archspec.lazy import numpy as np
from archspec.ops.base import (
    NoOnnxEquivalent,
    NoTensors,
    OpBase,
    Plain,
    Pointwise,
    PositiveInt,
    Saved,
    ShapeError,
    TrainSaves,
    require_spatial,
)
from archspec.ops.compiled import activate_in_place, epilogue, kernels
from archspec.ops.explain import no_params_lines, num, same_shape_line
from archspec.ops.fastpath import fast_path

PositiveFloat = Annotated[float, Field(gt=0)]


class BatchNorm2d(Plain, Pointwise, OpBase):
    """Batch norm at inference: (x - running_mean) / sqrt(running_var + eps) * weight + bias.

    Params: weight and bias (gamma, beta), 2 x C; running statistics are buffers, not params.
    """

    op: Literal["batch_norm"]
    eps: PositiveFloat = 1e-5
    affine: bool = True

    lecture_weights: ClassVar[tuple[str, ...]] = ()

    def explain(self, in_shapes, out_shape):
        c = in_shapes[0][0]
        params = (
            f"params = 2·{c} (gamma and beta per channel) = {num(2 * c)}"
            if self.affine
            else "params = 0 (affine: false)"
        )
        return [
            same_shape_line(in_shapes[0], "normalised per channel"),
            params,
            f"buffers = 2·{c} running mean and variance = {num(2 * c)} (not trained, not params)",
            "MACs = 0  (a per-channel scale and shift, not counted; foldable into the conv before it)",
        ]

    def output_shape(self, in_shapes):
        require_spatial(in_shapes[0], "batch_norm")
        return in_shapes[0]

    def param_shapes(self, in_shapes):
        c = in_shapes[0][0]
        return {"weight": (c,), "bias": (c,)} if self.affine else {}

    def buffer_shapes(self, in_shapes):
        c = in_shapes[0][0]
        return {"running_mean": (c,), "running_var": (c,)}

    def macs(self, in_shapes, out_shape):
        return 0  # element-wise at inference (and foldable into the conv before it)

    def train_saves(self, in_shapes, out_shape):
        # Training mode: the input, and the batch's per-channel mean and inverse std (float32, C each,
        # the same size at every batch). PyTorch also keeps an int64 num_batches_tracked buffer.
        c = in_shapes[0][0]
        stats = (Saved("new", elements=c, itemsize=4, per_image=False, what=w) for w in ("save_mean", "save_invstd"))
        return TrainSaves((Saved("input", what="input"), *stats), extra_buffer_bytes=8)

    def init_tensor(self, tensor, shape, rng):
        # Non-trivial statistics and affine parameters, so that inference-mode normalization is exercised.
        if tensor in ("weight", "running_var"):
            return rng.uniform(0.5, 1.5, shape)
        return rng.normal(0, 0.1, shape)

    absorbs_affine: ClassVar[bool] = False
    absorbs_activation: ClassVar[bool] = True  # DenseNet's batch norm -> ReLU after a concat: one pass

    def channel_affine(self, w, channels):
        """At inference BN is x * scale + shift per channel: scale = gamma / sqrt(var + eps), shift = beta -
        mean * scale (computed in float64 from the float32 tensors, then rounded once)."""
        # (Few NumPy calls on these short vectors: a model's forward pass asks every batch norm, every call;
        # on the fast path one compiled call, the same operations, and an inference session keeps the result.)
        if fast_path() and (compiled := kernels()) is not None:
            var, mean = w.buffer("running_var", (channels,)), w.buffer("running_mean", (channels,))
            gamma, beta = (w.param(t, (channels,)) for t in ("weight", "bias")) if self.affine else (var, var)
            if all(a.dtype == np.float32 for a in (var, mean, gamma, beta)):

                def scale_shift():
                    scale, shift = np.empty(channels, np.float32), np.empty(channels, np.float32)
                    compiled.batch_norm_affine(var, mean, gamma, beta, float(self.eps), self.affine, scale, shift)
                    return scale, shift

                return w.derived("affine", scale_shift)
        scale = np.add(w.buffer("running_var", (channels,)), self.eps, dtype=np.float64)
        np.sqrt(scale, out=scale)
        np.divide(w.param("weight", (channels,)) if self.affine else 1.0, scale, out=scale)
        shift = np.multiply(w.buffer("running_mean", (channels,)), scale, dtype=np.float64)
        np.subtract(w.param("bias", (channels,)) if self.affine else 0.0, shift, out=shift)
        return scale.astype(np.float32), shift.astype(np.float32)

    def forward(self, xs, w, mm):
        # Two passes over the map (a product into a new array, a sum in place) with per-channel constants.
        x = xs[0]
        scale, shift = self.channel_affine(w, x.shape[1])
        out = np.multiply(x, scale.astype(x.dtype).reshape(1, -1, 1, 1))
        out += shift.astype(x.dtype).reshape(1, -1, 1, 1)
        return out

    def forward_fused(self, xs, w, mm, affine, activation=None):
        """The batch norm, then the activation after it (a ReLU): one pass (`compiled.epilogue`) for a map
        laid out channel-first or channels-last, else the two passes of `forward` and the activation's."""
        x = xs[0]
        if affine is not None:  # (absorbs_affine is False: the plan never asks)
            return None
        if activation is None or x.ndim != 4:
            out = self.forward(xs, w, mm)
            if activation is not None:
                activate_in_place(out, activation)
            return out
        n, c, h, width = x.shape
        scale, shift = (a.astype(x.dtype) for a in self.channel_affine(w, c))
        if not x.flags.c_contiguous and x.transpose(0, 2, 3, 1).flags.c_contiguous:  # channels-last, kept so
            out = np.empty((n, h, width, c), dtype=x.dtype)
            source = x.transpose(0, 2, 3, 1).reshape(n, h * width, c)
            epilogue(out.reshape(n, h * width, c), scale, shift, activation, channels_last=True, source=source)
            return out.transpose(0, 3, 1, 2)
        out = np.empty(x.shape, dtype=x.dtype)
        source = np.ascontiguousarray(x).reshape(n, c, h * width)
        epilogue(out.reshape(n, c, h * width), scale, shift, activation, source=source)
        return out

    def to_onnx(self, g, xs, in_shapes):
        c = in_shapes[0][0]
        if self.affine:
            scale, shift = g.tensor("weight"), g.tensor("bias")
        else:  # constants, not trainable tensors
            scale, shift = g.const([1.0] * c, "float32"), g.const([0.0] * c, "float32")
        mean, var = g.tensor("running_mean"), g.tensor("running_var")
        g.node("BatchNormalization", [xs[0], scale, shift, mean, var], epsilon=self.eps)


class LocalResponseNorm(Plain, NoTensors, OpBase):
    """Local response norm across channels (PyTorch's rule, alpha divided by size as in Caffe):
    b_c = a_c / (k + alpha / size * sum_{c' in window(c)} a_c'^2) ^ beta."""

    op: Literal["lrn"]
    size: PositiveInt = 5
    alpha: PositiveFloat = 1e-4
    beta: PositiveFloat = 0.75
    k: PositiveFloat = 1.0

    def explain(self, in_shapes, out_shape):
        return [
            same_shape_line(in_shapes[0], f"each value divided by a term over {self.size} neighbouring channels"),
            *no_params_lines("normalisation arithmetic is not counted"),
        ]

    def output_shape(self, in_shapes):
        require_spatial(in_shapes[0], "lrn")
        return in_shapes[0]

    def rf_rule(self, in_shapes):
        return "pointwise"

    def train_saves(self, in_shapes, out_shape):
        # F.local_response_norm is composite: x*x is zero-padded to C + size - 1 channels and average-pooled
        # (the pool saves the padded tensor), then div = (pooled * alpha + k) ** beta (pow saves its
        # input) and x / div (saves x and div).
        c, h, w = in_shapes[0]
        return TrainSaves(
            (
                Saved("input", what="input"),
                Saved("new", elements=(c + self.size - 1) * h * w, what="padded squares"),
                Saved("new", elements=c * h * w, what="pow input"),
                Saved("new", elements=c * h * w, what="divisor"),
            )
        )

    def probe(self):
        # It mixes neighbouring channels; two differing channels show that a lit pixel changes the output.
        return self, 2

    def forward(self, xs, w, mm):
        x = xs[0]
        squares = np.pad(x * x, ((0, 0), (self.size // 2, (self.size - 1) // 2), (0, 0), (0, 0)))
        # Channel-window sums through a cumulative sum: no loop over channels.
        csum = np.concatenate([np.zeros_like(squares[:, :1]), np.cumsum(squares, axis=1)], axis=1)
        window_sum = csum[:, self.size :] - csum[:, : -self.size]
        if window_sum.shape[1] != x.shape[1]:
            raise ShapeError("internal: LRN window does not cover every channel")
        div = (self.k + self.alpha / self.size * window_sum) ** self.beta
        return (x / div).astype(x.dtype, copy=False)

    def to_onnx(self, g, xs, in_shapes):
        if self.size % 2 == 0:
            # PyTorch's window is [c - size/2, c + size/2 - 1], ONNX's [c - size/2 + 1, c + size/2].
            raise NoOnnxEquivalent(
                f"lrn with an even size ({self.size}) has no ONNX equivalent: ONNX's LRN centres even windows"
                " one channel later than PyTorch's",
                "use an odd size",
            )
        g.node("LRN", xs, size=self.size, alpha=self.alpha, beta=self.beta, bias=self.k)


class LayerNorm(Plain, OpBase):
    """Layer norm over the channels at every position of a C x H x W map, or over the features of a
    flat input: (x - mean) / sqrt(var + eps) * weight + bias, mean and biased variance taken over the
    C channels of one pixel. This is torchvision's LayerNorm2d, and also ConvNeXt's nn.LayerNorm
    applied channels-last between its Permutes (the same numbers on the permuted tensor). Params:
    weight and bias of shape (C,). ConvNeXt uses eps = 1e-6.

    `over: image` normalizes each image over all of its C x H x W values instead, as PyTorch's
    nn.LayerNorm([C, H, W]) (ONNX's LayerNormalization with axis 1 on N x C x H x W); its weight and bias
    then have one value per element, shape (C, H, W), so its params depend on the input size."""

    op: Literal["layer_norm"]
    eps: PositiveFloat = 1e-5
    affine: bool = True  # PyTorch's elementwise_affine
    over: Literal["channels", "image"] = "channels"

    @property
    def size_dependent(self) -> bool:
        """Over a whole image, the weights have the image's shape."""
        return self.over == "image"

    def _normalized(self, in_shape) -> tuple[int, ...]:
        """The shape one mean and variance are taken over: (C,), or (C, H, W) over an image."""
        return tuple(in_shape) if self.over == "image" else (in_shape[0],)

    def explain(self, in_shapes, out_shape):
        c = in_shapes[0][0]
        params = f"params = 2·{c} (weight and bias per channel) = {num(2 * c)}" if self.affine else "params = 0"
        over = f"the {c} channels of each position" if len(in_shapes[0]) == 3 else f"the {c} features"
        if self.over == "image" and len(in_shapes[0]) == 3:
            size = math.prod(in_shapes[0])
            over = f"all {' x '.join(map(str, in_shapes[0]))} = {num(size)} values of each image"
            params = (
                f"params = 2·{num(size)} (weight and bias per element) = {num(2 * size)}" if self.affine else params
            )
        return [
            same_shape_line(in_shapes[0], f"normalised over {over}"),
            params,
            "MACs = 0  (element-wise work is not counted)",
        ]

    lecture_weights: ClassVar[tuple[str, ...]] = ()
    absorbs_affine: ClassVar[bool] = False

    def channel_affine(self, w, channels):
        return None  # its statistics come from each input position, not from constants

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def param_shapes(self, in_shapes):
        shape = self._normalized(in_shapes[0])
        return {"weight": shape, "bias": shape} if self.affine else {}

    def buffer_shapes(self, in_shapes):
        return {}

    def macs(self, in_shapes, out_shape):
        return 0  # element-wise work, not counted in `macs`

    def rf_rule(self, in_shapes):
        return "global" if len(in_shapes[0]) == 1 or self.over == "image" else "pointwise"

    def train_saves(self, in_shapes, out_shape):
        # The input (channels-last view: the same storage), and the mean and rstd of every position (float32,
        # H x W per image; 1 for a flat input or over the whole image); weight and bias are parameters.
        positions = 1 if self.over == "image" else math.prod(in_shapes[0][1:])
        stats = (Saved("new", elements=positions, itemsize=4, what=w) for w in ("mean", "rstd"))
        return TrainSaves((Saved("input", what="input"), *stats))

    def probe(self):
        # It mixes channels: over one channel it is constant, two differing channels show a change.
        return self, 2

    def init_tensor(self, tensor, shape, rng):
        if tensor == "weight":  # around 1, as trained scales are, but not the identity
            return rng.uniform(0.5, 1.5, shape)
        return rng.normal(0, 0.1, shape)

    def to_onnx(self, g, xs, in_shapes):
        shape = self._normalized(in_shapes[0])
        if self.affine:
            scale, shift = g.tensor("weight"), g.tensor("bias")
        else:
            scale, shift = g.const(np.ones(shape), "float32"), g.const(np.zeros(shape), "float32")
        if len(in_shapes[0]) == 1:
            g.node("LayerNormalization", [xs[0], scale, shift], axis=-1, epsilon=self.eps)
            return
        if self.over == "image":  # over every axis from the channels on
            g.node("LayerNormalization", [xs[0], scale, shift], axis=1, epsilon=self.eps)
            return
        # over the channels of each pixel: channels-last, normalize the last axis, back (ConvNeXt's Permutes)
        last = g.node("Transpose", xs, perm=[0, 2, 3, 1])
        normed = g.node("LayerNormalization", [last, scale, shift], axis=-1, epsilon=self.eps)
        g.node("Transpose", [normed], perm=[0, 3, 1, 2])

    def forward(self, xs, w, mm):
        x = xs[0]
        normalized = self._normalized(x.shape[1:])
        axes = tuple(range(1, 1 + len(normalized)))
        mean = x.mean(axis=axes, keepdims=True)
        centred = x - mean
        var = (centred * centred).mean(axis=axes, keepdims=True)
        out = centred / np.sqrt(var + np.float32(self.eps))
        if self.affine:
            shape = (1, *normalized) + (1,) * (x.ndim - 1 - len(normalized))
            out = out * w.param("weight", normalized).reshape(shape) + w.param("bias", normalized).reshape(shape)
        return out.astype(x.dtype, copy=False)


class LayerScale(Plain, Pointwise, OpBase):
    """A learnable per-channel scale, x * gamma with gamma of shape (C, 1, 1): ConvNeXt's layer_scale.

    torchvision keeps gamma as a Parameter of the block itself, so its state_dict key is the block's
    path plus `layer_scale` (`features.1.0.layer_scale`), not `<module>.weight`. Name the node that
    way: its one tensor is the node's own ("" in param_shapes), whose key is the node name itself
    (`archspec.ops.base.tensor_key`). Params C, 0 MACs (element-wise)."""

    op: Literal["layer_scale"]

    def explain(self, in_shapes, out_shape):
        c = in_shapes[0][0]
        return [
            same_shape_line(in_shapes[0], "each channel multiplied by its learned scale"),
            f"params = {c} scales (one per channel) = {num(c)}",
            "MACs = 0  (element-wise work is not counted)",
        ]

    lecture_weights: ClassVar[tuple[str, ...]] = ()
    absorbs_affine: ClassVar[bool] = False

    def channel_affine(self, w, channels):
        gamma = w.param("", (channels, 1, 1)).reshape(channels)
        return gamma, np.zeros_like(gamma)  # a scale without shift

    def output_shape(self, in_shapes):
        require_spatial(in_shapes[0], "layer_scale")
        return in_shapes[0]

    def param_shapes(self, in_shapes):
        return {"": (in_shapes[0][0], 1, 1)}

    def buffer_shapes(self, in_shapes):
        return {}

    def macs(self, in_shapes, out_shape):
        return 0

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves((Saved("input", what="other"),))  # gamma * x saves x for gamma's gradient (and gamma)

    def init_tensor(self, tensor, shape, rng):
        return rng.uniform(0.5, 1.5, shape)  # ConvNeXt starts at 1e-6; any positive scale tests the kernel

    def to_onnx(self, g, xs, in_shapes):
        g.node("Mul", [xs[0], g.tensor("")])  # gamma (C, 1, 1), named like the node (torchvision's key)

    def forward(self, xs, w, mm):
        x = xs[0]
        gamma = w.param("", (x.shape[1], 1, 1))
        return (x * gamma).astype(x.dtype, copy=False)
