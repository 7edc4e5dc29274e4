"""Compiled kernels for the inference fast path, when numba is there.

Some work has no fast NumPy form: a depthwise convolution is a sum of kh x kw shifted views, which
NumPy can only do as two whole-array passes per tap (a multiply, then an add), each streaming the whole
map through memory. A compiled loop does every tap of one output pixel while its channels are in
registers, 2.5-6x faster on MobileNet's and EfficientNet's layers. numba compiles such loops from Python
source (no compiler or build step at install time); the machine code is cached on disk after the first
compilation (numba's `cache=True`), so later processes load it instead of compiling.

Only `Model.forward`'s fast path (`archspec.ops.fastpath`) uses these kernels. Measurement (`verify`)
never does: it keeps the NumPy kernels whose products it counts. Every caller keeps a NumPy path for
when `kernels()` is None: numba is missing, or `ARCHSPEC_JIT=0` is set (to compare the two, or to rule
the compiled code out when hunting a discrepancy).

The kernels run on one thread. numba's parallel loops were measured on this project's shared 2-core
machine: their threads and OpenBLAS's compete for the cores, and single depthwise layers took from 0.4x
to 90x the one-thread time, so the gain is not worth the variance.
"""

from __future__ import annotations

import os
from functools import cache
from types import ModuleType

from archspec.lazy import numpy as np
from archspec.ops.base import Activation
from archspec.ops.fastpath import fast_path


@cache
def kernels() -> ModuleType | None:
    """archspec.ops._jit_kernels (importing numba, about 0.3 s, on the first call), or None when numba is
    not installed or the environment sets ARCHSPEC_JIT=0."""
    if os.environ.get("ARCHSPEC_JIT", "1").strip() == "0":
        return None
    try:
        from archspec.ops import _jit_kernels
    except ImportError:  # numba (or its llvmlite) is not installed, or not for this NumPy
        return None
    except (RuntimeError, OSError):  # numba found no writable place for its cache (`cache=True`)
        return None
    return _jit_kernels


def epilogue(
    out: np.ndarray,
    scale: np.ndarray | None,
    bias: np.ndarray | None,
    activation: Activation | None = None,
    channels_last: bool = False,
    source: np.ndarray | None = None,
    residual: np.ndarray | None = None,
) -> None:
    """out = activation(source * scale + bias + residual) per channel, `source` being out itself (in place)
    unless given (then of out's shape): out is (N, C, L), or (N, L, C) with `channels_last`; scale and bias
    are (C,) or None; so is the activation (a clamp, or SiLU); the residual (a residual block's other
    input, laid out as out, or None) is added after the bias. On the fast path with the compiled kernels, one pass;
    otherwise one NumPy pass per step, in the same order. The results are equal bit for bit, but for SiLU,
    whose compiled and NumPy forms are within 2.5 and 3.5 units in the last place of the exact value."""
    if source is None:
        if scale is None and bias is None and activation is None and residual is None:
            return
        source = out
    contiguous = out.flags.c_contiguous and source.flags.c_contiguous and source.dtype == out.dtype == np.float32
    if residual is not None:
        contiguous = contiguous and residual.flags.c_contiguous and residual.dtype == np.float32
    compiled = kernels() if fast_path() and contiguous else None
    if compiled is not None:
        channels = out.shape[2 if channels_last else 1]
        unused = np.ones(channels, dtype=np.float32)  # stands for a missing scale or bias (never read)
        arrays = (out,) if source is out else (source, out)
        vectors = (
            unused if scale is None else np.ascontiguousarray(scale, dtype=np.float32),
            unused if bias is None else np.ascontiguousarray(bias, dtype=np.float32),
            _no_residual() if residual is None else residual,
            scale is not None,
            bias is not None,
            residual is not None,
        )
        if activation is not None and activation.silu:
            kernel = compiled.affine_silu if source is out else compiled.affine_silu_from
            kernel(*arrays, *vectors, channels_last)
        else:
            kernel = compiled.affine_clamp if source is out else compiled.affine_clamp_from
            kernel(*arrays, *vectors, *kernel_activation(activation)[:2], channels_last)
        return
    shape = (-1,) if channels_last else (-1, 1)
    if source is not out:
        out[...] = source
    if scale is not None:
        out *= scale.reshape(shape)
    if bias is not None:
        out += bias.reshape(shape)
    if residual is not None:
        out += residual
    if activation is not None:
        activate_in_place(out, activation)


