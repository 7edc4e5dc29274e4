"""Element-wise ops and inference-time identities: ReLU and the other activations, dropout, softmax,
stochastic depth (Huang et al.'s and torchvision's)."""

from __future__ import annotations

import math
from typing import Annotated, ClassVar, Literal

from pydantic import Field

from archspec.lazy import numpy as np
from archspec.ops.base import Activation, NoTensors, OpBase, Plain, Pointwise, Saved, TrainSaves
from archspec.ops.compiled import silu_compiled
from archspec.ops.explain import no_params_lines, same_shape_line

Probability = Annotated[float, Field(ge=0, le=1)]


class ReLU(Plain, Pointwise, NoTensors, OpBase):
    op: Literal["relu"]
    in_place: ClassVar[bool] = True
    epilogue_activation: ClassVar[Activation | None] = Activation(lo=0.0)
    # PyTorch's ReLU(inplace=...) in training: torchvision builds every ReLU with inplace=True. Either way
    # one tensor is saved (the result); in place, the result is the input's storage.
    inplace: bool = True

    def explain(self, in_shapes, out_shape):
        return [
            same_shape_line(in_shapes[0], "max(x, 0) element by element; in place when nothing else reads its input"),
            *no_params_lines("not counted"),
        ]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves((Saved("output", what="result"),), output_aliases_input=self.inplace)

    def forward(self, xs, w, mm):
        return np.maximum(xs[0], 0)

    def forward_in_place(self, x):
        return np.maximum(x, 0, out=x)

    def to_onnx(self, g, xs, in_shapes):
        g.node("Relu", xs)


