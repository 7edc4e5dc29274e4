"""numba kernels behind archspec.ops.compiled (use that module, not this one: it decides whether these
are used). Each is a plain loop nest over C-contiguous float32 arrays whose innermost loop runs along
contiguous memory, so LLVM turns it into SIMD instructions. Without numba's fastmath nothing is
reordered or contracted: each kernel rounds exactly as the NumPy passes it replaces (the tests compare
them bit for bit)."""

from __future__ import annotations

from numba import njit


@njit(inline="always")
def _clamp(v, lo, hi):  # pragma: no cover (compiled)
    """min(max(v, lo), hi) as ReLU (np.maximum) and ReLU6 (np.clip) compute it: a NaN stays NaN."""
    if v < lo:
        v = lo
    if v > hi:
        v = hi
    return v


@njit(cache=True, nogil=True)
def depthwise_channels_last(x, taps, bias, out, stride, dilation, padding, lo, hi):  # pragma: no cover (compiled)
    """out[b, y, x, c] = min(max(bias[c] + sum over taps (i, j) of taps[i, j, c] * x[b, y*sh + i*dh - ph,
    x*sw + j*dw - pw, c], lo), hi), with taps outside the input skipped (zero padding without a padded copy).

    x (N, H, W, C), taps (kh, kw, C), bias (C,), out (N, Ho, Wo, C). The sum runs tap by tap in row-major
    order, then the bias is added: the order of NumPy's kernel (Conv2d._depthwise), whose out-of-range
    taps add exact zeros. A pixel whose window lies inside the input keeps its running sums in registers
    (3 x 3: all nine taps in one expression; 5 wide: one row of taps at a time); a border pixel, or
    another kernel size, accumulates in `out` tap by tap."""
    n, h, w, c = x.shape
    ho, wo = out.shape[1], out.shape[2]
    kh, kw = taps.shape[0], taps.shape[1]
    sh, sw = stride
    dh, dw = dilation
    ph, pw = padding
    for b in range(n):
        for y in range(ho):
            top = y * sh - ph
            rows_inside = top >= 0 and top + (kh - 1) * dh < h
            for col in range(wo):
                left = col * sw - pw
                inside = rows_inside and left >= 0 and left + (kw - 1) * dw < w
                acc = out[b, y, col]
                if inside and kh == 3 and kw == 3:
                    r0, r1, r2 = top, top + dh, top + 2 * dh
                    c0, c1, c2 = left, left + dw, left + 2 * dw
                    for k in range(c):
                        v = x[b, r0, c0, k] * taps[0, 0, k]
                        v += x[b, r0, c1, k] * taps[0, 1, k]
                        v += x[b, r0, c2, k] * taps[0, 2, k]
                        v += x[b, r1, c0, k] * taps[1, 0, k]
                        v += x[b, r1, c1, k] * taps[1, 1, k]
                        v += x[b, r1, c2, k] * taps[1, 2, k]
                        v += x[b, r2, c0, k] * taps[2, 0, k]
                        v += x[b, r2, c1, k] * taps[2, 1, k]
                        v += x[b, r2, c2, k] * taps[2, 2, k]
                        acc[k] = v
                elif inside and kw == 5:
                    c0, c1, c2, c3, c4 = left, left + dw, left + 2 * dw, left + 3 * dw, left + 4 * dw
                    for i in range(kh):
                        row = top + i * dh
                        for k in range(c):
                            v = x[b, row, c0, k] * taps[i, 0, k]
                            if i:
                                v = acc[k] + v
                            v += x[b, row, c1, k] * taps[i, 1, k]
                            v += x[b, row, c2, k] * taps[i, 2, k]
                            v += x[b, row, c3, k] * taps[i, 3, k]
                            v += x[b, row, c4, k] * taps[i, 4, k]
                            acc[k] = v
                else:
                    acc[:] = 0
                    for i in range(kh):
                        row = top + i * dh
                        if row < 0 or row >= h:
                            continue
                        for j in range(kw):
                            at = left + j * dw
                            if at < 0 or at >= w:
                                continue
                            source = x[b, row, at]
                            tap = taps[i, j]
                            for k in range(c):
                                acc[k] += source[k] * tap[k]
                for k in range(c):
                    v = acc[k] + bias[k]
                    acc[k] = _clamp(v, lo, hi)


@njit(cache=True, nogil=True)
def affine_clamp(out, scale, bias, has_scale, has_bias, lo, hi, channels_last):  # pragma: no cover
    """`affine_clamp_from` with out as its own source, in place. (A kernel of its own: with two array
    arguments that are one array, LLVM's run-time overlap check sends every loop to its scalar version,
    measured 6x slower.)"""
    _affine_clamp(out, out, scale, bias, has_scale, has_bias, lo, hi, channels_last)


@njit(cache=True, nogil=True)
def affine_clamp_from(source, out, scale, bias, has_scale, has_bias, lo, hi, channels_last):  # pragma: no cover
    """out = min(max(source * scale[c] + bias[c], lo), hi) per channel c (the scale and the bias each only
    when present), over (N, C, L) arrays, or (N, L, C) when `channels_last`; source and out do not overlap.
    A NaN stays NaN."""
    _affine_clamp(source, out, scale, bias, has_scale, has_bias, lo, hi, channels_last)


@njit(inline="always")
def _affine_clamp(source, out, scale, bias, has_scale, has_bias, lo, hi, channels_last):  # pragma: no cover
    n = out.shape[0]
    if channels_last:
        length, c = out.shape[1], out.shape[2]
    else:
        c, length = out.shape[1], out.shape[2]
    for b in range(n):
        if channels_last:
            for p in range(length):
                row = out[b, p]
                values = source[b, p]
                for k in range(c):
                    v = values[k]
                    if has_scale:
                        v = v * scale[k]
                    if has_bias:
                        v = v + bias[k]
                    row[k] = _clamp(v, lo, hi)
        else:
            for k in range(c):
                row = out[b, k]
                values = source[b, k]
                s = scale[k]
                t = bias[k]
                for p in range(length):
                    v = values[p]
                    if has_scale:
                        v = v * s
                    if has_bias:
                        v = v + t
                    row[p] = _clamp(v, lo, hi)


@njit(cache=True, nogil=True)
def add_clamp(a, b, out, lo, hi):  # pragma: no cover (compiled)
    """out = min(max(a + b, lo), hi), element by element over flat arrays of one length."""
    for k in range(out.shape[0]):
        v = a[k] + b[k]
        out[k] = _clamp(v, lo, hi)