@cache
def _no_residual() -> np.ndarray:
    """What the epilogue kernels get for a residual when there is none: typed like one, never read, and
    overlapping no other argument (an argument that aliases another makes LLVM's loops scalar)."""
    return np.zeros((1, 1, 1), dtype=np.float32)


def kernel_activation(activation: Activation | None) -> tuple[np.float32, np.float32, bool]:
    """(lo, hi, silu): an activation as the compiled kernels take it (no activation: an unbounded clamp)."""
    if activation is None:
        return np.float32(-np.inf), np.float32(np.inf), False
    return np.float32(activation.lo), np.float32(activation.hi), activation.silu


def activate_in_place(out: np.ndarray, activation: Activation) -> None:
    """The activation applied to out in place, with NumPy: a clamp as NumPy computes ReLU (np.maximum) and
    ReLU6 (np.clip), or SiLU's four passes."""
    if activation.silu:
        from archspec.ops.activation import silu_in_place  # (that module imports this one)

        silu_in_place(out)
    elif activation.hi == np.inf:
        np.maximum(out, activation.lo, out=out)
    else:
        np.clip(out, activation.lo, activation.hi, out=out)


def add_activate(a: np.ndarray, b: np.ndarray, activation: Activation | None) -> np.ndarray | None:
    """activation(a + b) (a + b with no activation) as a new array in one compiled pass, on the fast path when a and b are float32 arrays
    of one shape laid out alike in one dense block each (channel-first or channels-last); None otherwise (the
    caller adds and activates with NumPy)."""
    compiled = kernels() if fast_path() else None
    if compiled is None or a.dtype != np.float32 or b.dtype != np.float32 or a.shape != b.shape:
        return None
    out = np.empty_like(a)  # a's memory order, when a is dense
    flats = [_dense_flat(x) for x in (a, b, out)]
    if any(flat is None for flat in flats) or not a.strides == b.strides == out.strides:
        return None
    compiled.add_activate(*flats, *kernel_activation(activation))
    return out


def _dense_flat(x: np.ndarray) -> np.ndarray | None:
    """x's elements in memory order as a 1-D view, or None when they are not one dense block."""
    flat = x.ravel(order="K")
    return flat if np.may_share_memory(flat, x) else None  # (a copy is new memory)


def silu_compiled(x: np.ndarray, in_place: bool = False) -> np.ndarray | None:
    """x / (1 + exp(-x)) in one compiled pass (`_jit_kernels._silu`), into x itself with `in_place`, on the fast
    path for a float32 x in one dense block; None otherwise (the caller uses NumPy's four passes). Not equal
    bit for bit to NumPy's: within 2.5 units in the last place of
    the exact value (NumPy's: 3.5)."""
    compiled = kernels() if fast_path() and x.dtype == np.float32 else None
    flat = None if compiled is None else _dense_flat(x)
    if flat is None:
        return None
    if in_place:
        compiled.silu_in_place(flat)
        return x
    out = np.empty_like(x)  # x's memory order (x is dense)
    if out.strides != x.strides:
        return None
    compiled.silu_from(flat, _dense_flat(out))
    return out


def max_pool_into(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], size: list[int]
) -> np.ndarray | None:
    """windows.window_max in one compiled pass (`_jit_kernels.max_pool`) into an output of `size` windows
    (windows.window_counts), on the fast path for float32 maps (measured 2.3x faster on ResNet-50's 3x3
    stride-2 pooling, 1.7x on VGG16's first 2x2); None otherwise."""
    compiled = kernels() if fast_path() and x.dtype == np.float32 else None
    if compiled is None:
        return None
    out = np.empty((*x.shape[:2], *size), dtype=np.float32)
    compiled.max_pool(np.ascontiguousarray(x), out, *kernel, *stride, *padding)
    return out
