"""Element-wise ops and inference-time identities: ReLU, dropout, softmax, stochastic depth."""

from __future__ import annotations

from typing import Annotated, ClassVar, Literal

import numpy as np
from pydantic import Field

from archspec.ops.base import NoTensors, OpBase, Plain, Pointwise
from archspec.ops.explain import no_params_lines, same_shape_line

Probability = Annotated[float, Field(ge=0, le=1)]


class ReLU(Plain, Pointwise, NoTensors, OpBase):
    op: Literal["relu"]
    in_place: ClassVar[bool] = True

    def explain(self, in_shapes, out_shape):
        return [
            same_shape_line(in_shapes[0], "max(x, 0) element by element; in place when nothing else reads its input"),
            *no_params_lines("not counted"),
        ]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def forward(self, xs, w, mm):
        return np.maximum(xs[0], 0)

    def forward_in_place(self, x):
        return np.maximum(x, 0, out=x)


class Dropout(Plain, Pointwise, NoTensors, OpBase):
    """Identity at inference (PyTorch scales at training time instead)."""

    op: Literal["dropout"]
    view: ClassVar[bool] = True
    p: Probability = 0.5

    def explain(self, in_shapes, out_shape):
        return [
            same_shape_line(in_shapes[0], f"identity at inference, a view; drops {self.p:g} of the values in training"),
            *no_params_lines("nothing is computed at inference"),
        ]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def forward(self, xs, w, mm):
        return xs[0]


class Identity(Plain, Pointwise, NoTensors, OpBase):
    op: Literal["identity"]
    view: ClassVar[bool] = True

    def explain(self, in_shapes, out_shape):
        return [same_shape_line(in_shapes[0], "a view of the input"), *no_params_lines("nothing is computed")]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def forward(self, xs, w, mm):
        return xs[0]


class Softmax(Plain, NoTensors, OpBase):
    """Softmax over the feature (channel) axis."""

    op: Literal["softmax"]

    def explain(self, in_shapes, out_shape):
        return [
            same_shape_line(in_shapes[0], f"exp(x) / sum of exp over the {in_shapes[0][0]} features"),
            *no_params_lines("not counted"),
        ]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def rf_rule(self, in_shapes):
        return "global" if len(in_shapes[0]) == 1 else "pointwise"

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

    def explain(self, in_shapes, out_shape):
        p = 1.0 if self.survival is None else self.survival
        return [
            same_shape_line(in_shapes[0], f"at inference the branch is scaled by its survival probability {p:g}"),
            *no_params_lines("a scale is not counted"),
            f"training: the branch is dropped with probability 1 − {p:g} = {1 - p:g}",
        ]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def forward(self, xs, w, mm):
        survival = 1.0 if self.survival is None else self.survival
        return (xs[0] * np.float32(survival)).astype(xs[0].dtype, copy=False)
