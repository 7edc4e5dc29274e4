"""Pooling: max, average, and adaptive average (PyTorch semantics, including ceil_mode)."""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from archspec.lazy import numpy as np
from archspec.ops.base import (
    NonNegativePair,
    NoOnnxEquivalent,
    NoTensors,
    OpBase,
    Plain,
    PositivePair,
    Saved,
    ShapeError,
    TrainSaves,
    Window,
    pair,
    require_spatial,
    window_output_size,
)
from archspec.ops.explain import no_params_lines, num, shape, window_size_lines
from archspec.ops.windows import window_max, window_view


class _WindowPool(Plain, NoTensors, OpBase):
    kernel: PositivePair
    stride: PositivePair | None = None  # PyTorch's default: the kernel size
    padding: NonNegativePair = 0
    ceil_mode: bool = False

    def explain(self, in_shapes, out_shape):
        lines = window_size_lines(
            in_shapes[0], out_shape, self.kernel, self._stride(), self.padding, ceil_mode=self.ceil_mode
        )
        lines.append(f"output volume = {shape(out_shape)}  (pooling keeps the {out_shape[0]} channels)")
        return lines + no_params_lines("a max or mean over each window, no weights to multiply")

    def _stride(self) -> tuple[int, int]:
        return pair(self.stride if self.stride is not None else self.kernel)

    def output_shape(self, in_shapes):
        c, h, w = require_spatial(in_shapes[0], self.op)
        k, s, p = pair(self.kernel), self._stride(), pair(self.padding)
        for axis in range(2):
            if 2 * p[axis] > k[axis]:
                raise ShapeError(f"padding {p[axis]} must be at most half the kernel {k[axis]} (PyTorch's rule)")
        return (
            c,
            window_output_size(h, k[0], s[0], p[0], self.ceil_mode),
            window_output_size(w, k[1], s[1], p[1], self.ceil_mode),
        )

    def rf_rule(self, in_shapes):
        return Window(kernel=pair(self.kernel), stride=self._stride(), padding=pair(self.padding))

    def probe(self):
        return self, 1

    def _onnx_window(self) -> dict:
        p = pair(self.padding)
        return {
            "kernel_shape": list(pair(self.kernel)),
            "strides": list(self._stride()),
            "pads": [p[0], p[1], p[0], p[1]],
            "ceil_mode": int(self.ceil_mode),
        }


class MaxPool2d(_WindowPool):
    """Max pooling; padding is -inf, so it never wins (PyTorch's rule)."""

    op: Literal["max_pool2d"]

    def train_saves(self, in_shapes, out_shape):
        indices = Saved("new", elements=math.prod(out_shape), itemsize=8, what="indices (int64)")
        return TrainSaves((Saved("input", what="self"), indices))

    def forward(self, xs, w, mm):
        return window_max(xs[0], pair(self.kernel), self._stride(), pair(self.padding), self.ceil_mode)

    def to_onnx(self, g, xs, in_shapes):
        g.node("MaxPool", xs, **self._onnx_window())


class AvgPool2d(_WindowPool):
    """Average pooling; the divisor counts padding unless count_include_pad is false."""

    op: Literal["avg_pool2d"]
    count_include_pad: bool = True

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves((Saved("input", what="self"),))

    def forward(self, xs, w, mm):
        x = xs[0]
        k, s, p = pair(self.kernel), self._stride(), pair(self.padding)
        view, declared = window_view(x, k, s, p, ceil_mode=self.ceil_mode)
        total = view.sum(axis=(-2, -1))
        if self.count_include_pad:
            divisor = declared.sum(axis=(-2, -1))
        else:
            real = np.ones((1, 1, *x.shape[2:]), dtype=np.float32)
            divisor = window_view(real, k, s, p, ceil_mode=self.ceil_mode)[0].sum(axis=(-2, -1))[0, 0]
        return (total / divisor).astype(x.dtype, copy=False)

    def to_onnx(self, g, xs, in_shapes):
        g.node("AveragePool", xs, count_include_pad=int(self.count_include_pad), **self._onnx_window())


