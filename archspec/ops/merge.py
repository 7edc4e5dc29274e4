"""Merges of several tensors (add, mul, concat) and the parameter-free channel-padding shortcut."""

from __future__ import annotations

from typing import ClassVar, Literal

from archspec.lazy import numpy as np
from archspec.ops.base import (
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
from archspec.ops.compiled import activate_in_place, add_activate
from archspec.ops.explain import no_params_lines, shape


def _describe(names: list[str], shapes) -> str:
    return ", ".join(f"'{n}' {list(s)}" for n, s in zip(names, shapes, strict=True))


class Add(Plain, Pointwise, NoTensors, OpBase):
    """Element-wise sum of two or more tensors of identical shape (residual connections)."""

    op: Literal["add"]
    arity: ClassVar[tuple[int, None]] = (2, None)
    absorbs_activation: ClassVar[bool] = True  # a residual block's add -> ReLU: one pass (`forward_fused`)
    sums_inputs: ClassVar[bool] = True  # (a conv before it may absorb it: Conv2d.absorbs_residual)

    def explain(self, in_shapes, out_shape):
        terms = " + ".join(f"{name} ({shape(s)})" for name, s in zip(self.inputs, in_shapes, strict=True))
        return [
            f"shape rule: inputs of equal shape are summed element by element: {terms} -> {shape(out_shape)}",
            *no_params_lines("additions are not counted"),
        ]

    def output_shape(self, in_shapes):
        if len(set(in_shapes)) != 1:
            raise ShapeError(
                f"add needs inputs of the same shape, got {_describe(self.inputs, in_shapes)}",
                "project the shortcut (a 1x1 conv with the right stride and out_channels) so the shapes agree",
            )
        return in_shapes[0]

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves()  # a sum needs nothing for its backward; its output is a new tensor

    def forward(self, xs, w, mm):
        out = np.add(xs[0], xs[1])  # a new array; further inputs are added in place
        for x in xs[2:]:
            out += x
        return out

    def forward_fused(self, xs, w, mm, affine, activation=None):
        """The sum, then the activation: on the fast path with the compiled kernels, two inputs laid out
        alike are summed and activated in one pass (a ResNet block's add and ReLU)."""
        if affine is not None:  # (absorbs_affine is False: the plan never asks)
            return None
        if activation is None:
            return self.forward(xs, w, mm)
        if len(xs) == 2 and (flat := add_activate(xs[0], xs[1], activation)) is not None:
            return flat
        out = self.forward(xs, w, mm)
        activate_in_place(out, activation)
        return out

    def to_onnx(self, g, xs, in_shapes):
        g.node("Add" if len(xs) == 2 else "Sum", xs)


class Mul(Plain, NoTensors, OpBase):
    """Element-wise product of two tensors of the same shape, or of a (C, 1, 1) gate and a (C, H, W)
    map, the gate broadcast over every position (squeeze-and-excitation: `scale * x`). Either input
    may be the gate. 0 MACs: element-wise work is not counted in `macs`."""

    op: Literal["mul"]
    arity: ClassVar[int] = 2

    def explain(self, in_shapes, out_shape):
        a, b = in_shapes
        rule = "equal shapes, multiplied element by element"
        if a != b:
            rule = "a C x 1 x 1 gate scales every position of a C x H x W map"
        terms = " × ".join(f"{name} ({shape(s)})" for name, s in zip(self.inputs, in_shapes, strict=True))
        return [
            f"shape rule: {rule}: {terms} -> {shape(out_shape)}",
            *no_params_lines("element-wise products are not counted"),
        ]

    def output_shape(self, in_shapes):
        a, b = in_shapes
        if a == b:
            return a
        if len(a) == len(b) == 3 and a[0] == b[0] and (a[1:] == (1, 1) or b[1:] == (1, 1)):
            return a if b[1:] == (1, 1) else b
        raise ShapeError(
            f"mul needs inputs of the same shape, or a C x 1 x 1 gate and a C x H x W map, got"
            f" {_describe(self.inputs, in_shapes)}",
            "a squeeze-and-excitation gate must end with as many channels as the map it scales",
        )

    def rf_rule(self, in_shapes):
        return "pointwise"  # a broadcast gate adds the 'global context' flag (broadcast_inputs)

    def forward(self, xs, w, mm):
        return xs[0] * xs[1]

    def to_onnx(self, g, xs, in_shapes):
        g.node("Mul", xs)  # ONNX broadcasts a (N, C, 1, 1) gate as PyTorch does

    def train_saves(self, in_shapes, out_shape):
        # MulBackward0: each factor is saved for the other's gradient (SE: the gate and the block input).
        return TrainSaves(
            (
                Saved("input", index=0, what="self", only_if_grad_of=1),
                Saved("input", index=1, what="other", only_if_grad_of=0),
            )
        )

    def probe(self):
        """The probe runs a sum instead of the product. It compares each output with the output on
        all-zero inputs, and a product hides a dependence behind zeros: with the gate at 0 (its
        baseline) a lit map pixel gives 0 * x = 0, unchanged, and the other way round. A sum of the
        same inputs changes wherever either input changes, which is exactly which input units the
        product depends on (for generic values, where neither factor is 0)."""
        return Add(name=self.name, op="add", inputs=self.inputs), 1


class Concat(Plain, Pointwise, NoTensors, OpBase):
    """Concatenation along the channel axis; spatial sizes must match."""

    op: Literal["concat"]
    arity: ClassVar[tuple[int, None]] = (2, None)

    def explain(self, in_shapes, out_shape):
        channels = " + ".join(str(s[0]) for s in in_shapes)
        return [
            f"shape rule: channels add up, height and width must agree ({shape(in_shapes[0][1:])}):"
            f" {channels} = {out_shape[0]} channels -> {shape(out_shape)}",
            *no_params_lines("a copy into one tensor"),
        ]

    def output_shape(self, in_shapes):
        for s in in_shapes:
            require_spatial(s, "concat")
        if len({s[1:] for s in in_shapes}) != 1:
            raise ShapeError(
                f"concat needs equal spatial sizes, got {_describe(self.inputs, in_shapes)}",
                "check the strides and padding of the branches so they end at the same height and width",
            )
        return (sum(s[0] for s in in_shapes), *in_shapes[0][1:])

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves()  # torch.cat saves only sizes; its output is a new tensor

    def forward(self, xs, w, mm):
        return np.concatenate(xs, axis=1)

    def to_onnx(self, g, xs, in_shapes):
        g.node("Concat", xs, axis=1)


class ChannelPad(Plain, NoTensors, OpBase):
    """Zero channels appended to reach out_channels: He et al.'s parameter-free shortcut (option A)."""

    op: Literal["channel_pad"]
    out_channels: PositiveInt

    def explain(self, in_shapes, out_shape):
        c = in_shapes[0][0]
        return [
            f"output = {c} input channels + {out_shape[0] - c} zero channels = {shape(out_shape)}",
            *no_params_lines("zeros appended, no weights"),
        ]

    def output_shape(self, in_shapes):
        c, h, w = require_spatial(in_shapes[0], "channel_pad")
        if self.out_channels < c:
            raise ShapeError(f"out_channels {self.out_channels} is less than the input's {c} channels")
        return (self.out_channels, h, w)

    def forward(self, xs, w, mm):
        x = xs[0]
        return np.pad(x, ((0, 0), (0, self.out_channels - x.shape[1]), (0, 0), (0, 0)))

    def rf_rule(self, in_shapes):
        return "pointwise"

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves()  # F.pad saves only the padding; its output is a new tensor

    def probe(self):
        return self.model_copy(update={"out_channels": 1}), 1

    def to_onnx(self, g, xs, in_shapes):
        extra = self.out_channels - in_shapes[0][0]
        g.node("Pad", [xs[0], g.const([0, 0, 0, 0, 0, extra, 0, 0])], mode="constant")  # N C H W begins, then ends
