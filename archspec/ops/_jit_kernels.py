"""numba kernels behind archspec.ops.compiled (use that module, not this one: it decides whether these
are used). Each is a plain loop nest over C-contiguous float32 arrays whose innermost loop runs along
contiguous memory, so LLVM turns it into SIMD instructions. Without numba's fastmath nothing is
reordered or contracted: each kernel rounds exactly as the NumPy passes it replaces (the tests compare
them bit for bit)."""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@njit(inline="always")
def _clamp(v, lo, hi):  # pragma: no cover (compiled)
    """min(max(v, lo), hi) as ReLU (np.maximum) and ReLU6 (np.clip) compute it: a NaN stays NaN."""
    if v < lo:
        v = lo
    if v > hi:
        v = hi
    return v


@intrinsic
def _float32_from_bits(typingctx, bits):  # pragma: no cover (compiled)
    """The float32 whose IEEE 754 bits are the int32 `bits` (LLVM's bitcast; numba has no scalar form)."""
    if bits != types.int32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return types.float32(types.int32), codegen


@njit(inline="always", error_model="numpy")
def _silu(v):  # pragma: no cover (compiled)
    """v / (1 + exp(-v)) for a float32 v, within 2.5 units in the last place of the exact value (2.33 measured
    against float64; NumPy's four passes: 3.46), as one vectorizable expression: exp(t) = 2^n * exp(f) with n = round(t / ln 2)
    and |f| <= ln 2 / 2, exp(f) by Cephes' expf polynomial (S. Moshier), 2^n made from its exponent bits.
    NumPy's exp, called from a compiled loop, is one scalar call per element; LLVM will not vectorize a
    table lookup on this CPU (AMD's gathers are slow). Limits as NumPy's formula: exp(-v) overflows to inf
    past 88.72 (v / inf = -0), 1 + exp(-v) is 1 below -86, a NaN stays NaN, silu(-inf) is NaN."""
    t = -v
    overflow = t > np.float32(88.72283)
    if t < np.float32(-86.0):
        t = np.float32(-86.0)
    if t > np.float32(88.72283):
        t = np.float32(88.72283)
    # n = round(t / ln 2), in [-124, 128]: +126.5 keeps the truncated value positive, so truncation rounds.
    n = np.int32(t * np.float32(1.4426950408889634) + np.float32(126.5)) - np.int32(126)
    whole = np.float32(n)
    f = t - whole * np.float32(0.693359375)  # ln 2 in two parts (Cody and Waite): f exact to float32
    f = f - whole * np.float32(-2.12194440e-4)
    p = np.float32(1.9875691500e-4) * f + np.float32(1.3981999507e-3)
    p = p * f + np.float32(8.3334519073e-3)
    p = p * f + np.float32(4.1665795894e-2)
    p = p * f + np.float32(1.6666665459e-1)
    p = p * f + np.float32(5.0000001201e-1)
    p = p * (f * f) + f + np.float32(1.0)
    # 2^n as 2^(n - 1) * 2: n - 1 + 127 stays in the normal exponents [2, 254] for n in [-124, 128].
    e = p * _float32_from_bits(np.int32((n + np.int32(126)) << np.int32(23))) * np.float32(2.0)
    if overflow:
        e = np.float32(np.inf)
    return v / (np.float32(1.0) + e)


@njit(inline="always", error_model="numpy")
def _activate(v, lo, hi, silu):  # pragma: no cover (compiled)
    """An epilogue's activation (archspec.ops.base.Activation): SiLU when `silu`, else min(max(v, lo), hi)."""
    if silu:
        return _silu(v)
    return _clamp(v, lo, hi)


# The kernels that apply SiLU let LLVM contract a * b + c into one fused multiply-add (numba's fastmath flag
# "contract" alone: no reassociation, no NaN or infinity assumptions), measured 5% faster on EfficientNet-B0;
# their SiLU is not NumPy's bit for bit anyway. The others keep NumPy's roundings.
SILU_FASTMATH = {"contract"}


@njit(cache=True, nogil=True, error_model="numpy", fastmath=SILU_FASTMATH)
def silu_from(x, out):  # pragma: no cover (compiled)
    """out = x / (1 + exp(-x)) (`_silu`) over flat float32 arrays of one length that do not overlap."""
    for k in range(out.shape[0]):
        out[k] = _silu(x[k])


