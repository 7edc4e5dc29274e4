"""Element-wise ops and inference-time identities: ReLU, dropout, softmax, stochastic depth."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from archspec.ops.base import NoTensors, OpBase, Plain, Pointwise, Saved, TrainSaves

Probability = Annotated[float, Field(ge=0, le=1)]


class ReLU(Plain, Pointwise, NoTensors, OpBase):
    op: Literal["relu"]
    in_place: ClassVar[bool] = True
    # PyTorch's ReLU(inplace=...) in training: torchvision builds every ReLU with inplace=True. Either way
    # one tensor is saved (the result); in place, the result is the input's storage.
    inplace: bool = True

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves((Saved("output", what="result"),), output_aliases_input=self.inplace)

    def forward(self, xs, w, mm):
        return np.maximum(xs[0], 0)

    def forward_in_place(self, x):
        return np.maximum(x, 0, out=x)


class Dropout(Plain, Pointwise, NoTensors, OpBase):
    """Identity at inference (PyTorch scales at training time instead)."""

    op: Literal["dropout"]
    view: ClassVar[bool] = True
    p: Probability = 0.5
    # PyTorch's Dropout(inplace=...): at training time in place, the output is the input's storage.
    # torchvision's AlexNet, VGG, SqueezeNet and GoogLeNet use inplace=False.
    inplace: bool = False

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def train_saves(self, in_shapes, out_shape):
        if self.p == 0:  # PyTorch returns the input itself
            return TrainSaves(output_aliases_input=True)
        if self.p == 1:  # input * 0: a zero scalar is saved
            return TrainSaves((Saved("new", elements=1, per_image=False, what="zero scalar"),), self.inplace)
        # input * mask: the scaled mask (0 or 1/(1-p)) in the activation dtype, the input's shape (CPU)
        mask = Saved("new", elements=math.prod(in_shapes[0]), what="mask")
        return TrainSaves((mask,), output_aliases_input=self.inplace)

    def forward(self, xs, w, mm):
        return xs[0]


class Identity(Plain, Pointwise, NoTensors, OpBase):
    op: Literal["identity"]
    view: ClassVar[bool] = True

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves(output_aliases_input=True)

    def forward(self, xs, w, mm):
        return xs[0]


class Softmax(Plain, NoTensors, OpBase):
    """Softmax over the feature (channel) axis."""

    op: Literal["softmax"]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def rf_rule(self, in_shapes):
        return "global" if len(in_shapes[0]) == 1 else "pointwise"

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves((Saved("output", what="result"),))

    def probe(self):
        return self, 2  # over one channel a softmax is constant: two differing channels show a change

    def forward(self, xs, w, mm):
        x = xs[0]
        shifted = x - x.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        return e / e.sum(axis=1, keepdims=True)


class StochasticDepth(Plain, Pointwise, NoTensors, OpBase):
    """Huang et al. 2016: at training time the residual branch through this node is dropped with
    probability 1 - survival; at test time it is kept and scaled by survival (their eq. 5).

    `survival` may be left out when the spec's `stochastic_depth:` schedule assigns it.
    """

    op: Literal["stochastic_depth"]
    stochastic: ClassVar[bool] = True
    survival: Probability | None = None  # every op with stochastic = True has this field

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def train_saves(self, in_shapes, out_shape):
        # Huang et al. at training time: the branch is kept unscaled or skipped. Memory is counted with
        # the branch kept (the worst case): its output passes on as is and nothing is saved here.
        return TrainSaves(output_aliases_input=True)

    def forward(self, xs, w, mm):
        survival = 1.0 if self.survival is None else self.survival
        return (xs[0] * np.float32(survival)).astype(xs[0].dtype, copy=False)
