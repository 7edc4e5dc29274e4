"""What every op provides, in one place per op: its parameters (a pydantic model), its static rules
(output shape, parameter shapes, MACs, receptive-field window) and its NumPy kernel.

Static rules work on shapes only; kernels work on real arrays. Verification compares the two, so a
kernel never calls a static rule: it derives what it needs from the arrays it is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from archspec.lazy import numpy as np

Shape = tuple[int, ...]  # (C, H, W) for feature maps, (F,) for flat features; never a batch axis.

PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
# A spatial size given once for both axes (3) or per axis ([3, 5], height first).
PositivePair = PositiveInt | Annotated[list[PositiveInt], Field(min_length=2, max_length=2)]
NonNegativePair = NonNegativeInt | Annotated[list[NonNegativeInt], Field(min_length=2, max_length=2)]


def pair(value: int | list[int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


class ShapeError(Exception):
    """An op cannot accept the shapes it is given; the message says what must hold, the hint how to fix it."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class NoOnnxEquivalent(Exception):
    """The op, with these parameters and shapes, has no ONNX operator that computes it exactly."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint


class OnnxGraph(Protocol):
    """What an op's `to_onnx` may call (implemented by archspec/onnx/export.py, which owns onnx)."""

    opset: int  # the ai.onnx opset being written (newer operators where it allows them)

    def node(self, op_type: str, inputs: list[str], **attributes) -> str:
        """Append a node; returns the name of its (single) output."""
        ...

    def tensor(self, key: str) -> str:
        """The initializer holding this node's tensor `key`, named by `tensor_key` as in the weights."""
        ...

    def const(self, values, dtype: str = "int64") -> str:
        """A constant tensor (not a weight): a list or array of values."""
        ...


@dataclass(frozen=True)
class Window:
    """How an op's output unit sees its input along each axis: effective kernel, stride, padding."""

    kernel: tuple[int, int]  # dilation already applied: d * (k - 1) + 1
    stride: tuple[int, int]
    padding: tuple[int, int]  # top, left
    dilation: tuple[int, int] = (1, 1)  # spacing of the kernel's taps inside `kernel`


# Receptive-field behaviour of an op:
#   Window      -> a sliding window over H and W
#   "pointwise" -> each output unit sees the same position of every input (ReLU, BN, add, concat)
#   "global"    -> each output unit sees the whole input (linear, global pooling, softmax on flat)
#   "irregular" -> windows of unequal size (adaptive pooling whose input is not a multiple of its output)
RFRule = Window | Literal["pointwise", "global", "irregular"]


