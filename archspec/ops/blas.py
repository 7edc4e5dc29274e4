"""out += a @ b as one BLAS call (gemm with beta = 1) on the OpenBLAS that NumPy already loaded.

NumPy's matmul cannot accumulate: `out += a @ b` makes the product in a temporary and adds it in a
second pass over `out`. A convolution summed tap by tap (conv.Conv2d._tap_sum) does that once per kernel
tap; on a 224 x 224 map those passes cost as much as the products. BLAS's gemm adds into C itself, and
it reads `b` in place with any row stride, which is what the shifted windows of a flattened padded map
are. NumPy does not expose gemm, so this binds it with ctypes, found through threadpoolctl (already
archspec's dependency for BLAS threads). Where it is not found, or fails its self-test, `takes` says
no and the caller uses NumPy.

It also binds OpenBLAS's strided batched gemm (`gemm_batched`, OpenBLAS 0.3.30 and later) for a stack of
products, such as Winograd's 16 or 36 tile positions: NumPy's matmul calls gemm once per product, each
product split over the threads on its own (their meeting costs more than a small product saves) or, at
most 10^6 multiply-adds, run on one thread (OpenBLAS's small-matrix kernels); the batched call gives each
thread whole products and meets once.
"""

from __future__ import annotations

import ctypes
from functools import cache

from archspec.lazy import numpy as np

_ROW_MAJOR, _NO_TRANS = 101, 111
# OpenBLAS's CBLAS gemm under the names its builds export, with the integer width each takes: NumPy's
# wheels ship scipy-openblas with 64-bit integers ("64_" suffix); a system OpenBLAS has plain names.
_NAMES = {
    "float32": (
        ("scipy_cblas_sgemm64_", ctypes.c_int64),
        ("cblas_sgemm64_", ctypes.c_int64),
        ("cblas_sgemm", ctypes.c_int),
    ),
    "float64": (
        ("scipy_cblas_dgemm64_", ctypes.c_int64),
        ("cblas_dgemm64_", ctypes.c_int64),
        ("cblas_dgemm", ctypes.c_int),
    ),
}
_SCALAR = {"float32": ctypes.c_float, "float64": ctypes.c_double}
# The strided batched gemm (OpenBLAS's interface/gemm_batch_strided.c). Its symbol keeps the plain name in
# NumPy's scipy-openblas too, where its integers are 64-bit. Passed as 64-bit integers they also reach a
# build with 32-bit ones intact: x86-64 and AArch64 pass either in a 64-bit register or stack slot, low half
# first. The self-test checks the binding either way.
_BATCH_NAMES = {
    "float32": (("cblas_sgemm_batch_strided", ctypes.c_int64),),
    "float64": (("cblas_dgemm_batch_strided", ctypes.c_int64),),
}
# OpenBLAS sends a batch whose products have at most this many multiply-adds (m * n * k) to its small-matrix
# kernels, and those crash in its DYNAMIC_ARCH builds (NumPy's wheels are one) up to 0.3.31 at least: the
# batch code calls an entry of the kernel table that is an offset, not an address (OpenMathLib/OpenBLAS pull
# request 5980, merged August 2026). So no batched call is ever made for products this small.
BATCH_SMALL_MACS = 100 * 100 * 100


def _openblas_libraries():
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return []
    return [lib.filepath for lib in ThreadpoolController().select(internal_api="openblas").lib_controllers]


def _find(candidates, signature, self_test):
    """The first of `candidates` ((symbol, integer type) pairs) that an OpenBLAS NumPy loaded exports and that
    passes `self_test` once its argument types are `signature(integer type)`; None when none does."""
    for path in _openblas_libraries():
        try:
            library = ctypes.CDLL(path)  # already loaded by NumPy: the same handle
        except OSError:
            continue
        for name, integer in candidates:
            function = getattr(library, name, None)
            if function is None:
                continue
            function.argtypes = signature(integer)
            function.restype = None
            if self_test(function):
                return function
    return None


@cache
def _gemm(dtype: str):
    """CBLAS gemm for this dtype name, or None (looked up once)."""
    scalar = _SCALAR[dtype]

    def signature(integer):  # (order, trans a, trans b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc)
        matrix = [ctypes.c_void_p, integer]
        return [ctypes.c_int] * 3 + [integer] * 3 + [scalar, *matrix, *matrix, scalar, *matrix]

    return _find(_NAMES[dtype], signature, lambda function: _self_test(function, dtype))


def _self_test(function, dtype: str) -> bool:
    """A strided product with beta = 1 against NumPy's: a wrong integer width or calling convention
    gives a wrong sum, not a crash, for arguments this small."""
    a = np.arange(6, dtype=dtype).reshape(2, 3) - 2
    wide = np.arange(20, dtype=dtype).reshape(4, 5) / 4
    b = wide[:3, 1:3]  # rows 5 apart
    out = np.ones((2, 2), dtype=dtype)
    want = out + a @ b
    try:
        _call(function, a, b, out)
    except (ctypes.ArgumentError, TypeError):
        return False
    return bool(np.array_equal(out, want))


def _leading(x) -> int:
    """A row-major matrix's leading dimension: its row stride in elements (a single row's stride is
    arbitrary, even 0 after a broadcast; BLAS still wants at least the row's length)."""
    return x.strides[0] // x.itemsize if x.shape[0] > 1 else max(1, x.shape[1])


