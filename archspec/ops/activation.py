"""Element-wise ops and inference-time identities: ReLU, dropout, softmax, stochastic depth."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from archspec.ops.base import NoTensors, OpBase, Plain, Pointwise

Probability = Annotated[float, Field(ge=0, le=1)]


class ReLU(Plain, Pointwise, NoTensors, OpBase):
    op: Literal["relu"]
    in_place: ClassVar[bool] = True

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def forward(self, xs, w, mm):
        return np.maximum(xs[0], 0)

    def forward_in_place(self, x):
        return np.maximum(x, 0, out=x)

    def to_onnx(self, g, xs, in_shapes):
        g.node("Relu", xs)


class Dropout(Plain, Pointwise, NoTensors, OpBase):
    """Identity at inference (PyTorch scales at training time instead)."""

    op: Literal["dropout"]
    view: ClassVar[bool] = True
    p: Probability = 0.5

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def to_onnx(self, g, xs, in_shapes):
        g.node("Dropout", [xs[0], g.const(self.p, "float32")])  # inference: the identity

    def forward(self, xs, w, mm):
        return xs[0]


class Identity(Plain, Pointwise, NoTensors, OpBase):
    op: Literal["identity"]
    view: ClassVar[bool] = True

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def to_onnx(self, g, xs, in_shapes):
        g.node("Identity", xs)

    def forward(self, xs, w, mm):
        return xs[0]


class Softmax(Plain, NoTensors, OpBase):
    """Softmax over the feature (channel) axis."""

    op: Literal["softmax"]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def rf_rule(self, in_shapes):
        return "global" if len(in_shapes[0]) == 1 else "pointwise"

    def probe(self):
        return self, 2  # over one channel a softmax is constant: two differing channels show a change

    def to_onnx(self, g, xs, in_shapes):
        g.node("Softmax", xs, axis=1)

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

    def to_onnx(self, g, xs, in_shapes):
        # The inference form (scale by survival); the exporter records stochastic nodes in the metadata.
        g.node("Mul", [xs[0], g.const(1.0 if self.survival is None else self.survival, "float32")])

    def forward(self, xs, w, mm):
        survival = 1.0 if self.survival is None else self.survival
        return (xs[0] * np.float32(survival)).astype(xs[0].dtype, copy=False)