class _Elementwise(Plain, Pointwise, NoTensors, OpBase):
    """An activation applied to every element on its own; `f` is its float32 formula and `formula`
    the same in words, for `archspec explain`."""

    formula: ClassVar[str]

    def explain(self, in_shapes, out_shape):
        return [
            same_shape_line(in_shapes[0], f"{self.formula}, element by element"),
            *no_params_lines("element-wise work is not counted"),
        ]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def f(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def forward(self, xs, w, mm):
        x = xs[0]
        return self.f(x).astype(x.dtype, copy=False)


def _saves_self(inplace: bool, in_shapes) -> TrainSaves:
    """What PyTorch's hardtanh (ReLU6), silu, hardswish and hardsigmoid save: their input when out of place;
    run in place (the output is the input's storage), a clone of the original input (a new tensor)."""
    if inplace:
        clone = Saved("new", elements=math.prod(in_shapes[0]), what="self (clone of the input)")
        return TrainSaves((clone,), output_aliases_input=True)
    return TrainSaves((Saved("input", what="self"),))


class _SavesSelf:
    """Mixin: what training saves follows PyTorch's `inplace` flag, a field of each such op (see _saves_self)."""

    def train_saves(self, in_shapes, out_shape):
        return _saves_self(self.inplace, in_shapes)


class _InPlace:
    """Mixin for activations torchvision builds with inplace=True: the result is written into x when
    the memory model allows it (see ReLU). What training saves follows each op's `inplace` field
    (PyTorch's flag; see _saves_self)."""

    in_place: ClassVar[bool] = True

    def forward_in_place(self, x):
        x[...] = self.f(x)
        return x


class ReLU6(_SavesSelf, _InPlace, _Elementwise):
    """min(max(x, 0), 6) (MobileNetV2; torchvision builds it with inplace=True)."""

    op: Literal["relu6"]
    epilogue_activation: ClassVar[Activation | None] = Activation(lo=0.0, hi=6.0)
    formula: ClassVar[str] = "min(max(x, 0), 6)"  # for `archspec explain`
    inplace: bool = True  # PyTorch's ReLU6(inplace=...) at training time (torchvision: True)

    def f(self, x):
        return np.clip(x, 0, 6)

    def to_onnx(self, g, xs, in_shapes):
        g.node("Clip", [xs[0], g.const(0.0, "float32"), g.const(6.0, "float32")])

    def forward_in_place(self, x):
        return np.clip(x, 0, 6, out=x)


def _one_plus_exp_minus(x: np.ndarray) -> np.ndarray:
    """1 + exp(-x) as a new array of x's dtype, in three passes. exp overflows to inf for very negative
    x, which is the right limit for both uses below (1 / inf = 0, x / inf = -0), so the warning is muted."""
    t = np.negative(x)
    with np.errstate(over="ignore"):
        np.exp(t, out=t)
    t += 1
    return t


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """1 / (1 + exp(-x)), accurate to float32 round-off at both ends."""
    t = _one_plus_exp_minus(x)
    return np.reciprocal(t, out=t)


class Sigmoid(_Elementwise):
    """1 / (1 + exp(-x)) (EfficientNet's and RegNet's squeeze-and-excitation gates)."""

    op: Literal["sigmoid"]
    formula: ClassVar[str] = "1 / (1 + exp(−x))"  # for `archspec explain`

    def to_onnx(self, g, xs, in_shapes):
        g.node("Sigmoid", xs)

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves((Saved("output", what="result"),))

    def f(self, x):
        return _sigmoid(x)


class Hardsigmoid(_SavesSelf, _Elementwise):
    """relu6(x + 3) / 6 (MobileNetV3's gates; torchvision leaves it out of place)."""

    op: Literal["hardsigmoid"]
    formula: ClassVar[str] = "min(max(x + 3, 0), 6) / 6"  # for `archspec explain`
    inplace: bool = False  # PyTorch's Hardsigmoid(inplace=...) at training time (torchvision: False)

    def to_onnx(self, g, xs, in_shapes):
        g.node("HardSigmoid", xs, alpha=1 / 6, beta=0.5)

    def f(self, x):
        return np.clip(x + 3, 0, 6) / 6


class Hardswish(_SavesSelf, _InPlace, _Elementwise):
    """x * relu6(x + 3) / 6 (MobileNetV3; torchvision builds it with inplace=True)."""

    op: Literal["hardswish"]
    formula: ClassVar[str] = "x · min(max(x + 3, 0), 6) / 6"  # for `archspec explain`
    inplace: bool = True  # PyTorch's Hardswish(inplace=...) at training time (torchvision: True)

    def to_onnx(self, g, xs, in_shapes):
        g.node("HardSwish", xs)

    def f(self, x):
        return x * (np.clip(x + 3, 0, 6) / 6)


class SiLU(_SavesSelf, _InPlace, _Elementwise):
    """x * sigmoid(x), also called swish (EfficientNet; torchvision builds it with inplace=True)."""

    op: Literal["silu"]
    formula: ClassVar[str] = "x · sigmoid(x)"  # for `archspec explain`
    epilogue_activation: ClassVar[Activation | None] = Activation(silu=True)
    inplace: bool = True  # PyTorch's SiLU(inplace=...) at training time (torchvision: True)

    def to_onnx(self, g, xs, in_shapes):
        g.node("Mul", [xs[0], g.node("Sigmoid", xs)])  # ONNX has no SiLU: x * sigmoid(x), as PyTorch exports it

    def f(self, x):
        if (out := silu_compiled(x)) is not None:
            return out
        t = _one_plus_exp_minus(x)
        return np.divide(x, t, out=t)  # x * sigmoid(x) = x / (1 + exp(-x)): four passes, no temporaries left

    def forward_in_place(self, x):
        if (out := silu_compiled(x, in_place=True)) is not None:
            return out
        return silu_in_place(x)


def silu_in_place(x: np.ndarray) -> np.ndarray:
    """x / (1 + exp(-x)) into x, in NumPy's four passes."""
    return np.divide(x, _one_plus_exp_minus(x), out=x)


# Numerical Recipes' Chebyshev fit of erfc (Press et al., "erfcc"): relative error below 1.2e-7 for
# every x >= 0, i.e. float32 round-off; NumPy has no erf and SciPy is not a dependency.
_ERFC_COEFFICIENTS = (
    -1.26551223,
    1.00002368,
    0.37409196,
    0.09678418,
    -0.18628806,
    0.27886807,
    -1.13520398,
    1.48851587,
    -0.82215223,
    0.17087277,
)


def erfc(x: np.ndarray) -> np.ndarray:
    """Complementary error function, float64, vectorized (erfc(-x) = 2 - erfc(x))."""
    x = np.asarray(x, dtype=np.float64)
    z = np.abs(x)
    t = 1.0 / (1.0 + 0.5 * z)
    poly = np.zeros_like(t)
    for c in reversed(_ERFC_COEFFICIENTS):
        poly = poly * t + c
    value = t * np.exp(-z * z + poly)
    return np.where(x >= 0, value, 2.0 - value)


class GELU(_Elementwise):
    """x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)) (ConvNeXt), or with approximate: tanh
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3))) (PyTorch's two forms).

    1 + erf(z) is computed as erfc(-z), so the result keeps its relative accuracy for negative x.
    """

    op: Literal["gelu"]
    formula: ClassVar[str] = (
        "x · Φ(x), Φ the standard normal CDF (tanh approximation with approximate: tanh)"  # for `archspec explain`
    )
    approximate: Literal["none", "tanh"] = "none"

    def to_onnx(self, g, xs, in_shapes):
        x = xs[0]
        if g.opset >= 20:
            g.node("Gelu", [x], approximate=self.approximate)
        elif self.approximate == "none":  # 0.5 x (1 + erf(x / sqrt 2)), PyTorch's expansion before opset 20
            erf = g.node("Erf", [g.node("Div", [x, g.const(math.sqrt(2), "float32")])])
            g.node("Mul", [g.node("Mul", [x, g.node("Add", [erf, g.const(1.0, "float32")])]), g.const(0.5, "float32")])
        else:  # 0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x^3)))
            cube = g.node("Mul", [g.node("Mul", [x, x]), x])
            inner = g.node("Add", [x, g.node("Mul", [cube, g.const(0.044715, "float32")])])
            tanh = g.node("Tanh", [g.node("Mul", [inner, g.const(math.sqrt(2 / math.pi), "float32")])])
            g.node("Mul", [g.node("Mul", [x, g.node("Add", [tanh, g.const(1.0, "float32")])]), g.const(0.5, "float32")])

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves((Saved("input", what="self"),))  # both forms

    def f(self, x):
        if self.approximate == "tanh":
            inner = np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(0.044715) * x * x * x)
            return np.float32(0.5) * x * (1 + np.tanh(inner))
        return 0.5 * x * erfc(-x / math.sqrt(2))


