"""Flatten (C, H, W order, as PyTorch) and fully connected layers (weight layout out x in)."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from archspec.ops.base import NoTensors, OpBase, Plain, PositiveInt, ShapeError


class Flatten(Plain, NoTensors, OpBase):
    op: Literal["flatten"]
    view: ClassVar[bool] = True  # a reshape of a contiguous array
    size_dependent: ClassVar[bool] = True  # its feature count follows the input size

    def output_shape(self, in_shapes):
        return (math.prod(in_shapes[0]),)

    def rf_rule(self, in_shapes):
        return "global"  # a flat feature is no longer a spatial map; see the README's RF section

    def probe(self):
        return self, 1

    def to_onnx(self, g, xs, in_shapes):
        g.node("Flatten", xs, axis=1)

    def forward(self, xs, w, mm):
        x = xs[0]
        return x.reshape(x.shape[0], -1)


class Linear(Plain, OpBase):
    """y = x W^T + b; MACs = in_features x out_features, bias excluded."""

    op: Literal["linear"]
    out_features: PositiveInt
    bias: bool = True
    in_features: PositiveInt | None = None  # optional check; inferred otherwise

    size_dependent: ClassVar[bool] = True  # its weights fix the input size
    lecture_weights: ClassVar[tuple[str, ...]] = ("weight",)

    def output_shape(self, in_shapes):
        if len(in_shapes[0]) != 1:
            raise ShapeError(f"linear needs a flat input, got shape {list(in_shapes[0])}; add a 'flatten' node first")
        if self.in_features is not None and self.in_features != in_shapes[0][0]:
            raise ShapeError(
                f"in_features is {self.in_features} but the input has {in_shapes[0][0]} features",
                "in_features pins the size the layer's weights were made for: check the layers before it and"
                " the --input size, or remove in_features to let it follow the input",
            )
        return (self.out_features,)

    def param_shapes(self, in_shapes):
        shapes = {"weight": (self.out_features, in_shapes[0][0])}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def buffer_shapes(self, in_shapes):
        return {}

    def macs(self, in_shapes, out_shape):
        return in_shapes[0][0] * self.out_features

    def rf_rule(self, in_shapes):
        return "global"

    def forward(self, xs, w, mm):
        x = xs[0]
        weight = w.param("weight", (self.out_features, x.shape[1]))
        out = mm(x, weight.T)
        if self.bias:
            out = out + w.param("bias", (self.out_features,))
        return out

    def probe(self):
        # Two outputs are enough to show a dependency (a following softmax needs unequal logits).
        return self.model_copy(update={"out_features": 2, "in_features": None}), 1

    def to_onnx(self, g, xs, in_shapes):
        tensors = [g.tensor("weight"), *([g.tensor("bias")] if self.bias else [])]
        g.node("Gemm", [xs[0], *tensors], transB=1)  # x W^T + b, W in PyTorch's (out, in) layout
