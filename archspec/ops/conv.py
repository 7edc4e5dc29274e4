"""2-D convolution (PyTorch's nn.Conv2d semantics, weight layout O x I/groups x kH x kW)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from archspec.ops.base import (
    MatMul,
    NonNegativePair,
    OpBase,
    PositiveInt,
    PositivePair,
    ShapeError,
    Weights,
    Window,
    pair,
    require_spatial,
    window_output_size,
)
from archspec.ops.windows import window_view


class Conv2d(OpBase):
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

    # ---- static rules ----
    def output_shape(self, in_shapes):
        c, h, w = require_spatial(in_shapes[0], "conv2d")
        if self.in_channels is not None and self.in_channels != c:
            raise ShapeError(f"in_channels is {self.in_channels} but the input has {c} channels")
        for what, count in (("input", c), ("output", self.out_channels)):
            if count % self.groups:
                raise ShapeError(
                    f"groups={self.groups} must divide the {what} channels, "
                    f"but {self.groups} does not divide {count}"
                )
        win = self.rf_rule(in_shapes)
        out_h = window_output_size(h, win.kernel[0], win.stride[0], win.padding[0], False)
        out_w = window_output_size(w, win.kernel[1], win.stride[1], win.padding[1], False)
        return (self.out_channels, out_h, out_w)

    def param_shapes(self, in_shapes):
        kh, kw = pair(self.kernel)
        shapes = {"weight": (self.out_channels, in_shapes[0][0] // self.groups, kh, kw)}
        if self.bias:
            shapes["bias"] = (self.out_channels,)
        return shapes

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

    # ---- kernel: strided window view, then one batched matrix product per group ----
    def forward(self, xs, w: Weights, mm: MatMul):
        x = xs[0]
        n, c, _, _ = x.shape
        g, kh, kw = self.groups, *pair(self.kernel)
        weight = w.param("weight", (self.out_channels, c // g, kh, kw))
        view, _ = window_view(x, (kh, kw), pair(self.stride), pair(self.padding), pair(self.dilation))
        _, _, ho, wo, _, _ = view.shape
        # (N, C, Ho, Wo, kh, kw) -> (N, G, Ho*Wo, C/G*kh*kw): the im2col matrix, one copy.
        cols = view.reshape(n, g, c // g, ho, wo, kh, kw).transpose(0, 1, 3, 4, 2, 5, 6)
        cols = cols.reshape(n, g, ho * wo, (c // g) * kh * kw)
        # (O, C/G, kh, kw) -> (G, C/G*kh*kw, O/G)
        kernel = weight.reshape(g, self.out_channels // g, -1).transpose(0, 2, 1)
        out = mm(cols, kernel)  # (N, G, Ho*Wo, O/G)
        out = out.transpose(0, 1, 3, 2).reshape(n, self.out_channels, ho, wo)
        if self.bias:
            out = out + w.param("bias", (self.out_channels,)).reshape(1, -1, 1, 1)
        return np.ascontiguousarray(out)

    def probe_variant(self):
        return self.model_copy(update={"out_channels": 1, "groups": 1, "in_channels": None})
