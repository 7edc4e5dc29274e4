"""Helpers for the ops' `explain` texts: the lecture's arithmetic with the numbers filled in.

Each op writes its own derivation (output shape, params, MACs) with these; archspec/report/explain.py
adds the memory and receptive-field lines, which follow from the analysis alone.
"""

from __future__ import annotations

import math

from archspec.ops.base import Shape, pair


def num(value: int) -> str:
    return f"{value:,}"


def dot(*factors) -> str:
    """11·11·3·96"""
    return "·".join(str(f) for f in factors)


def shape(s: Shape) -> str:
    return " x ".join(str(d) for d in s)


def window_size_lines(
    in_shape: Shape, out_shape: Shape, kernel, stride, padding, dilation=1, ceil_mode: bool = False
) -> list[str]:
    """`output size = floor((227 + 2·0 − 11) / 4) + 1 = 55`, once when H and W agree, else per axis."""
    k, s, p, d = pair(kernel), pair(stride), pair(padding), pair(dilation)
    lines = []
    per_axis = []
    for a, axis in enumerate(("height", "width")):
        n, out = in_shape[1 + a], out_shape[1 + a]
        extent = d[a] * (k[a] - 1) + 1
        kernel_text = str(k[a]) if d[a] == 1 else f"{extent}"
        rounding = "ceil" if ceil_mode else "floor"
        exact = (n + 2 * p[a] - extent) / s[a]
        value = (math.ceil(exact) if ceil_mode else math.floor(exact)) + 1
        text = f"{rounding}(({n} + 2·{p[a]} − {kernel_text}) / {s[a]}) + 1 = {value}"
        if value != out:  # PyTorch's ceil_mode: a window may not start in the right/bottom padding
            text += f", minus 1 because the last window would start in the padding = {out}"
        extra = f" (dilated kernel {d[a]}·({k[a]} − 1) + 1 = {extent})" if d[a] != 1 else ""
        per_axis.append((axis, text + extra))
    if per_axis[0][1] == per_axis[1][1]:
        lines.append(f"output size = {per_axis[0][1]}  (height and width)")
    else:
        lines += [f"output {axis} = {text}" for axis, text in per_axis]
    return lines


def same_shape_line(in_shape: Shape, what: str) -> str:
    return f"output shape = input shape = {shape(in_shape)}  ({what})"


def no_params_lines(why: str) -> list[str]:
    return ["params = 0  (no weights)", f"MACs = 0  ({why})"]