class Dropout(Plain, Pointwise, NoTensors, OpBase):
    """Identity at inference (PyTorch scales at training time instead)."""

    op: Literal["dropout"]
    view: ClassVar[bool] = True
    p: Probability = 0.5
    # PyTorch's Dropout(inplace=...): at training time in place, the output is the input's storage.
    # torchvision's AlexNet, VGG, SqueezeNet and GoogLeNet use inplace=False.
    inplace: bool = False

    def explain(self, in_shapes, out_shape):
        return [
            same_shape_line(in_shapes[0], f"identity at inference, a view; drops {self.p:g} of the values in training"),
            *no_params_lines("nothing is computed at inference"),
        ]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def to_onnx(self, g, xs, in_shapes):
        g.node("Dropout", [xs[0], g.const(self.p, "float32")])  # inference: the identity

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

    def explain(self, in_shapes, out_shape):
        return [same_shape_line(in_shapes[0], "a view of the input"), *no_params_lines("nothing is computed")]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def to_onnx(self, g, xs, in_shapes):
        g.node("Identity", xs)

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves(output_aliases_input=True)

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

    def train_saves(self, in_shapes, out_shape):
        return TrainSaves((Saved("output", what="result"),))

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
    # Every op with stochastic = True has `survival` (training-time probability that its branch runs;
    # None = not yet assigned) and `with_drop_probability(p)`, which spec schedules use.
    survival: Probability | None = None

    def explain(self, in_shapes, out_shape):
        p = 1.0 if self.survival is None else self.survival
        return [
            same_shape_line(in_shapes[0], f"at inference the branch is scaled by its survival probability {p:g}"),
            *no_params_lines("a scale is not counted"),
            f"training: the branch is dropped with probability 1 − {p:g} = {1 - p:g}",
        ]

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def to_onnx(self, g, xs, in_shapes):
        # The inference form (scale by survival); the exporter records stochastic nodes in the metadata.
        g.node("Mul", [xs[0], g.const(1.0 if self.survival is None else self.survival, "float32")])

    def train_saves(self, in_shapes, out_shape):
        # Huang et al. at training time: the branch is kept unscaled or skipped. Memory is counted with
        # the branch kept (the worst case): its output passes on as is and nothing is saved here.
        return TrainSaves(output_aliases_input=True)

    def forward(self, xs, w, mm):
        survival = 1.0 if self.survival is None else self.survival
        return (xs[0] * np.float32(survival)).astype(xs[0].dtype, copy=False)

    def with_drop_probability(self, p: float) -> StochasticDepth:
        """This node with the drop probability a spec-level schedule assigns it."""
        return self.model_copy(update={"survival": 1.0 - p})


class DropPath(Plain, Pointwise, NoTensors, OpBase):
    """torchvision's StochasticDepth(p, mode="row") (EfficientNet, ConvNeXt): at training time each
    sample's residual branch is dropped with probability p and survivors are scaled by 1 / (1 - p);
    at inference it returns its input itself (a view, no scaling).

    `p` may be left out when the spec's `stochastic_depth:` schedule assigns it (torchvision's rule
    p_i = prob * i / N over the blocks in order; see the README).
    """

    op: Literal["drop_path"]
    view: ClassVar[bool] = True  # torchvision returns the input tensor itself at inference
    stochastic: ClassVar[bool] = True
    p: Probability | None = None

    def explain(self, in_shapes, out_shape):
        p = "p" if self.p is None else f"{self.p:g}"
        return [
            same_shape_line(in_shapes[0], "the input itself at inference (a view)"),
            *no_params_lines("nothing is computed at inference"),
            f"training: each sample's branch is dropped with probability {p}, survivors scaled by 1 / (1 − {p})",
        ]

    @property
    def survival(self) -> float | None:
        """Probability that the branch runs at training time (every stochastic op has `survival`)."""
        return None if self.p is None else 1.0 - self.p

    def output_shape(self, in_shapes):
        return in_shapes[0]

    def forward(self, xs, w, mm):
        return xs[0]

    def train_saves(self, in_shapes, out_shape):
        if not self.p:  # p = 0 (or not assigned): torchvision returns the input itself
            return TrainSaves(output_aliases_input=True)
        # input * noise, noise of shape (N, 1, 1, 1): only the noise is saved (it does not require grad)
        return TrainSaves((Saved("new", elements=1, what="noise"),))

    def to_onnx(self, g, xs, in_shapes):
        g.node("Identity", xs)  # inference; the exporter records stochastic nodes in the metadata

    def with_drop_probability(self, p: float) -> DropPath:
        return self.model_copy(update={"p": p})
