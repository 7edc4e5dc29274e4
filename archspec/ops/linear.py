"""Flatten (C, H, W order, as PyTorch) and fully connected layers (weight layout out x in)."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from archspec.ops.base import NoTensors, OpBase, Plain, PositiveInt, Saved, ShapeError, TrainSaves
from archspec.ops.compiled import epilogue
from archspec.ops.explain import dot, no_params_lines, num, shape


class Flatten(Plain, NoTensors, OpBase):
    op: Literal["flatten"]
    view: ClassVar[bool] = True  # a reshape of a contiguous array
    size_dependent: ClassVar[bool] = True  # its feature count follows the input size

    def explain(self, in_shapes, out_shape):
        return [
            f"output = {dot(*in_shapes[0])} = {num(out_shape[0])} features  (C, H, W order; a view, no copy)",
            *no_params_lines("a reshape"),
        ]

    def output_shape(self, in_shapes):
        return (math.prod(in_shapes[0]),)

    def rf_rule(self, in_shapes):
        return "global"  # a flat feature is no longer a spatial map; see the README's RF section

    def probe(self):
        return self, 1

    def to_onnx(self, g, xs, in_shapes):
        g.node("Flatten", xs, axis=1)

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves(output_aliases_input=True)  # a view of a contiguous input

    def forward(self, xs, w, mm):
        x = xs[0]
        return x.reshape(x.shape[0], -1)


class Linear(Plain, OpBase):
    """y = x W^T + b; MACs = in_features x out_features, bias excluded.

    With `per_pixel: true` the layer is applied at every position of a C x H x W map: (C, H, W) ->
    (out_features, H, W), MACs = H x W x C x out_features. This is ConvNeXt's nn.Linear between its
    two Permutes (channels-last and back), with torchvision's weight layout (out, in), so its
    state_dict loads unchanged. The Permutes (`block.1`, `block.6`) only reorder axes and are not
    nodes: name the Linear nodes `block.3` and `block.5` as torchvision does. (A 1x1 conv computes
    the same numbers but its weight has shape (out, in, 1, 1).)
    """

    op: Literal["linear"]
    out_features: PositiveInt
    bias: bool = True
    in_features: PositiveInt | None = None  # optional check; inferred otherwise
    per_pixel: bool = False

    lecture_weights: ClassVar[tuple[str, ...]] = ("weight",)

    @property
    def size_dependent(self) -> bool:
        """A plain linear layer's weights fix the input size; applied per pixel they do not."""
        return not self.per_pixel

    def explain(self, in_shapes, out_shape):
        n, o = in_shapes[0][0], self.out_features
        params = f"params = {dot(n, o)} weights"
        params += f" + {o} biases = {num(n * o + o)}" if self.bias else f" = {num(n * o)}"
        if self.per_pixel:
            _, h, w = in_shapes[0]
            return [
                f"output = {o} features at each of the {h} x {w} positions = {shape(out_shape)}"
                f" (every output a weighted sum of the {n} channels there)",
                params,
                f"MACs = {dot(h, w)} positions × {num(n)} inputs × {num(o)} outputs = {num(h * w * n * o)}",
            ]
        return [
            f"output = {o} features (every output is a weighted sum of all {num(n)} inputs)",
            params,
            f"MACs = {num(n)} inputs × {num(o)} outputs = {num(n * o)}",
        ]

    def output_shape(self, in_shapes):
        shape = in_shapes[0]
        if self.per_pixel and len(shape) != 3:
            raise ShapeError(
                f"linear with per_pixel: true needs a C x H x W input, got shape {list(shape)}",
                "remove per_pixel for a layer on flat features",
            )
        if not self.per_pixel and len(shape) != 1:
            raise ShapeError(
                f"linear needs a flat input, got shape {list(shape)}; add a 'flatten' node first",
                "or set per_pixel: true to apply it at every position (ConvNeXt's Linear after a Permute)",
            )
        if self.in_features is not None and self.in_features != shape[0]:
            raise ShapeError(
                f"in_features is {self.in_features} but the input has {shape[0]} features",
                "in_features pins the size the layer's weights were made for: check the layers before it and"
                " the --input size, or remove in_features to let it follow the input",
            )
        return (self.out_features, *shape[1:])

    def param_shapes(self, in_shapes):
        shapes = {"weight": (self.out_features, in_shapes[0][0])}
        if self.bias:
            shapes["bias"] = (self.out_features,)
        return shapes

    def buffer_shapes(self, in_shapes):
        return {}

    def macs(self, in_shapes, out_shape):
        return math.prod(in_shapes[0]) * self.out_features  # in_features x out_features per position

    def rf_rule(self, in_shapes):
        return "pointwise" if self.per_pixel else "global"

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves((Saved("input", what="mat1"),))  # and weight.t(), a view of the parameter

    absorbs_affine: ClassVar[bool] = True
    absorbs_activation: ClassVar[bool] = True

    def channel_affine(self, w, channels):
        return None  # it mixes features

    def forward(self, xs, w, mm):
        return self._forward(xs, w, mm, None, None)

    def forward_fused(self, xs, w, mm, affine, activation=None):
        scale_shift = None if affine is None else affine(self.out_features)
        if affine is not None and scale_shift is None:
            return None
        return self._forward(xs, w, mm, scale_shift, activation)

    def _forward(self, xs, w, mm, affine, activation):
        """y = x W^T + b, then y * scale + shift per output feature when `affine` is given (folded into
        a scaled copy of the weights and the bias), then the activation when one is given."""
        x = xs[0]
        weight = w.param("weight", (self.out_features, x.shape[1]))
        bias = w.param("bias", (self.out_features,)) if self.bias else None
        if affine is not None:
            scale, shift = (a.astype(weight.dtype, copy=False) for a in affine)
            weight = weight * scale.reshape(-1, 1)
            bias = shift if bias is None else bias * scale + shift
        if self.per_pixel:  # (out, C) @ (N, C, H*W): channel-first, no transpose of the map
            n, c, h, width = x.shape
            out = mm(weight, x.reshape(n, c, h * width))
            epilogue(out, None, bias, activation)
            return out.reshape(n, self.out_features, h, width)
        out = mm(x, weight.T)
        epilogue(out.reshape(len(out), 1, -1), None, bias, activation, channels_last=True)
        return out

    def probe(self):
        # Two outputs are enough to show a dependency (a following softmax needs unequal logits).
        return self.model_copy(update={"out_features": 2, "in_features": None}), 1

    def to_onnx(self, g, xs, in_shapes):
        tensors = [g.tensor("weight"), *([g.tensor("bias")] if self.bias else [])]
        if not self.per_pixel:
            g.node("Gemm", [xs[0], *tensors], transB=1)  # x W^T + b, W in PyTorch's (out, in) layout
            return
        # ConvNeXt's Permute -> Linear -> Permute; the initializer keeps PyTorch's (out, in) layout
        last = g.node("Transpose", xs, perm=[0, 2, 3, 1])
        out = g.node("MatMul", [last, g.node("Transpose", [tensors[0]], perm=[1, 0])])
        if self.bias:
            out = g.node("Add", [out, tensors[1]])
        g.node("Transpose", [out], perm=[0, 3, 1, 2])
