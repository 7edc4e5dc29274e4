"""archspec.ops.blas: out += a @ b in one BLAS call, on the OpenBLAS NumPy loaded; and MatMul.accumulate,
which uses it where BLAS can read the operands in place and NumPy otherwise."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given, settings
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


needs_batched_blas = pytest.mark.skipif(
    not blas.takes_batched(*(np.ones(shape, np.float32) for shape in [(1, 101, 101)] * 3)),
    reason="no OpenBLAS batched gemm (0.3.30 and later) found in this process",
)


@needs_batched_blas
@settings(max_examples=12, deadline=None)
@given(
    count=st.integers(1, 5),
    m=st.integers(90, 130),
    k=st.integers(90, 130),
    n=st.integers(90, 130),
    spare=st.integers(0, 7),
    gap=st.integers(0, 9),
)
def test_batched_gemm_is_each_product(count, m, k, n, spare, gap):
    """blas.gemm_batched on products larger than BATCH_SMALL_MACS, b's and out's rows `n + spare` apart and
    the products `gap` elements more than their size apart (as Winograd's tile positions lie in a buffer): each
    out[i] is a[i] @ b[i], and nothing between the products is written."""
    assume(m * n * k > blas.BATCH_SMALL_MACS)
    rng = np.random.default_rng(count * 1000 + m + k + n)
    a = rng.normal(size=(count, m, k)).astype(np.float32)
    b_rows = n + spare
    b_memory = rng.normal(size=count * (k * b_rows + gap)).astype(np.float32)
    b = np.lib.stride_tricks.as_strided(
        b_memory, (count, k, n), ((k * b_rows + gap) * 4, b_rows * 4, 4), writeable=False
    )
    out_memory = np.full(count * (m * b_rows + gap), 7.0, dtype=np.float32)
    out = np.lib.stride_tricks.as_strided(out_memory, (count, m, n), ((m * b_rows + gap) * 4, b_rows * 4, 4))
    assert blas.takes_batched(a, b, out)
    blas.gemm_batched(a, b, out)
    want = np.matmul(a.astype(np.float64), b.astype(np.float64))
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-3)
    written = np.zeros(out_memory.shape, dtype=bool)
    np.lib.stride_tricks.as_strided(written, out.shape, tuple(s // 4 for s in out.strides))[...] = (
        True  # (1-byte bools)
    )
    assert np.all(out_memory[~written] == 7.0)


@needs_batched_blas
def test_batched_gemm_refuses_small_products_and_other_layouts():
    """Products of at most 10^6 multiply-adds never reach OpenBLAS's batched call (its small-matrix path
    crashes in DYNAMIC_ARCH builds up to 0.3.31); nor do operands it cannot read in place."""
    a, b, out = (
        np.ones((2, 100, 100), np.float32),
        np.ones((2, 100, 100), np.float32),
        np.zeros((2, 100, 100), np.float32),
    )
    assert not blas.takes_batched(a, b, out)  # 100 * 100 * 100 multiply-adds each: the small-matrix path
    with pytest.raises(ValueError, match="BLAS cannot take the batch"):
        blas.gemm_batched(a, b, out)
    a, b, out = (
        np.ones((2, 101, 101), np.float32),
        np.ones((2, 101, 101), np.float32),
        np.zeros((2, 101, 101), np.float32),
    )
    assert blas.takes_batched(a, b, out)
    assert not blas.takes_batched(a, b.transpose(0, 2, 1), out)  # column-major b
    assert not blas.takes_batched(a, b[::-1], out)  # products in reverse order (a negative stride)
    assert not blas.takes_batched(a.astype(np.float64), b, out)  # mixed dtypes
    assert not blas.takes_batched(a[:, :, :100], b, out)  # inner sizes differ
    np.testing.assert_array_equal(out, 0)


@pytest.mark.parametrize("with_blas", [True, False])
def test_matmul_batched_is_each_product_and_counted(monkeypatch, with_blas):
    """MatMul.batched: out[i] = a[i] @ b[i], one MAC per product formed, with BLAS's batched call or NumPy's
    matmul (`takes_batched` says no)."""
    if with_blas and not blas.takes_batched(*(np.ones(shape, np.float32) for shape in [(1, 101, 101)] * 3)):
        pytest.skip("no OpenBLAS batched gemm found in this process")
    if not with_blas:
        monkeypatch.setattr(blas, "takes_batched", lambda a, b, out: False)
    rng = np.random.default_rng(8)
    a = rng.normal(size=(3, 120, 110)).astype(np.float32)
    b = rng.normal(size=(3, 110, 100)).astype(np.float32)
    out = np.empty((3, 120, 100), np.float32)
    mm = MatMul()
    mm.batched(a, b, out)
    np.testing.assert_allclose(out, np.matmul(a, b), rtol=1e-5, atol=1e-4)
    assert mm.macs == 3 * 120 * 110 * 100  # products x M x K x N, hand-counted
    with pytest.raises(ShapeError, match="shapes differ"):
        mm.batched(a, b[:, :100], out)
