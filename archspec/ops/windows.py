"""Kernel-side sliding windows: a strided view of a padded array, no Python loop over pixels.

This is the array half of conv and pooling; their static shape rule lives in each op and is
never called from here, so the two can be checked against each other.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


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
    """Windows of x (N, C, H, W) -> view (N, C, Ho, Wo, kh, kw), plus a (Ho, Wo, kh, kw) mask that is
    1 where a window element lies in the input or its declared padding (0 in ceil_mode overflow)."""
    n, c, h, w = x.shape
    extent = [dilation[a] * (kernel[a] - 1) + 1 for a in range(2)]
    # ceil_mode may need one partial window past the right padding: add stride-1 overflow cells.
    extra = [stride[a] - 1 if ceil_mode else 0 for a in range(2)]
    padded = np.pad(
        x,
        ((0, 0), (0, 0), (padding[0], padding[0] + extra[0]), (padding[1], padding[1] + extra[1])),
        constant_values=pad_value,
    )
    declared = np.zeros(padded.shape[2:], dtype=np.float32)
    declared[: h + 2 * padding[0], : w + 2 * padding[1]] = 1.0
    if padded.shape[2] < extent[0] or padded.shape[3] < extent[1]:
        raise ValueError(f"window {extent} does not fit in padded input {padded.shape[2:]}")
    view = sliding_window_view(padded, extent, axis=(2, 3))
    view = view[:, :, :: stride[0], :: stride[1], :: dilation[0], :: dilation[1]]
    mask = sliding_window_view(declared, extent)[:: stride[0], :: stride[1], :: dilation[0], :: dilation[1]]
    if ceil_mode:
        # Keep only windows that start inside the input or the left padding (PyTorch's rule).
        keep = [np.arange(view.shape[2 + a]) * stride[a] < (h, w)[a] + padding[a] for a in range(2)]
        view = view[:, :, keep[0]][:, :, :, keep[1]]
        mask = mask[keep[0]][:, keep[1]]
    return view, mask
