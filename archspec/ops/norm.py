"""Normalization: batch norm (inference, running statistics) and local response norm."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from archspec.ops.base import (
    NoOnnxEquivalent,
    NoTensors,
    OpBase,
    Plain,
    Pointwise,
    PositiveInt,
    ShapeError,
    require_spatial,
)

PositiveFloat = Annotated[float, Field(gt=0)]


class BatchNorm2d(Plain, Pointwise, OpBase):
    """Batch norm at inference: (x - running_mean) / sqrt(running_var + eps) * weight + bias.

    Params: weight and bias (gamma, beta), 2 x C; running statistics are buffers, not params.
    """

    op: Literal["batch_norm"]
    eps: PositiveFloat = 1e-5
    affine: bool = True

    lecture_weights: ClassVar[tuple[str, ...]] = ()

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

    def init_tensor(self, tensor, shape, rng):
        # Non-trivial statistics and affine parameters, so that inference-mode normalization is exercised.
        if tensor in ("weight", "running_var"):
            return rng.uniform(0.5, 1.5, shape)
        return rng.normal(0, 0.1, shape)

    def forward(self, xs, w, mm):
        x = xs[0]
        c = x.shape[1]
        mean = w.buffer("running_mean", (c,)).reshape(1, c, 1, 1)
        var = w.buffer("running_var", (c,)).reshape(1, c, 1, 1)
        out = (x - mean) / np.sqrt(var + np.float32(self.eps))
        if self.affine:
            out = out * w.param("weight", (c,)).reshape(1, c, 1, 1)
            out = out + w.param("bias", (c,)).reshape(1, c, 1, 1)
        return out.astype(x.dtype, copy=False)

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

    def output_shape(self, in_shapes):
        require_spatial(in_shapes[0], "lrn")
        return in_shapes[0]

    def rf_rule(self, in_shapes):
        return "pointwise"

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