@njit(cache=True, nogil=True, error_model="numpy", fastmath=SILU_FASTMATH)
def silu_in_place(x):  # pragma: no cover (compiled)
    """`silu_from` with x as its own output (a kernel of its own, for the reason given at `affine_clamp`)."""
    for k in range(x.shape[0]):
        x[k] = _silu(x[k])


@njit(cache=True, nogil=True, error_model="numpy")
def depthwise_channels_last(x, taps, bias, out, stride, dilation, padding, lo, hi):  # pragma: no cover (compiled)
    """`_depthwise_channels_last` followed by min(max(., lo), hi)."""
    _depthwise_channels_last(x, taps, bias, out, stride, dilation, padding, lo, hi, False)


@njit(cache=True, nogil=True, error_model="numpy", fastmath=SILU_FASTMATH)
def depthwise_channels_last_silu(x, taps, bias, out, stride, dilation, padding):  # pragma: no cover (compiled)
    """`_depthwise_channels_last` followed by SiLU."""
    zero = np.float32(0.0)
    _depthwise_channels_last(x, taps, bias, out, stride, dilation, padding, zero, zero, True)


@njit(inline="always", error_model="numpy")
def _depthwise_channels_last(x, taps, bias, out, stride, dilation, padding, lo, hi, silu):  # pragma: no cover
    """out[b, y, x, c] = activation(bias[c] + sum over taps (i, j) of taps[i, j, c] * x[b, y*sh + i*dh - ph,
    x*sw + j*dw - pw, c]) (`_activate`), with taps outside the input skipped (zero padding without a padded copy).

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
                    acc[k] = _activate(v, lo, hi, silu)


@njit(cache=True, nogil=True, error_model="numpy")
def affine_clamp(
    out, scale, bias, residual, has_scale, has_bias, has_residual, lo, hi, channels_last
):  # pragma: no cover
    """`affine_clamp_from` with out as its own source, in place. (A kernel of its own: with two array
    arguments that are one array, LLVM's run-time overlap check sends every loop to its scalar version,
    measured 6x slower.)"""
    _affine_activate(out, out, scale, bias, residual, has_scale, has_bias, has_residual, lo, hi, False, channels_last)


@njit(cache=True, nogil=True, error_model="numpy")
def affine_clamp_from(
    source, out, scale, bias, residual, has_scale, has_bias, has_residual, lo, hi, channels_last
):  # pragma: no cover (compiled)
    """`_affine_activate` followed by min(max(., lo), hi)."""
    _affine_activate(
        source, out, scale, bias, residual, has_scale, has_bias, has_residual, lo, hi, False, channels_last
    )


@njit(cache=True, nogil=True, error_model="numpy", fastmath=SILU_FASTMATH)
def affine_silu(out, scale, bias, residual, has_scale, has_bias, has_residual, channels_last):  # pragma: no cover
    """`affine_silu_from` in place (see `affine_clamp`)."""
    zero = np.float32(0.0)
    _affine_activate(
        out, out, scale, bias, residual, has_scale, has_bias, has_residual, zero, zero, True, channels_last
    )


@njit(cache=True, nogil=True, error_model="numpy", fastmath=SILU_FASTMATH)
def affine_silu_from(
    source, out, scale, bias, residual, has_scale, has_bias, has_residual, channels_last
):  # pragma: no cover (compiled)
    """`_affine_activate` followed by SiLU."""
    zero = np.float32(0.0)
    _affine_activate(
        source, out, scale, bias, residual, has_scale, has_bias, has_residual, zero, zero, True, channels_last
    )


@njit(inline="always", error_model="numpy")
def _affine_activate(
    source, out, scale, bias, residual, has_scale, has_bias, has_residual, lo, hi, silu, channels_last
):  # pragma: no cover (compiled)
    """out = activation(source * scale[c] + bias[c] + residual) per channel c (the scale, the bias and the
    residual each only when present, added in that order; `_activate`), over (N, C, L) arrays, or (N, L, C)
    when `channels_last`; residual is laid out as out; source and out do not overlap, unless they are one
    array (in place); the residual overlaps neither (and is read only when present: an alias of out, even
    unread, would make LLVM's loops scalar). A NaN stays NaN."""
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
                    if has_residual:
                        v = v + residual[b, p, k]
                    row[k] = _activate(v, lo, hi, silu)
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
                    if has_residual:
                        v = v + residual[b, k, p]
                    row[p] = _activate(v, lo, hi, silu)


@njit(cache=True, nogil=True, error_model="numpy")
def add_activate(a, b, out, lo, hi, silu):  # pragma: no cover (compiled)
    """out = activation(a + b) (`_activate`), element by element over flat arrays of one length."""
    for k in range(out.shape[0]):
        v = a[k] + b[k]
        out[k] = _activate(v, lo, hi, silu)


@njit(cache=True, nogil=True)
def columns_from_phases(phases, cols, dh, dw):  # pragma: no cover (compiled)
    """im2col columns from the stride phases of a strided window's input (`windows.window_columns` with
    `phases`): phases (sh, sw, N, C, R, Q) holds phase (a, b), the input's rows a, a + sh, ... and columns b,
    b + sw, ... (padding included); cols (N, C, kh, kw, rows, Wo) gets, for tap (i, j) and output row r,
    the Wo contiguous values of phase (i dh mod sh, j dw mod sw) from row i dh // sh + r, column j dw // sw on.
    One call instead of one NumPy slice copy per tap: the stem's 49 taps of 3 channels. Each row is sliced
    from its first value on, then read from index 0: `row[left + q]` with a computed `left` kept LLVM from
    vectorizing the copy (numba must allow for a negative index), 4.8x slower (0.83 against 0.17 ms)."""
    sh, sw = phases.shape[0], phases.shape[1]
    n, c, kh, kw, rows, wo = cols.shape
    for b in range(n):
        for k in range(c):
            for i in range(kh):
                a, top = (i * dh) % sh, (i * dh) // sh
                for j in range(kw):
                    p, left = (j * dw) % sw, (j * dw) // sw
                    source = phases[a, p, b, k]
                    target = cols[b, k, i, j]
                    for r in range(rows):
                        row, out = source[top + r][left:], target[r]
                        for q in range(wo):
                            out[q] = row[q]


@njit(cache=True, nogil=True)
def _padded_band(x, b, k, top, band, ph, pw):  # pragma: no cover (compiled)
    """Rows [top, top + len(band)) of channel k of image b of x (N, C, H, W) padded by zeros, ph rows above and
    pw columns left (and as many as the band's width needs right and below), into band (rows, Wp)."""
    h, w = x.shape[2], x.shape[3]
    rows, wp = band.shape[0], band.shape[1]
    zero = x.dtype.type(0)
    for r in range(rows):
        row = band[r]
        y = top + r - ph
        if y < 0 or y >= h:
            for q in range(wp):
                row[q] = zero
        else:
            source = x[b, k, y]
            for q in range(pw):
                row[q] = zero
            for q in range(w):
                row[pw + q] = source[q]
            for q in range(pw + w, wp):
                row[q] = zero


@njit(cache=True, nogil=True)
def winograd_input(x, v, first, stop, ph, pw, tw):  # pragma: no cover (compiled)
    """Winograd F(2x2, 3x3)'s input transform B^T d B of the 4 x 4 tiles (2 apart) in tile rows [first, stop)
    of x (N, C, H, W) padded by zeros (ph rows above, pw columns left, and below and right to whole tiles:
    Hp = 2 * th + 2, Wp = 2 * tw + 2), each channel's rows padded into a small band buffer as they are
    needed (`_padded_band`: no padded copy of the whole input). Position 4i + j of tile (ty, tx) goes to
    v[4i + j, (b * C + c) * tiles + (ty - first) * tw + tx], tiles = (stop - first) * tw: each row of v is
    an (N, C, tiles) block. Down the rows first, then across, with the additions of the NumPy transform
    (Conv2d._winograd) in its order: d0 - d2, d1 + d2, d2 - d1, d1 - d3 each way."""
    n, c = x.shape[0], x.shape[1]
    wp = 2 * tw + 2
    tiles = (stop - first) * tw
    rows = np.empty((4, wp), dtype=x.dtype)
    band = np.empty((2 * (stop - first) + 2, wp), dtype=x.dtype)
    for b in range(n):
        for k in range(c):
            _padded_band(x, b, k, 2 * first, band, ph, pw)
            for ty in range(first, stop):
                y = 2 * (ty - first)
                r0, r1, r2, r3 = band[y], band[y + 1], band[y + 2], band[y + 3]
                for q in range(wp):
                    rows[0, q] = r0[q] - r2[q]
                    rows[1, q] = r1[q] + r2[q]
                    rows[2, q] = r2[q] - r1[q]
                    rows[3, q] = r1[q] - r3[q]
                start = (b * c + k) * tiles + (ty - first) * tw
                for i in range(4):
                    e = rows[i]
                    o0, o1, o2, o3 = v[4 * i], v[4 * i + 1], v[4 * i + 2], v[4 * i + 3]
                    for tx in range(tw):
                        e0, e1, e2, e3 = e[2 * tx], e[2 * tx + 1], e[2 * tx + 2], e[2 * tx + 3]
                        o0[start + tx] = e0 - e2
                        o1[start + tx] = e1 + e2
                        o2[start + tx] = e2 - e1
                        o3[start + tx] = e1 - e3


@njit(cache=True, nogil=True, error_model="numpy")
def winograd_output(m, out, scale, bias, has_scale, has_bias, lo, hi, silu, first, stop):  # pragma: no cover
    """Winograd F(2x2, 3x3)'s output transform A^T m A for tile rows [first, stop): m holds position p of
    tile (ty, tx) of output channel o at m[p, (b * O + o) * tiles + (ty - first) * tw + tx] (the layout of
    `winograd_input`), and the 2 x 2 tiles go to out (N, O, 2 th, 2 tw) rows 2 ty and 2 ty + 1, then
    * scale[o] (when `has_scale`: a batch norm's, kept off the weights), + bias[o] (when `has_bias`) and the
    activation (`_activate`). The additions of the NumPy transform and epilogue (Conv2d._winograd,
    compiled.epilogue) in their order: down first ((m0 + m1) + m2 and (m1 - m2) - m3), then across the
    same way."""
    n, o = out.shape[0], out.shape[1]
    tw = out.shape[3] // 2
    tiles = (stop - first) * tw
    for b in range(n):
        for k in range(o):
            s = scale[k]
            t = bias[k]
            for ty in range(first, stop):
                top, bottom = out[b, k, 2 * ty], out[b, k, 2 * ty + 1]
                start = (b * o + k) * tiles + (ty - first) * tw
                for tx in range(tw):
                    p = start + tx
                    s0 = m[0, p] + m[4, p] + m[8, p]
                    s1 = m[1, p] + m[5, p] + m[9, p]
                    s2 = m[2, p] + m[6, p] + m[10, p]
                    s3 = m[3, p] + m[7, p] + m[11, p]
                    d0 = m[4, p] - m[8, p] - m[12, p]
                    d1 = m[5, p] - m[9, p] - m[13, p]
                    d2 = m[6, p] - m[10, p] - m[14, p]
                    d3 = m[7, p] - m[11, p] - m[15, p]
                    y00 = s0 + s1 + s2
                    y01 = s1 - s2 - s3
                    y10 = d0 + d1 + d2
                    y11 = d1 - d2 - d3
                    if has_scale:
                        y00 *= s
                        y01 *= s
                        y10 *= s
                        y11 *= s
                    if has_bias:
                        y00 += t
                        y01 += t
                        y10 += t
                        y11 += t
                    top[2 * tx] = _activate(y00, lo, hi, silu)
                    top[2 * tx + 1] = _activate(y01, lo, hi, silu)
                    bottom[2 * tx] = _activate(y10, lo, hi, silu)
                    bottom[2 * tx + 1] = _activate(y11, lo, hi, silu)


@njit(cache=True, nogil=True, error_model="numpy")
def batch_norm_affine(var, mean, weight, bias, eps, has_affine, scale, shift):  # pragma: no cover (compiled)
    """scale = weight / sqrt(var + eps), shift = bias - mean * scale per channel (weight 1 and bias 0 without
    `has_affine`), each computed in float64 from the float32 tensors and rounded once: NumPy's
    BatchNorm2d.channel_affine, the same operations in the same order."""
    for k in range(var.shape[0]):
        s = np.sqrt(np.float64(var[k]) + eps)
        s = (np.float64(weight[k]) if has_affine else 1.0) / s
        scale[k] = np.float32(s)
        shift[k] = np.float32((np.float64(bias[k]) if has_affine else 0.0) - np.float64(mean[k]) * s)


@njit(inline="always", error_model="numpy")
def _maximum(m, v):  # pragma: no cover (compiled)
    """np.maximum(m, v): the larger, or NaN when either is NaN (written as selects: LLVM vectorizes them)."""
    larger = v if v > m else m
    return v if v != v else larger


@njit(cache=True, nogil=True, error_model="numpy")
def max_pool(x, out, kh, kw, sh, sw, ph, pw):  # pragma: no cover (compiled)
    """out[b, k, i, j] = the maximum of x[b, k] over rows i * sh - ph + [0, kh) and columns j * sw - pw + [0, kw),
    cells outside x left out (as -inf padding): windows.window_max, the same values (a maximum rounds
    nothing). Each output row takes the column-wise maximum of its window's rows into a padded row buffer
    (contiguous, so it vectorizes), then the maximum across each window of that row."""
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    row = np.full(max(pw + w, (ow - 1) * sw + kw), -np.inf, dtype=np.float32)
    inner = row[pw : pw + w]
    for b in range(n):
        for k in range(c):
            plane, dest = x[b, k], out[b, k]
            for i in range(oh):
                r0, r1 = max(i * sh - ph, 0), min(i * sh - ph + kh, h)
                if r0 >= r1:  # a window of padding only
                    inner[:] = -np.inf
                else:
                    first = plane[r0]
                    for q in range(w):
                        inner[q] = first[q]
                for r in range(r0 + 1, r1):
                    src = plane[r]
                    for q in range(w):
                        inner[q] = _maximum(inner[q], src[q])
                o = dest[i]
                if sw == 2:  # (a constant stride: LLVM vectorizes the strided reads)
                    for j in range(ow):
                        o[j] = row[2 * j]
                    for t in range(1, kw):
                        for j in range(ow):
                            o[j] = _maximum(o[j], row[2 * j + t])
                else:
                    for j in range(ow):
                        o[j] = row[j * sw]
                    for t in range(1, kw):
                        for j in range(ow):
                            o[j] = _maximum(o[j], row[j * sw + t])


@njit(cache=True, nogil=True)
def winograd43_input(x, v, first, stop, ph, pw, tw):  # pragma: no cover (compiled)
    """Winograd F(4x4, 3x3)'s input transform B^T d B of the 6 x 6 tiles (4 apart) in tile rows [first, stop)
    of x padded by zeros as in `winograd_input` (Hp = 4 * th + 2, Wp = 4 * tw + 2; each channel's rows
    padded into a band buffer), in the layout of `winograd_input` with 36 positions: position 6i + j of tile
    (ty, tx) goes to v[6i + j, (b * C + c) * tiles + (ty - first) * tw + tx].
    With Lavin and Gray's B^T
        [4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
        [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1],
    row i of B^T down the rows of each tile row into a row buffer, then the 6 across. One channel's rows i
    go out together: 6 of the 36 rows of v are written at a time, each along a contiguous run. All 36
    at once (tile by tile) was measured 2-3x slower inside a network, where v is not in the cache: the
    writes then miss in 36 streams at once."""
    n, c = x.shape[0], x.shape[1]
    wp = 4 * tw + 2
    tiles = (stop - first) * tw
    row = np.empty(wp, dtype=x.dtype)
    band = np.empty((4 * (stop - first) + 2, wp), dtype=x.dtype)
    two, four, five = np.float32(2.0), np.float32(4.0), np.float32(5.0)
    for b in range(n):
        for k in range(c):
            _padded_band(x, b, k, 4 * first, band, ph, pw)
            base = (b * c + k) * tiles
            for i in range(6):
                o0, o1, o2, o3, o4, o5 = v[6 * i], v[6 * i + 1], v[6 * i + 2], v[6 * i + 3], v[6 * i + 4], v[6 * i + 5]
                for ty in range(first, stop):
                    y = 4 * (ty - first)
                    d0, d1, d2 = band[y], band[y + 1], band[y + 2]
                    d3, d4, d5 = band[y + 3], band[y + 4], band[y + 5]
                    if i == 0:
                        for q in range(wp):
                            row[q] = four * d0[q] - five * d2[q] + d4[q]
                    elif i == 1:
                        for q in range(wp):
                            row[q] = d4[q] + d3[q] - four * (d1[q] + d2[q])
                    elif i == 2:
                        for q in range(wp):
                            row[q] = d4[q] - d3[q] + four * (d1[q] - d2[q])
                    elif i == 3:
                        for q in range(wp):
                            row[q] = d4[q] - d2[q] + two * (d3[q] - d1[q])
                    elif i == 4:
                        for q in range(wp):
                            row[q] = d4[q] - d2[q] - two * (d3[q] - d1[q])
                    else:
                        for q in range(wp):
                            row[q] = four * d1[q] - five * d3[q] + d5[q]
                    start = base + (ty - first) * tw
                    for tx in range(tw):
                        a0, a1, a2 = row[4 * tx], row[4 * tx + 1], row[4 * tx + 2]
                        a3, a4, a5 = row[4 * tx + 3], row[4 * tx + 4], row[4 * tx + 5]
                        p = start + tx
                        o0[p] = four * a0 - five * a2 + a4
                        o1[p] = a4 + a3 - four * (a1 + a2)
                        o2[p] = a4 - a3 + four * (a1 - a2)
                        o3[p] = a4 - a2 + two * (a3 - a1)
                        o4[p] = a4 - a2 - two * (a3 - a1)
                        o5[p] = four * a1 - five * a3 + a5


@njit(cache=True, nogil=True, error_model="numpy")
def winograd43_output(m, out, scale, bias, has_scale, has_bias, lo, hi, silu, first, stop):  # pragma: no cover
    """Winograd F(4x4, 3x3)'s output transform A^T m A for tile rows [first, stop), m laid out as
    `winograd43_input` leaves its input, the 4 x 4 tiles going to out (N, O, 4 th, 4 tw) rows 4 ty to 4 ty + 3,
    then * scale[o] (when `has_scale`), + bias[o] (when `has_bias`) and the activation (`_activate`), as in
    `winograd_output`. A^T (Lavin and Gray) is [1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0],
    [0, 1, -1, 8, -8, 1]: down each of the 6 columns of a tile first, then across each of its 4 rows. The
    scale, bias and activation are written out per value, as in `winograd_output`: an inline helper taking
    them made `winograd_output` 1.6x slower (0.42 against 0.26 ms on 64 x 56 x 56; LLVM vectorized less)."""
    n, o = out.shape[0], out.shape[1]
    tw = out.shape[3] // 4
    tiles = (stop - first) * tw
    two, four, eight = np.float32(2.0), np.float32(4.0), np.float32(8.0)
    down = np.empty((4, 6), dtype=out.dtype)
    for b in range(n):
        for k in range(o):
            s = scale[k]
            t = bias[k]
            plane = out[b, k]
            for ty in range(first, stop):
                start = (b * o + k) * tiles + (ty - first) * tw
                for tx in range(tw):
                    p = start + tx
                    for j in range(6):
                        m1, m2, m3, m4 = m[6 + j, p], m[12 + j, p], m[18 + j, p], m[24 + j, p]
                        sum12, diff12, sum34, diff34 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
                        down[0, j] = m[j, p] + sum12 + sum34
                        down[1, j] = diff12 + two * diff34
                        down[2, j] = sum12 + four * sum34
                        down[3, j] = diff12 + eight * diff34 + m[30 + j, p]
                    for i in range(4):
                        row = plane[4 * ty + i]
                        m1, m2, m3, m4 = down[i, 1], down[i, 2], down[i, 3], down[i, 4]
                        sum12, diff12, sum34, diff34 = m1 + m2, m1 - m2, m3 + m4, m3 - m4
                        y0 = down[i, 0] + sum12 + sum34
                        y1 = diff12 + two * diff34
                        y2 = sum12 + four * sum34
                        y3 = diff12 + eight * diff34 + down[i, 5]
                        if has_scale:
                            y0 *= s
                            y1 *= s
                            y2 *= s
                            y3 *= s
                        if has_bias:
                            y0 += t
                            y1 += t
                            y2 += t
                            y3 += t
                        row[4 * tx] = _activate(y0, lo, hi, silu)
                        row[4 * tx + 1] = _activate(y1, lo, hi, silu)
                        row[4 * tx + 2] = _activate(y2, lo, hi, silu)
                        row[4 * tx + 3] = _activate(y3, lo, hi, silu)
