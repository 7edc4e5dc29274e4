"""Loop-per-output-element versions of the kernels, written straight from the definitions.

For tests only: they are slow on purpose and share no code with the vectorized kernels.
"""

from __future__ import annotations

import math

import numpy as np


def conv2d(x, weight, bias, stride, padding, dilation, groups):
    n, c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    out_h = (h + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    out_w = (w + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    out = np.zeros((n, o, out_h, out_w), dtype=np.float64)
    per_group = o // groups
    for b in range(n):
        for oc in range(o):
            g = oc // per_group
            for i in range(out_h):
                for j in range(out_w):
                    total = 0.0 if bias is None else float(bias[oc])
                    for ic in range(cg):
                        for p in range(kh):
                            for q in range(kw):
                                y = i * stride[0] - padding[0] + p * dilation[0]
                                z = j * stride[1] - padding[1] + q * dilation[1]
                                if 0 <= y < h and 0 <= z < w:
                                    total += x[b, g * cg + ic, y, z] * weight[oc, ic, p, q]
                    out[b, oc, i, j] = total
    return out


def _pool_size(size, k, s, p, ceil_mode):
    span = size + 2 * p - k
    out = (math.ceil(span / s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def pool2d(x, kind, kernel, stride, padding, ceil_mode, count_include_pad=True):
    n, c, h, w = x.shape
    out_h = _pool_size(h, kernel[0], stride[0], padding[0], ceil_mode)
    out_w = _pool_size(w, kernel[1], stride[1], padding[1], ceil_mode)
    out = np.zeros((n, c, out_h, out_w), dtype=np.float64)
    for b in range(n):
        for ch in range(c):
            for i in range(out_h):
                for j in range(out_w):
                    y0, z0 = i * stride[0] - padding[0], j * stride[1] - padding[1]
                    # PyTorch: the window is clipped to input+padding for the divisor.
                    y1 = min(y0 + kernel[0], h + padding[0])
                    z1 = min(z0 + kernel[1], w + padding[1])
                    values = [
                        x[b, ch, y, z] for y in range(max(y0, 0), min(y1, h)) for z in range(max(z0, 0), min(z1, w))
                    ]
                    if kind == "max":
                        out[b, ch, i, j] = max(values)
                    else:
                        divisor = (y1 - y0) * (z1 - z0) if count_include_pad else len(values)
                        out[b, ch, i, j] = sum(values) / divisor
    return out


def adaptive_avg_pool2d(x, output_size):
    n, c, h, w = x.shape
    oh, ow = output_size
    out = np.zeros((n, c, oh, ow), dtype=np.float64)
    for i in range(oh):
        y0, y1 = (i * h) // oh, -((-(i + 1) * h) // oh)
        for j in range(ow):
            z0, z1 = (j * w) // ow, -((-(j + 1) * w) // ow)
            out[:, :, i, j] = x[:, :, y0:y1, z0:z1].mean(axis=(2, 3))
    return out


def lrn(x, size, alpha, beta, k):
    n, c, h, w = x.shape
    out = np.zeros_like(x, dtype=np.float64)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c, ch + (size - 1) // 2 + 1)
        sq = (x[:, lo:hi].astype(np.float64) ** 2).sum(axis=1)
        out[:, ch] = x[:, ch] / (k + alpha / size * sq) ** beta
    return out


# ---- issue 7's ops, each straight from PyTorch's documented formula ---------------------------------


def elementwise(x, fn):
    """fn applied to every element, one Python call each (fn works on Python floats)."""
    out = np.zeros(x.shape, dtype=np.float64)
    for index in np.ndindex(x.shape):
        out[index] = fn(float(x[index]))
    return out


def relu6(v):
    return min(max(0.0, v), 6.0)


def sigmoid(v):
    # 1 / (1 + e^-v), written for both signs so that math.exp never overflows
    return 1.0 / (1.0 + math.exp(-v)) if v >= 0 else math.exp(v) / (1.0 + math.exp(v))


def hardsigmoid(v):
    # PyTorch docs: 0 if v <= -3, 1 if v >= 3, v / 6 + 1 / 2 otherwise
    return 0.0 if v <= -3 else 1.0 if v >= 3 else v / 6 + 0.5


def hardswish(v):
    # PyTorch docs: 0 if v <= -3, v if v >= 3, v (v + 3) / 6 otherwise
    return 0.0 if v <= -3 else v if v >= 3 else v * (v + 3) / 6


def silu(v):
    return v * sigmoid(v)


def gelu(v):
    # v * Phi(v), Phi the standard normal CDF
    return v * 0.5 * (1.0 + math.erf(v / math.sqrt(2.0)))


def gelu_tanh(v):
    return 0.5 * v * (1.0 + math.tanh(math.sqrt(2.0 / math.pi) * (v + 0.044715 * v**3)))


def mul(a, b):
    """a * b, where one of a (N, C, H, W) and b may be (N, C, 1, 1): index the gate at (0, 0)."""
    shape = a.shape if a.size >= b.size else b.shape
    out = np.zeros(shape, dtype=np.float64)
    for index in np.ndindex(shape):
        ia = tuple(0 if a.shape[k] == 1 else i for k, i in enumerate(index))
        ib = tuple(0 if b.shape[k] == 1 else i for k, i in enumerate(index))
        out[index] = float(a[ia]) * float(b[ib])
    return out


def layer_norm_image(x, weight, bias, eps):
    """Normalize each image over all of its C x H x W values: (x - mean) / sqrt(biased var + eps), times
    weight[c, i, j] plus bias[c, i, j] (PyTorch's nn.LayerNorm([C, H, W]))."""
    out = np.zeros(x.shape, dtype=np.float64)
    for n in range(x.shape[0]):
        values = [float(v) for v in x[n].ravel()]
        mean = sum(values) / len(values)
        var = sum((v - mean) ** 2 for v in values) / len(values)
        for k, index in enumerate(np.ndindex(x.shape[1:])):
            y = (values[k] - mean) / math.sqrt(var + eps)
            if weight is not None:
                y = y * float(weight[index]) + float(bias[index])
            out[(n, *index)] = y
    return out


def layer_norm(x, weight, bias, eps):
    """Normalize over axis 1 at every other index: (x - mean) / sqrt(biased var + eps) * w + b."""
    out = np.zeros(x.shape, dtype=np.float64)
    c = x.shape[1]
    rest = (x.shape[0], *x.shape[2:])
    for index in np.ndindex(rest):
        values = [float(x[(index[0], ch, *index[1:])]) for ch in range(c)]
        mean = sum(values) / c
        var = sum((v - mean) ** 2 for v in values) / c
        for ch in range(c):
            y = (values[ch] - mean) / math.sqrt(var + eps)
            if weight is not None:
                y = y * float(weight[ch]) + float(bias[ch])
            out[(index[0], ch, *index[1:])] = y
    return out


def linear_per_pixel(x, weight, bias):
    """y[n, o, i, j] = sum_c x[n, c, i, j] * weight[o, c] + bias[o]."""
    n, c, h, w = x.shape
    o = weight.shape[0]
    out = np.zeros((n, o, h, w), dtype=np.float64)
    for b in range(n):
        for oc in range(o):
            for i in range(h):
                for j in range(w):
                    total = 0.0 if bias is None else float(bias[oc])
                    for ic in range(c):
                        total += float(x[b, ic, i, j]) * float(weight[oc, ic])
                    out[b, oc, i, j] = total
    return out


def channel_shuffle(x, groups):
    """ShuffleNet (Zhang et al. 2018): channels split into `groups` groups of C / groups; output
    channel j * groups + g is channel j of group g."""
    n, c, h, w = x.shape
    per = c // groups
    out = np.zeros(x.shape, dtype=np.float64)
    for g in range(groups):
        for j in range(per):
            out[:, j * groups + g] = x[:, g * per + j]
    return out


def channel_chunk(x, chunks, index):
    """torch.chunk: pieces of ceil(C / chunks) channels; the last may be smaller."""
    size = -(-x.shape[1] // chunks)
    channels = [ch for ch in range(x.shape[1]) if ch // size == index]
    return np.stack([x[:, ch] for ch in channels], axis=1).astype(np.float64)
