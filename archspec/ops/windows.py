"""Kernel-side sliding windows: whole-plane slice copies of a padded array, no Python loop over pixels.

This is the array half of conv and pooling; their static shape rule lives in each op and is
never called from here, so the two can be checked against each other.

Windows are gathered with one strided slice copy per kernel tap (kh x kw copies, each as large as the
output) into a buffer laid out (N, C, kh, kw, Ho, Wo). That layout is what makes the kernels fast:
conv's im2col matrix (C*kh*kw, Ho*Wo) is a free reshape of it, and a reduction over the window axes
(pooling) runs over long contiguous rows instead of tiny kh x kw inner loops of a strided view.
"""

from __future__ import annotations

from archspec.lazy import numpy as np


def pad_input(
    x: np.ndarray,
    padding: tuple[int, int],
    extra: tuple[int, int] = (0, 0),
    pad_value: float = 0.0,
) -> np.ndarray:
    """x (N, C, H, W) padded by `padding` on both sides plus `extra` cells at the bottom/right (no copy if none)."""
    if not any(padding) and not any(extra):
        return x
    n, c, h, w = x.shape
    (ph, pw), (eh, ew) = padding, extra
    # A filled array with x copied in: the same result as np.pad, without its per-call set-up (20-30 us,
    # as much as the copy itself on a 14 x 14 map; a DenseNet forward pass pads 120 times).
    padded = np.full((n, c, h + 2 * ph + eh, w + 2 * pw + ew), pad_value, dtype=x.dtype)
    padded[:, :, ph : ph + h, pw : pw + w] = x
    return padded