class AdaptiveAvgPool2d(Plain, NoTensors, OpBase):
    """Adaptive average pooling to a fixed output size; output_size 1 is global average pooling.

    PyTorch's cell i along an axis of length L averages [floor(i*L/o), ceil((i+1)*L/o)).
    """

    op: Literal["adaptive_avg_pool2d"]
    output_size: PositivePair = 1

    size_dependent: ClassVar[bool] = True  # its windows follow the input size

    def explain(self, in_shapes, out_shape):
        _, h, w = in_shapes[0]
        oh, ow = pair(self.output_size)
        lines = [
            f"output size fixed at {oh} x {ow}: cell i averages input rows floor(i·{h}/{oh}) .. ceil((i+1)·{h}/{oh}) − 1"
        ]
        if (oh, ow) == (1, 1):
            lines[0] = f"output size fixed at 1 x 1: the mean of all {h}·{w} = {num(h * w)} positions of each channel"
        elif h % oh == 0 and w % ow == 0:
            lines.append(f"  = a {h // oh}x{w // ow} window with stride {h // oh}x{w // ow} ({h}/{oh}, {w}/{ow})")
        lines.append(f"output volume = {shape(out_shape)}")
        return lines + no_params_lines("an average over each window, no weights to multiply")

    def output_shape(self, in_shapes):
        c, h, w = require_spatial(in_shapes[0], "adaptive_avg_pool2d")
        return (c, *pair(self.output_size))

    def window_cells(self, length: int, axis: int) -> tuple[list[int], list[int]]:
        """Static rule: input range [start, end) averaged by each output cell along `axis`."""
        out = pair(self.output_size)[axis]
        return [i * length // out for i in range(out)], [-(-(i + 1) * length // out) for i in range(out)]

    def rf_rule(self, in_shapes):
        _, h, w = in_shapes[0]
        out = pair(self.output_size)
        if out == (1, 1):
            return "global"
        if h % out[0] or w % out[1]:
            return "irregular"
        k = (h // out[0], w // out[1])
        return Window(kernel=k, stride=k, padding=(0, 0))

    def probe(self):
        return self, 1

    def to_onnx(self, g, xs, in_shapes):
        rule = self.rf_rule(in_shapes)
        if rule == "global":
            g.node("GlobalAveragePool", xs)
        elif rule == "irregular":
            _, h, w = in_shapes[0]
            raise NoOnnxEquivalent(
                f"adaptive_avg_pool2d from {h} x {w} to {list(pair(self.output_size))} uses windows of unequal"
                " sizes, which no ONNX pooling operator computes",
                "choose an input size whose height and width are multiples of output_size (--input), or use avg_pool2d",
            )
        else:
            g.node("AveragePool", xs, kernel_shape=list(rule.kernel), strides=list(rule.stride))

    def train_saves(self, in_shapes, out_shape):
        if pair(self.output_size) == (1, 1):
            return TrainSaves()  # PyTorch takes the mean over H and W: only sizes are saved
        return TrainSaves((Saved("input", what="self"),))  # even when the output size equals the input's

    def forward(self, xs, w, mm):
        x = xs[0]
        if pair(self.output_size) == (1, 1):  # global average pooling (squeeze-and-excitation, classifiers)
            return np.ascontiguousarray(x.mean(axis=(2, 3), keepdims=True), dtype=x.dtype)
        # Averaging matrices A_h (o_h x H) and A_w (o_w x W): out = A_h . x . A_w^T, no loop.
        mats = []
        for length, out in zip(x.shape[2:], pair(self.output_size), strict=True):
            cells = np.arange(out)
            start = (cells * length) // out
            end = -((-(cells + 1) * length) // out)
            pos = np.arange(length)
            inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
            mats.append(inside / (end - start)[:, None])
        result = np.einsum("oh,nchw,pw->ncop", mats[0], x, mats[1], optimize=True)
        # Contiguous, as PyTorch returns it, so a following flatten is a view (no copy).
        return np.ascontiguousarray(result, dtype=x.dtype)
