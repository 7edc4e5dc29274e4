"""Channel rearrangements of ShuffleNetV2: channel shuffle and a channel chunk (torch's x.chunk)."""

from __future__ import annotations

from typing import ClassVar, Literal

from archspec.lazy import numpy as np
from archspec.ops.base import (
    NonNegativeInt,
    NoTensors,
    OpBase,
    Plain,
    Pointwise,
    PositiveInt,
    ShapeError,
    TrainSaves,
    require_spatial,
)
from archspec.ops.explain import no_params_lines, same_shape_line, shape


class ChannelShuffle(Plain, NoTensors, OpBase):
    """ShuffleNet's channel shuffle: view (groups, C / groups, H, W), swap the first two axes, view
    back (torchvision's channel_shuffle). Output channel j * groups + i is input channel
    i * (C / groups) + j. torchvision makes the transposed tensor contiguous, so the result is a new
    buffer, not a view."""

    op: Literal["channel_shuffle"]
    groups: PositiveInt

    def explain(self, in_shapes, out_shape):
        c = in_shapes[0][0]
        return [
            same_shape_line(
                in_shapes[0], f"channels reordered: view as {self.groups} x {c // self.groups}, transpose, view back"
            ),
            *no_params_lines("a copy in a new order"),
        ]

    def output_shape(self, in_shapes):
        c, _, _ = require_spatial(in_shapes[0], "channel_shuffle")
        if c % self.groups:
            raise ShapeError(
                f"channel_shuffle with groups {self.groups} needs a channel count divisible by it, got {c}",
                "check the widths of the branches concatenated before the shuffle",
            )
        return in_shapes[0]

    def rf_rule(self, in_shapes):
        return "pointwise"

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves()  # view, transpose, contiguous: nothing saved; the result is a new tensor

    def probe(self):
        # A permutation of channels: fed `groups` differing channels, the real kernel runs as is.
        return self, self.groups

    def to_onnx(self, g, xs, in_shapes):
        c, h, w = in_shapes[0]
        grouped = g.node("Reshape", [xs[0], g.const([0, self.groups, c // self.groups, h, w])])
        swapped = g.node("Transpose", [grouped], perm=[0, 2, 1, 3, 4])
        g.node("Reshape", [swapped, g.const([0, c, h, w])])

    def forward(self, xs, w, mm):
        x = xs[0]
        n, c, h, width = x.shape
        shuffled = x.reshape(n, self.groups, c // self.groups, h, width).swapaxes(1, 2).reshape(n, c, h, width)
        # Always a new buffer, as the memory model states. (With groups 1 or C the shuffle is the
        # identity, NumPy's reshape returns a view, and so would torch's contiguous(); torchvision
        # never shuffles that way.)
        return shuffled.copy() if np.may_share_memory(shuffled, x) else shuffled


class ChannelChunk(Plain, Pointwise, NoTensors, OpBase):
    """Chunk `index` of torch's x.chunk(chunks, dim=1): chunks of ceil(C / chunks) channels, the last
    one possibly smaller (ShuffleNetV2's `x1, x2 = x.chunk(2, dim=1)` is two nodes, index 0 and 1).

    torch returns views of the input, and so does this op: its output shares the input's buffer,
    which stays alive while any chunk is used (the memory model's `view` rule)."""

    op: Literal["channel_chunk"]
    chunks: PositiveInt
    index: NonNegativeInt

    def explain(self, in_shapes, out_shape):
        c = in_shapes[0][0]
        start, stop = self._bounds(c)
        size = -(-c // self.chunks)
        return [
            f"chunks of ceil({c} / {self.chunks}) = {size} channels; chunk {self.index} is channels"
            f" {start} .. {stop - 1} -> {shape(out_shape)}  (a view)",
            *no_params_lines("a view, nothing is computed"),
        ]

    view: ClassVar[bool] = True

    def _bounds(self, channels: int) -> tuple[int, int]:
        size = -(-channels // self.chunks)
        start = self.index * size
        if self.index >= self.chunks or start >= channels:
            count = -(-channels // size)
            raise ShapeError(
                f"chunk {self.index} does not exist: {channels} channels in chunks of {size} give"
                f" {count} chunk(s) (torch.chunk's rule)",
                f"index counts from 0 and must be below {count}",
            )
        return start, min(start + size, channels)

    def output_shape(self, in_shapes):
        c, h, w = require_spatial(in_shapes[0], "channel_chunk")
        start, stop = self._bounds(c)
        return (stop - start, h, w)

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves(output_aliases_input=True)  # a view: it keeps the whole input's storage alive

    def probe(self):
        # The probe's tensors have one channel: the whole of it stands for every chunk's pixels.
        return self.model_copy(update={"chunks": 1, "index": 0}), 1

    def to_onnx(self, g, xs, in_shapes):
        start, stop = self._bounds(in_shapes[0][0])
        g.node("Slice", [xs[0], g.const([start]), g.const([stop]), g.const([1])])

    def forward(self, xs, w, mm):
        x = xs[0]
        start, stop = self._bounds(x.shape[1])
        return x[:, start:stop]
