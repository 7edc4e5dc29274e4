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
    clamp: tuple[float, float] | None = None,
    channels_last: bool = False,
    source: np.ndarray | None = None,
) -> None:
    """out = min(max(source * scale + bias, lo), hi) per channel, `source` being out itself (in place) unless
    given (then of out's shape): out is (N, C, L), or (N, L, C) with `channels_last`; scale and bias are (C,)
    or None; clamp is (lo, hi) or None. On the fast path with the compiled kernels, one pass; otherwise one
    NumPy pass per step, in the same order (the results are equal bit for bit)."""
    if source is None:
        if scale is None and bias is None and clamp is None:
            return
        source = out
    contiguous = out.flags.c_contiguous and source.flags.c_contiguous and source.dtype == out.dtype == np.float32
    compiled = kernels() if fast_path() and contiguous else None
    if compiled is not None:
        channels = out.shape[2 if channels_last else 1]
        unused = np.ones(channels, dtype=np.float32)  # stands for a missing scale or bias (never read)
        lo, hi = (-np.inf, np.inf) if clamp is None else clamp
        arrays = (out,) if source is out else (source, out)
        (compiled.affine_clamp if source is out else compiled.affine_clamp_from)(
            *arrays,
            unused if scale is None else np.ascontiguousarray(scale, dtype=np.float32),
            unused if bias is None else np.ascontiguousarray(bias, dtype=np.float32),
            scale is not None,
            bias is not None,
            np.float32(lo),
            np.float32(hi),
            channels_last,
        )
        return
    shape = (-1,) if channels_last else (-1, 1)
    if source is not out:
        out[...] = source
    if scale is not None:
        out *= scale.reshape(shape)
    if bias is not None:
        out += bias.reshape(shape)
    if clamp is not None:
        clamp_in_place(out, clamp)


def clamp_in_place(out: np.ndarray, clamp: tuple[float, float]) -> None:
    """min(max(out, lo), hi) in place, as NumPy computes ReLU (np.maximum) and ReLU6 (np.clip)."""
    lo, hi = clamp
    if hi == np.inf:
        np.maximum(out, lo, out=out)
    else:
        np.clip(out, lo, hi, out=out)


def add_clamp(a: np.ndarray, b: np.ndarray, clamp: tuple[float, float]) -> np.ndarray | None:
    """min(max(a + b, lo), hi) as a new array in one compiled pass, on the fast path when a and b are
    float32 arrays of one shape laid out alike in one dense block each (channel-first or channels-last);
    None otherwise (the caller adds and clamps with NumPy)."""
    compiled = kernels() if fast_path() else None
    if compiled is None or a.dtype != np.float32 or b.dtype != np.float32 or a.shape != b.shape:
        return None
    out = np.empty_like(a)  # a's memory order, when a is dense
    flats = [_dense_flat(x) for x in (a, b, out)]
    if any(flat is None for flat in flats) or not a.strides == b.strides == out.strides:
        return None
    compiled.add_clamp(*flats, np.float32(clamp[0]), np.float32(clamp[1]))
    return out


def _dense_flat(x: np.ndarray) -> np.ndarray | None:
    """x's elements in memory order as a 1-D view, or None when they are not one dense block."""
    flat = x.ravel(order="K")
    return flat if np.may_share_memory(flat, x) else None  # (a copy is new memory)
