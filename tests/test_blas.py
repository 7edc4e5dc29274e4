"""archspec.ops.blas: out += a @ b in one BLAS call, on the OpenBLAS NumPy loaded; and MatMul.accumulate,
which uses it where BLAS can read the operands in place and NumPy otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from archspec.ops import MatMul, ShapeError, blas

needs_blas = pytest.mark.skipif(not blas.available(np.float32), reason="no OpenBLAS gemm found in this process")


@needs_blas
@settings(max_examples=40, deadline=None)
@given(
    m=st.integers(1, 9),
    k=st.integers(1, 9),
    n=st.integers(1, 12),
    spare=st.integers(0, 5),
    offset=st.integers(0, 5),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_gemm_accumulate_adds_the_product_in_place(m, k, n, spare, offset, dtype):
    """b is a window of a wider array (its rows `n + spare + offset` apart, as a conv tap's shifted run of
    a flattened map is), out already holds a sum: the result is out + a @ b, in out's own memory."""
    rng = np.random.default_rng(m * 100 + k * 10 + n)
    a = rng.normal(size=(m, k)).astype(dtype)
    wide = rng.normal(size=(k, n + spare + offset)).astype(dtype)
    b = wide[:, offset : offset + n]
    out = rng.normal(size=(m, n)).astype(dtype)
    want = out.astype(np.float64) + a.astype(np.float64) @ b.astype(np.float64)
    memory = out.ctypes.data
    assert blas.takes(a, b, out)
    blas.gemm_accumulate(a, b, out)
    assert out.ctypes.data == memory
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)


@needs_blas
def test_blas_refuses_what_it_cannot_read_in_place():
    a = np.ones((2, 3), np.float32)
    b = np.ones((3, 4), np.float32)
    out = np.zeros((2, 4), np.float32)
    assert blas.takes(a, b, out)
    assert not blas.takes(a, np.ones((4, 3), np.float32).T, out)  # column-major b
    assert not blas.takes(a, np.ones((3, 8), np.float32)[:, ::2], out)  # columns 2 apart
    assert not blas.takes(a.astype(np.float64), b, out)  # mixed dtypes
    assert not blas.takes(a.astype(np.int64), b.astype(np.int64), out.astype(np.int64))  # no integer gemm
    assert not blas.takes(a, b, np.zeros((2, 5), np.float32))  # wrong shape
    with pytest.raises(ValueError, match="BLAS cannot take"):
        blas.gemm_accumulate(a, np.ones((4, 3), np.float32).T, out)
    np.testing.assert_array_equal(out, 0)  # nothing was added


@pytest.mark.parametrize("with_blas", [True, False])
def test_matmul_accumulate_is_batched_and_counted(monkeypatch, with_blas):
    """Batched like matmul (a's batch dims broadcast), one MAC per product formed, the same sum with
    BLAS or NumPy (no BLAS found: `takes` says no)."""
    if with_blas and not blas.available(np.float32):
        pytest.skip("no OpenBLAS gemm found in this process")
    if not with_blas:
        monkeypatch.setattr(blas, "takes", lambda a, b, out: False)
    rng = np.random.default_rng(7)
    a = rng.normal(size=(3, 4, 5)).astype(np.float32)  # (G, M, K), shared by the batch of 2
    flat = rng.normal(size=(2, 3, 5, 20)).astype(np.float32)
    b = flat[..., 2:14]  # (N, G, K, 12), rows 20 apart
    out = rng.normal(size=(2, 3, 4, 12)).astype(np.float32)
    want = out + np.matmul(a, b)
    mm = MatMul()
    mm.accumulate(a, b, out)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert mm.macs == 2 * 3 * 4 * 5 * 12  # batch x M x K x N, hand-counted
    with pytest.raises(ShapeError, match="inner sizes differ"):
        mm.accumulate(a, b[..., :4, :], out)
    with pytest.raises(ShapeError, match="shapes differ"):
        mm.accumulate(a, b, out[..., :11])