def window_columns(
    padded: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_width: int,
    rows: tuple[int, int],
    buffer: np.ndarray | None = None,
    phases: bool = False,
    padding: tuple[int, int] = (0, 0),
) -> np.ndarray:
    """Windows of output rows [rows[0], rows[1]) of an already padded (N, C, Hp, Wp) array, as a new
    C-contiguous (N, C, kh, kw, rows, out_width) array: element [n, c, i, j, r, q] is
    padded[n, c, (rows[0] + r) * sh + i * dh, q * sw + j * dw].

    With `padding` (ph, pw), `padded` is the input itself, read as if padded by zeros (no padded copy): each
    tap copies the part of its windows that lies in the input and zeroes the border strips around it. A
    padded copy (`pad_input`) is one more pass that writes fresh memory: inside ResNet-50 its stride-2 and
    7 x 7 layers' pads took 0.14-0.26 ms each, as long as their column copies. With `phases` too: each
    stride phase is then gathered from the input with its border zeroed.

    `buffer` (flat, at least as large) is reused when given: a caller filling many row blocks then
    touches fresh memory once instead of page-faulting a new array per block.

    With `phases` (for a strided window) the same array comes by another route: the rows these windows
    read are first split into their stride phases (phase (a, b) holds band[..., a::sh, b::sw], one strided
    copy each), in which every tap's windows are a plain stride-1 slice, so each tap's copy reads whole
    contiguous rows instead of every sh-th row and every sw-th element. Measured 1.9x faster for ResNet's
    7x7 stride-2 stem (3 channels, 112 wide) and 1.2x for 32 channels 56 wide, slower for narrow maps with
    many channels (256 channels 14 wide: the phases' copy costs more than it saves), hence Conv2d's
    PHASE_MIN_WIDTH. With numba (float32), one compiled call copies every tap's windows out of the phases
    (`_jit_kernels.columns_from_phases`) instead of one NumPy slice copy per tap: inside ResNet-50 the
    stem's columns took 0.58-0.60 ms against 0.77."""
    n, c = padded.shape[:2]
    (kh, kw), (sh, sw), (dh, dw) = kernel, stride, dilation
    start, stop = rows
    count = stop - start
    shape = (n, c, kh, kw, count, out_width)
    size = n * c * kh * kw * count * out_width
    cols = np.empty(shape, dtype=padded.dtype) if buffer is None else buffer[:size].reshape(shape)
    (ph, pw) = padding
    if phases:
        from archspec.ops.compiled import kernels  # (it imports numba only when asked)

        # The rows these windows read, [start * sh, start * sh + length) of the (maybe implicitly) padded input,
        # split into its phases: phase (a, b) in split[a, b, :, :, :rows, :columns] (phase (0, 0) is the largest).
        length, width = (count - 1) * sh + (kh - 1) * dh + 1, padded.shape[3] + 2 * pw
        split = np.empty((sh, sw, n, c, -(-length // sh), -(-width // sw)), dtype=padded.dtype)
        needed = {(i * dh % sh, j * dw % sw) for i in range(kh) for j in range(kw)}
        for a, b in needed:
            phase = split[a, b, :, :, : -(-(length - a) // sh), : -(-(width - b) // sw)]
            _gather(padded, phase, start * sh + a - ph, b - pw, sh, sw)
        compiled = kernels() if padded.dtype == np.float32 else None
        if compiled is not None:
            compiled.columns_from_phases(split, cols, dh, dw)
            return cols
        for i in range(kh):
            for j in range(kw):
                (top, a), (left, b) = divmod(i * dh, sh), divmod(j * dw, sw)
                cols[:, :, i, j] = split[a, b, :, :, top : top + count, left : left + out_width]
        return cols
    if any(padding):
        for i in range(kh):
            for j in range(kw):
                _gather(padded, cols[:, :, i, j], start * sh + i * dh - ph, j * dw - pw, sh, sw)
        return cols
    for i in range(kh):
        top = start * sh + i * dh
        for j in range(kw):
            left = j * dw
            rows_ij = slice(top, top + sh * (count - 1) + 1, sh)
            cols[:, :, i, j] = padded[:, :, rows_ij, left : left + sw * (out_width - 1) + 1 : sw]
    return cols


def _inside(first: int, count: int, step: int, size: int) -> tuple[int, int]:
    """[lo, hi): the indices k in [0, count) whose position first + k * step lies in [0, size)."""
    lo = max(0, -(first // step)) if first < 0 else 0  # the smallest k with first + k * step >= 0
    hi = min(count, (size - 1 - first) // step + 1) if size - 1 >= first else 0
    return lo, max(lo, hi)


def _gather(x: np.ndarray, dest: np.ndarray, row: int, col: int, row_step: int, col_step: int) -> np.ndarray:
    """dest[n, c, r, q] = x[n, c, row + r * row_step, col + q * col_step], or 0 where that lies outside x (in
    its zero padding): one strided copy of the part inside, and the border strips around it zeroed."""
    rows, cols = dest.shape[2:]
    r_lo, r_hi = _inside(row, rows, row_step, x.shape[2])
    q_lo, q_hi = _inside(col, cols, col_step, x.shape[3])
    if r_lo == r_hi or q_lo == q_hi:
        dest[...] = 0
        return dest
    dest[:, :, :r_lo] = 0
    dest[:, :, r_hi:] = 0
    dest[:, :, r_lo:r_hi, :q_lo] = 0
    dest[:, :, r_lo:r_hi, q_hi:] = 0
    y, x0 = row + r_lo * row_step, col + q_lo * col_step
    dest[:, :, r_lo:r_hi, q_lo:q_hi] = x[
        :, :, y : y + row_step * (r_hi - r_lo - 1) + 1 : row_step, x0 : x0 + col_step * (q_hi - q_lo - 1) + 1 : col_step
    ]
    return dest


def _padded(x, kernel, stride, padding, dilation, ceil_mode, pad_value) -> tuple[np.ndarray, list[int]]:
    """x padded for sliding windows, and the number of windows along H and W (measured from the arrays)."""
    padded = pad_input(x, padding, _overflow(stride, ceil_mode), pad_value)
    return padded, window_counts(x.shape[2:], kernel, stride, padding, dilation, ceil_mode)


def _overflow(stride, ceil_mode) -> list[int]:
    """Cells past the right/bottom padding: ceil_mode may need one partial window there (stride - 1 cells)."""
    return [stride[a] - 1 if ceil_mode else 0 for a in range(2)]


def window_counts(size, kernel, stride, padding, dilation, ceil_mode) -> list[int]:
    """How many windows fit along H and W of an input of `size` (H, W) with this padding (and ceil_mode's
    overflow cells)."""
    extent = [dilation[a] * (kernel[a] - 1) + 1 for a in range(2)]
    padded_size = [size[a] + 2 * padding[a] + _overflow(stride, ceil_mode)[a] for a in range(2)]
    if padded_size[0] < extent[0] or padded_size[1] < extent[1]:
        raise ValueError(f"window {extent} does not fit in padded input {tuple(padded_size)}")
    out = [(padded_size[a] - extent[a]) // stride[a] + 1 for a in range(2)]
    if ceil_mode:
        # Keep only windows that start inside the input or the left padding (PyTorch's rule); that
        # condition (index * stride < size + padding) holds for a prefix of the windows.
        out = [min(out[a], -(-(size[a] + padding[a]) // stride[a])) for a in range(2)]
    return out


def window_max(
    x: np.ndarray, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], ceil_mode: bool
) -> np.ndarray:
    """Max over each window of x (N, C, H, W), padding -inf: a running maximum of the kh x kw strided
    views of the padded input, one pass per tap over the output and no window buffer. On the fast path,
    one compiled pass over x instead (`compiled.max_pool_into`: the same values, no padded copy)."""
    from archspec.ops.compiled import max_pool_into  # (it imports numba only when asked)

    size = window_counts(x.shape[2:], kernel, stride, padding, (1, 1), ceil_mode)
    if (out := max_pool_into(x, kernel, stride, padding, size)) is not None:
        return out
    padded, (oh, ow) = pad_input(x, padding, _overflow(stride, ceil_mode), -np.inf), size
    (kh, kw), (sh, sw) = kernel, stride
    out = np.empty((*x.shape[:2], oh, ow), dtype=x.dtype)

    for i in range(kh):
        for j in range(kw):
            tap = padded[:, :, i : i + sh * (oh - 1) + 1 : sh, j : j + sw * (ow - 1) + 1 : sw]
            if i == j == 0:
                np.copyto(out, tap)
            else:
                np.maximum(out, tap, out=out)
    return out


def window_view(
    x: np.ndarray,
    kernel: tuple[int, int],
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int] = (1, 1),
    *,
    ceil_mode: bool = False,
    pad_value: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Windows of x (N, C, H, W) -> windows (N, C, Ho, Wo, kh, kw), plus a (Ho, Wo, kh, kw) mask that is
    1 where a window element lies in the input or its declared padding (0 in ceil_mode overflow).

    The windows are a transposed view of a fresh (N, C, kh, kw, Ho, Wo) array (see the module doc),
    so they take kh*kw/(sh*sw) times the input's memory; they never alias x."""
    h, w = x.shape[2:]
    extent = [dilation[a] * (kernel[a] - 1) + 1 for a in range(2)]
    padded, out = _padded(x, kernel, stride, padding, dilation, ceil_mode, pad_value)
    declared = np.zeros(padded.shape[2:], dtype=np.float32)
    declared[: h + 2 * padding[0], : w + 2 * padding[1]] = 1.0
    mask = np.lib.stride_tricks.sliding_window_view(declared, extent)[
        :: stride[0], :: stride[1], :: dilation[0], :: dilation[1]
    ]
    mask = mask[: out[0], : out[1]]
    cols = window_columns(padded, kernel, stride, dilation, out[1], (0, out[0]))
    return cols.transpose(0, 1, 4, 5, 2, 3), mask