def _call(function, a, b, out) -> None:
    m, k = a.shape
    n = b.shape[1]
    function(
        _ROW_MAJOR,
        _NO_TRANS,
        _NO_TRANS,
        m,
        n,
        k,
        1.0,
        a.ctypes.data,
        _leading(a),
        b.ctypes.data,
        _leading(b),
        1.0,
        out.ctypes.data,
        _leading(out),
    )


def _gemm_layout(x, rows: int, cols: int) -> bool:
    """A 2-D matrix BLAS reads in place row-major: unit column stride, row stride a whole number of
    elements no smaller than the row (or a single row)."""
    s0, s1 = x.strides
    size = x.itemsize
    return x.shape == (rows, cols) and s1 == size and s0 % size == 0 and (rows == 1 or s0 >= cols * size)


def available(dtype) -> bool:
    """Whether BLAS's gemm was found for this dtype (and passed its self-test)."""
    name = np.dtype(dtype).name
    return name in _NAMES and _gemm(name) is not None


def takes(a, b, out) -> bool:
    """Whether BLAS can run out += a @ b in place: 2-D a (M, K), b (K, N), out (M, N) of one float
    dtype that BLAS was found for, each read row-major in place."""
    dtype = out.dtype
    if a.dtype != dtype or b.dtype != dtype or a.ndim != 2 or b.ndim != 2 or out.ndim != 2:
        return False
    if not available(dtype):
        return False
    m, k = a.shape
    n = b.shape[1]
    return min(m, n, k) > 0 and _gemm_layout(a, m, k) and _gemm_layout(b, k, n) and _gemm_layout(out, m, n)


def gemm_accumulate(a, b, out) -> None:
    """out += a @ b in one BLAS call; only for operands `takes` accepts."""
    if not takes(a, b, out):
        raise ValueError(f"BLAS cannot take {a.shape} @ {b.shape} into {out.shape} in place")
    _call(_gemm(out.dtype.name), a, b, out)


@cache
def _gemm_batched(dtype: str):
    """OpenBLAS's strided batched gemm for this dtype name, or None (an OpenBLAS before 0.3.30, or another BLAS;
    looked up once)."""
    scalar = _SCALAR[dtype]

    def signature(integer):  # (... as gemm, each matrix followed by its stride between products, then count)
        matrix = [ctypes.c_void_p, integer, integer]
        return [ctypes.c_int] * 3 + [integer] * 3 + [scalar, *matrix, *matrix, scalar, *matrix, integer]

    return _find(_BATCH_NAMES[dtype], signature, lambda function: _self_test_batched(function, dtype))


def _self_test_batched(function, dtype: str) -> bool:
    """Two products of 101 x 101 x 101 (just past BATCH_SMALL_MACS) with small integers (exact sums), a's
    rows wider than its columns, against NumPy's."""
    size = 101
    rng = np.random.default_rng(0)
    a = rng.integers(-3, 4, (2, size, size + 3)).astype(dtype)[:, :, :size]
    b = rng.integers(-3, 4, (2, size, size)).astype(dtype)
    out = np.zeros((2, size, size), dtype=dtype)
    try:
        _call_batched(function, a, b, out)
    except (ctypes.ArgumentError, TypeError):
        return False
    return bool(np.array_equal(out, np.matmul(a, b)))


def _call_batched(function, a, b, out) -> None:
    count, m, k = a.shape
    n = b.shape[2]
    function(
        _ROW_MAJOR,
        _NO_TRANS,
        _NO_TRANS,
        m,
        n,
        k,
        1.0,
        a.ctypes.data,
        _leading(a[0]),
        a.strides[0] // a.itemsize,
        b.ctypes.data,
        _leading(b[0]),
        b.strides[0] // b.itemsize,
        0.0,
        out.ctypes.data,
        _leading(out[0]),
        out.strides[0] // out.itemsize,
        count,
    )


def takes_batched(a, b, out) -> bool:
    """Whether BLAS's batched gemm can run out[i] = a[i] @ b[i] for every i in one call: 3-D a (P, M, K),
    b (P, K, N) and out (P, M, N) of one float dtype it was found for, each product read row-major in place,
    the products a whole number of elements apart, and each larger than BATCH_SMALL_MACS."""
    dtype = out.dtype
    if a.dtype != dtype or b.dtype != dtype or a.ndim != 3 or b.ndim != 3 or out.ndim != 3:
        return False
    count, m, k = a.shape
    n = b.shape[2]
    if count == 0 or b.shape != (count, k, n) or out.shape != (count, m, n) or m * n * k <= BATCH_SMALL_MACS:
        return False
    if dtype.name not in _BATCH_NAMES or _gemm_batched(dtype.name) is None:
        return False
    return all(
        x.strides[0] >= 0 and x.strides[0] % x.itemsize == 0 and _gemm_layout(x[0], *shape)
        for x, shape in ((a, (m, k)), (b, (k, n)), (out, (m, n)))
    )


def gemm_batched(a, b, out) -> None:
    """out[i] = a[i] @ b[i] for every i, in one BLAS call; only for operands `takes_batched` accepts."""
    if not takes_batched(a, b, out):
        raise ValueError(f"BLAS cannot take the batch {a.shape} @ {b.shape} into {out.shape}")
    _call_batched(_gemm_batched(out.dtype.name), a, b, out)