class MatMul:
    """Every matrix product a kernel executes goes through here, so MACs are measured from operands.

    a: (..., M, K) and b: (..., K, N) -> counts prod(broadcast batch dims) * M * K * N.
    """

    def __init__(self) -> None:
        self.macs = 0

    def __call__(self, a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """a @ b (into `out` when given, which saves a copy when the product is one slice of a larger array)."""
        if a.shape[-1] != b.shape[-2]:
            raise ShapeError(f"matrix product of {a.shape} and {b.shape}: inner sizes differ")
        batch = a.shape[:-2] if a.shape[:-2] == b.shape[:-2] else np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
        self.macs += math.prod(batch) * a.shape[-2] * a.shape[-1] * b.shape[-1]
        return np.matmul(a, b, out=out)

    def batched(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """out[i] = a[i] @ b[i] for a stack of products a (P, M, K), b (P, K, N), out (P, M, N), counted like
        __call__: one batched BLAS call where BLAS takes the operands (`blas.takes_batched`: each thread then
        runs whole products), else NumPy's matmul."""
        from archspec.ops import blas

        if (
            a.ndim != 3
            or b.ndim != 3
            or b.shape[:2] != (a.shape[0], a.shape[2])
            or out.shape != (*a.shape[:2], b.shape[2])
        ):
            raise ShapeError(f"batched product of {a.shape} and {b.shape} into {out.shape}: shapes differ")
        self.macs += a.shape[0] * a.shape[1] * a.shape[2] * b.shape[2]
        if blas.takes_batched(a, b, out):
            blas.gemm_batched(a, b, out)
        else:
            np.matmul(a, b, out=out)

    def accumulate(self, a: np.ndarray, b: np.ndarray, out: np.ndarray) -> None:
        """out += a @ b, batched like __call__ (a's and b's batch dims broadcast to out's). Each 2-D
        product is one BLAS gemm that adds into `out` in place (archspec.ops.blas) where BLAS can take
        the operands; otherwise NumPy forms the product in a temporary and adds it."""
        from archspec.ops import blas

        if a.shape[-1] != b.shape[-2]:
            raise ShapeError(f"matrix product of {a.shape} and {b.shape}: inner sizes differ")
        batch, rows_cols = out.shape[:-2], (a.shape[-2], b.shape[-1])
        if np.broadcast_shapes(a.shape[:-2], b.shape[:-2], batch) != batch or out.shape[-2:] != rows_cols:
            raise ShapeError(f"matrix product of {a.shape} and {b.shape} into {out.shape}: shapes differ")
        self.macs += math.prod(batch) * a.shape[-2] * a.shape[-1] * b.shape[-1]
        a_all, b_all = np.broadcast_to(a, batch + a.shape[-2:]), np.broadcast_to(b, batch + b.shape[-2:])
        products = [(a_all[i], b_all[i], out[i]) for i in np.ndindex(batch)]
        if all(blas.takes(*product) for product in products):
            for product in products:
                blas.gemm_accumulate(*product)
        else:  # no BLAS found, or operands it cannot read in place
            out += np.matmul(a, b)

    def multiply(self, out: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
        """out = a * b elementwise (broadcasting), counting one MAC per product: the first term of a
        sum that `multiply_accumulate` continues."""
        shape = np.broadcast_shapes(a.shape, b.shape)
        if shape != out.shape:
            raise ShapeError(f"multiply of {a.shape} and {b.shape} into {out.shape}: shapes differ")
        self.macs += math.prod(shape)
        np.multiply(a, b, out=out)

    def multiply_accumulate(self, out: np.ndarray, a: np.ndarray, b: np.ndarray, scratch: np.ndarray) -> None:
        """out += a * b elementwise (broadcasting), counting one MAC per product actually formed.

        For kernels that are a sum of scaled shifted views rather than a matrix product (a depthwise
        convolution: per-channel weights times the input shifted by one kernel tap). `scratch` is an
        array of out's shape that receives the products (so no temporary is allocated per call)."""
        shape = np.broadcast_shapes(a.shape, b.shape)
        if shape != out.shape or scratch.shape != out.shape:
            raise ShapeError(f"multiply-accumulate of {a.shape} and {b.shape} into {out.shape}: shapes differ")
        self.macs += math.prod(shape)
        np.multiply(a, b, out=scratch)
        out += scratch


@dataclass(frozen=True)
class Activation:
    """An elementwise function that a kernel can apply in its last pass over its output (its epilogue), so
    that inference skips the activation node after it: min(max(y, lo), hi) (ReLU: lo = 0; ReLU6: 0 and 6),
    or y / (1 + exp(-y)) when `silu`. `archspec.ops.compiled` applies it."""

    lo: float = -math.inf
    hi: float = math.inf
    silu: bool = False


# affine(channels) -> (scale, shift) of shape (channels,), or None: see OpBase.forward_fused.
AffineSource = Callable[[int], "tuple[np.ndarray, np.ndarray] | None"]


def tensor_key(node: str, tensor: str) -> str:
    """The state_dict key of one of a node's tensors: `<node>.<tensor>` (PyTorch's module path plus
    the parameter's name), or the node name itself for the tensor named "" (a parameter held by a
    block rather than a submodule, as ConvNeXt's `features.1.0.layer_scale`). The one place this
    rule lives: weights I/O, checks, initialisation and messages all use it."""
    return f"{node}.{tensor}" if tensor else node


class Weights:
    """A kernel's view of its tensors. Records what it reads, so params are measured from real arrays.

    `store`, when given (an inference session's, `Model.session`), keeps what a kernel derives from these
    tensors alone from one call to the next (`derived`); the session owns a private copy of the tensors, so
    nothing can change them under it."""

    def __init__(self, tensors: dict[str, np.ndarray], node: str, store: dict | None = None):
        self._tensors = tensors
        self._node = node
        self._store = store
        self.trainable_read: dict[str, int] = {}
        self.buffers_read: dict[str, int] = {}

    @property
    def keeps_derived(self) -> bool:
        """Whether `derived` keeps what it makes (an inference session) or makes it on every call."""
        return self._store is not None

    def derived(self, key: str, make: Callable[[], Any]) -> Any:
        """`make()`, a function of this node's tensors alone (Winograd's transformed kernels, a batch norm's
        scale and shift), made once per session and kept; made afresh on every call without a session.
        `key` names what is made and everything else it depends on."""
        if self._store is None:
            return make()
        if key not in self._store:
            self._store[key] = make()
        return self._store[key]

    def _get(self, key: str, expected: tuple[int, ...], record: dict[str, int]) -> np.ndarray:
        if key not in self._tensors:
            raise ShapeError(f"missing tensor '{tensor_key(self._node, key)}'")
        array = self._tensors[key]
        if tuple(array.shape) != tuple(expected):
            raise ShapeError(
                f"tensor '{tensor_key(self._node, key)}' has shape {tuple(array.shape)}, "
                f"but the input arrays need {tuple(expected)}"
            )
        record[key] = int(array.size)
        return array

    def param(self, key: str, expected: tuple[int, ...]) -> np.ndarray:
        return self._get(key, expected, self.trainable_read)

    def buffer(self, key: str, expected: tuple[int, ...]) -> np.ndarray:
        return self._get(key, expected, self.buffers_read)


@dataclass(frozen=True)
class Saved:
    """One tensor an op's backward keeps alive until the backward pass reaches it, in PyTorch eager
    autograd (training mode, float32). Parameters and buffers an op saves (conv and linear weights, BN's
    gamma and running statistics) are the module's own tensors and cost nothing extra: they are not listed.

    source "input": the op's input `index` (the storage behind it: a view keeps its whole base alive);
    "output": its own output; "new": a tensor that only backward holds (a mask, int64 indices, BN
    statistics), of `elements` per image (or in total, when per_image is False), `itemsize` bytes each
    (None: the activation dtype).

    Nothing is saved by a node that autograd does not record: one without parameters none of whose
    inputs requires grad (the network input x does not; a tensor computed from parameters does).
    """

    source: Literal["input", "output", "new"]
    index: int = 0
    elements: int = 0
    itemsize: int | None = None
    per_image: bool = True
    what: str = ""  # what PyTorch calls it, for readers (e.g. "indices (int64)")
    # Saved only when that input requires grad (a product saves each factor for the other's gradient).
    only_if_grad_of: int | None = None


@dataclass(frozen=True)
class TrainSaves:
    """What an op does to memory in a training-mode forward (see Saved). `output_aliases_input`: the output
    is its first input's storage (a view, or an op run in place); otherwise a new tensor.
    `extra_buffer_bytes`: buffers PyTorch keeps that buffer_shapes does not list (BN's int64 batch counter)."""

    saved: tuple[Saved, ...] = ()
    output_aliases_input: bool = False
    extra_buffer_bytes: int = 0


# Everything an op must state for itself. Each name must be defined by the op's class or a mixin it
# lists, never inherited from OpBase: a forgotten MACs or params rule is an error at import time
# (ops/__init__.py), not a silent zero. Other layers read these and never test an op's name.
OP_CONTRACT: tuple[str, ...] = (
    # class attributes
    "arity",  # inputs taken: an int, or (min, None) for variadic merges
    "view",  # returns its input's buffer (PyTorch's flatten, dropout at inference, identity)
    "in_place",  # may overwrite its single input when nothing else still needs it (ReLU(inplace=True))
    "size_dependent",  # behaviour depends on the input's spatial size (adaptive pooling, flatten, linear);
    # read it on the node, not the class: linear's depends on its per_pixel field
    "stochastic",  # drops its residual branch at training time (stochastic depth); such an op also has
    # `survival` (probability that the branch runs; None until assigned) and `with_drop_probability(p)`
    "lecture_weights",  # tensors counted as "weights" in the lecture's tables (biases excluded)
    "absorbs_affine",  # its kernel can apply a following per-channel affine y * scale + shift to its output
    # channels for free (conv, linear: `forward_fused`), so inference can skip a batch norm after it
    "absorbs_activation",  # its kernel can apply a following activation (below) in its last pass over the
    # output (conv, linear, add, batch norm: `forward_fused`), so inference can skip the activation after it
    "epilogue_activation",  # an Activation when the op is nothing but that elementwise function (ReLU, ReLU6,
    # SiLU), which a producer may apply in its last pass; None for every other op
    "absorbs_residual",  # its kernel can add another tensor of its output's shape in its last pass, before the
    # activation (conv: a residual block's conv -> batch norm -> add -> ReLU as one kernel, `forward_fused`)
    "sums_inputs",  # the op is the elementwise sum of its inputs (add), which such a kernel may absorb
    # static rules (shapes only)
    "output_shape",
    "param_shapes",
    "buffer_shapes",
    "macs",
    "rf_rule",
    "train_saves",  # what autograd saves for backward in training (PyTorch eager): TrainSaves
    # channel_affine(w, channels) -> (scale, shift) per channel when the op is, at inference, nothing but
    # y = x * scale + shift over the channel axis (batch norm with running statistics); None otherwise
    "channel_affine",
    # kernel and its receptive-field probe
    "forward",
    "probe",
    # the lecture's arithmetic for `archspec explain`: explain(in_shapes, out_shape) -> lines deriving
    # the output shape (or, for merges, the shape rule), params and MACs with the numbers filled in
    "explain",
    # interchange: the op as ONNX nodes (archspec/onnx/export.py)
    "to_onnx",
)


class OpBase(BaseModel):
    """Fields shared by every node; subclasses add `op: Literal[...]`, their parameters, and every
    member of OP_CONTRACT (checked when the registry is built)."""

    # defer_build: an op's validator is built on its first use, not at import, so a command pays only
    # for the ops its spec uses (building all of them was about a quarter of the CLI's start-up).
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)

    name: str
    inputs: list[str] | None = None  # default: the previous node (the graph input for the first)

    arity: ClassVar[int | tuple[int, None]]
    view: ClassVar[bool]
    in_place: ClassVar[bool]
    size_dependent: ClassVar[bool]
    stochastic: ClassVar[bool]
    lecture_weights: ClassVar[tuple[str, ...]]
    absorbs_affine: ClassVar[bool]
    absorbs_activation: ClassVar[bool]
    epilogue_activation: ClassVar[Activation | None]
    absorbs_residual: ClassVar[bool]
    sums_inputs: ClassVar[bool]

    # ---- static rules (shapes only) -------------------------------------------------------
    def output_shape(self, in_shapes: list[Shape]) -> Shape:
        raise NotImplementedError

    def param_shapes(self, in_shapes: list[Shape]) -> dict[str, Shape]:
        """Trainable tensors (counted in params)."""
        raise NotImplementedError

    def buffer_shapes(self, in_shapes: list[Shape]) -> dict[str, Shape]:
        """Non-trainable tensors the op needs at inference (BatchNorm running statistics)."""
        raise NotImplementedError

    def macs(self, in_shapes: list[Shape], out_shape: Shape) -> int:
        """Multiply-accumulates of conv/linear weights per image (torchvision's "GFLOPS" rule)."""
        raise NotImplementedError

    def rf_rule(self, in_shapes: list[Shape]) -> RFRule:
        raise NotImplementedError

    def train_saves(self, in_shapes: list[Shape], out_shape: Shape) -> TrainSaves:
        """Tensors PyTorch's autograd saves for this node's backward in a training-mode forward
        (observed on torch 2.14 with saved_tensors_hooks; benchmarks/torch_crosscheck.py checks it)."""
        raise NotImplementedError

    def window_cells(self, length: int, axis: int) -> tuple[list[int], list[int]] | None:
        """Exact input range [start, end) of each output cell along `axis`, for ops whose windows are
        not one sliding window (adaptive pooling); None for every other op."""
        return None

    # ---- NumPy kernel (real arrays, batch axis first) ---------------------------------------
    def forward(self, xs: list[np.ndarray], w: Weights, mm: MatMul) -> np.ndarray:
        raise NotImplementedError

    def forward_in_place(self, x: np.ndarray) -> np.ndarray:
        """The kernel, overwriting x (only for ops with in_place = True)."""
        raise NotImplementedError

    def forward_fused(
        self,
        xs: list[np.ndarray],
        w: Weights,
        mm: MatMul,
        affine: AffineSource | None,
        activation: Activation | None = None,
        residual: np.ndarray | None = None,
    ) -> np.ndarray | None:
        """The kernel followed by a per-channel affine and then an activation, fused: `affine` (only for ops
        with absorbs_affine = True) gives (scale, shift) for this op's output channels as `affine(channels)`,
        or None when the next op is not an affine after all; then this returns None and the caller runs
        `forward` and the next ops. `activation` (only for ops with absorbs_activation = True): a following
        ReLU's or SiLU's `epilogue_activation`, applied in the kernel's last pass. Either may be None.
        `residual` (only for ops with absorbs_residual = True): a tensor of the output's shape added after
        the affine and before the activation (the other input of a residual block's add).
        Only the inference fast path uses it (`reference.forward.run(..., fuse=True)`); measurement never does."""
        raise NotImplementedError

    def channel_affine(self, w: Weights, channels: int) -> tuple[np.ndarray, np.ndarray] | None:
        """(scale, shift), each of shape (channels,), when this op at inference is y = x * scale + shift
        along the channel axis, read from its tensors through `w`; None for any other op."""
        raise NotImplementedError

    def probe(self) -> tuple[OpBase, int]:
        """The op as the receptive-field probe runs it, and how many channels to feed each input.

        The probe (verify/receptive_field.py) represents every tensor by a 0/1 mask of the pixels a
        band image reaches. It feeds each input of this op its mask repeated over the channel count
        given here, channel j scaled by (1 + j / count) so channels differ (a softmax or a norm over
        channels then still shows a change), runs the returned op's real kernel, and marks an output
        unit reached when any channel differs from the output on all-zero input. Ops that mix channels
        ask for as many channels as they need to show that; the rest take one.
        """
        raise NotImplementedError

    def to_onnx(self, g: OnnxGraph, xs: list[str], in_shapes: list[Shape]) -> None:
        """Emit this node as ONNX nodes through `g` (archspec/onnx/export.py's builder): `xs` are the
        names of the input tensors, the last node emitted produces this node's output. An op with no
        ONNX equivalent for these shapes raises NoOnnxEquivalent (the exporter locates it)."""
        raise NotImplementedError

    def init_tensor(self, tensor: str, shape: Shape, rng: np.random.Generator) -> np.ndarray:
        """Random initial value of one of this op's tensors (float64; the caller casts). He-normal
        weights keep activations O(1) through deep stacks; other tensors are small."""
        if tensor == "weight":
            return rng.normal(0.0, math.sqrt(2.0 / max(1, math.prod(shape[1:]))), shape)
        return rng.normal(0.0, 0.01, shape)


class NoTensors:
    """Mixin for ops without parameters, buffers or MACs (activations, merges, views, pooling). Without
    tensors an op is no learned affine and has no weights to absorb one into."""

    lecture_weights: ClassVar[tuple[str, ...]] = ()
    absorbs_affine: ClassVar[bool] = False

    def channel_affine(self, w, channels):
        return None

    def param_shapes(self, in_shapes):
        return {}

    def buffer_shapes(self, in_shapes):
        return {}

    def macs(self, in_shapes, out_shape):
        return 0


class Pointwise:
    """Mixin: every output unit sees the same position of its inputs; the probe feeds one channel."""

    def rf_rule(self, in_shapes):
        return "pointwise"

    def probe(self):
        return self, 1


class Plain:
    """Mixin for the common case: one input, no view, not in place, size-agnostic, not stochastic."""

    arity: ClassVar[int] = 1
    view: ClassVar[bool] = False
    in_place: ClassVar[bool] = False
    size_dependent: ClassVar[bool] = False
    stochastic: ClassVar[bool] = False
    absorbs_activation: ClassVar[bool] = False
    epilogue_activation: ClassVar[Activation | None] = None
    absorbs_residual: ClassVar[bool] = False
    sums_inputs: ClassVar[bool] = False


def contract_gaps(cls: type) -> list[str]:
    """Members of OP_CONTRACT that `cls` does not declare itself (or through a mixin)."""
    own = [k for k in cls.__mro__ if k not in (OpBase, BaseModel, object)]
    return [m for m in OP_CONTRACT if not any(m in vars(k) for k in own)]


def broadcast_inputs(in_shapes: list[Shape]) -> list[bool]:
    """Which inputs are broadcast over the others' positions: a 1 x 1 map beside a larger one (a
    squeeze-and-excitation gate). Such an input is *context* for the receptive field: every output
    unit receives it, whatever its position."""
    sizes = [s[1:] if len(s) == 3 else None for s in in_shapes]
    larger = any(size is not None and size != (1, 1) for size in sizes)
    return [larger and size == (1, 1) for size in sizes]


def require_spatial(shape: Shape, what: str) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise ShapeError(f"{what} needs a C x H x W input, got a flat input of shape {list(shape)}")
    return shape  # type: ignore[return-value]


def window_output_size(size: int, kernel: int, stride: int, pad: int, ceil_mode: bool) -> int:
    """Output length of a sliding window (PyTorch's rule, including its ceil_mode correction)."""
    span = size + 2 * pad - kernel
    if span < 0:
        raise ShapeError(
            f"kernel {kernel} is larger than the padded input {size + 2 * pad} ({size} + 2 x {pad})",
            "the feature map is too small here: use a larger --input, more padding, a smaller kernel,"
            " or fewer downsampling steps before this node",
        )
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    # ceil_mode must not start a window entirely in the right padding (PyTorch pooling_shape).
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out
