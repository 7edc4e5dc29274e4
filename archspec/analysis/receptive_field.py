"""Static receptive fields on graphs (theoretical, unclipped by the image border).

Per tensor and axis we keep affine pieces (S, lo, hi): output unit u sees input pixels
[S*u + lo, S*u + hi]. A window op (effective kernel k, stride s, padding p) maps each piece to
(S*s, lo - S*p, hi + S*(k - 1 - p)) -- Araujo et al.'s r += (k-1)S, P += pS, S *= s, written as a span.
At a merge the spans are unioned: pieces with one stride fold into one envelope (flagged as
misaligned when their centres differ); pieces with different strides stay apart, and then the
field's size depends on the unit's position, which we report instead of hiding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Literal

from archspec.graph import INPUT
from archspec.lazy import numpy as np
from archspec.ops import Window
from archspec.ops.base import broadcast_inputs

Piece = tuple[int, int, int]  # (stride, lo, hi)


@dataclass(frozen=True)
class ReceptiveField:
    kind: Literal["local", "global", "irregular"]
    axes: tuple[tuple[Piece, ...], tuple[Piece, ...]] = ((), ())
    misaligned: bool = False  # a merge joined paths whose centres differ
    # The unit also receives global context through a broadcast gate (squeeze-and-excitation): the
    # spans above are its local, geometric field; through the gate it depends on the whole input.
    context: bool = False

    @property
    def position_dependent(self) -> bool:
        return self.kind == "local" and any(len({p[0] for p in ax}) > 1 for ax in self.axes)

    def span(self, axis: int, unit: int) -> tuple[int, int]:
        """Input pixels [lo, hi] seen by `unit` along `axis` (unclipped)."""
        pieces = self.axes[axis]
        return (min(s * unit + lo for s, lo, _ in pieces), max(s * unit + hi for s, _, hi in pieces))

    # The summary users compare with published tables: taken at unit 0 and the finest stride.
    @cached_property
    def _at_unit_0(self) -> tuple[tuple[int, int], tuple[int, int]]:
        return (self.span(0, 0), self.span(1, 0))  # cached: every table row asks for it three times

    def size(self) -> tuple[int, int]:
        return tuple(hi - lo + 1 for lo, hi in self._at_unit_0)

    def stride(self) -> tuple[int, int]:
        return tuple(min(p[0] for p in ax) for ax in self.axes)

    def padding(self) -> tuple[int, int]:
        return tuple(-lo for lo, _ in self._at_unit_0)

    def to_json(self) -> dict | None:
        if self.kind != "local":
            return None
        return {
            "size": list(self.size()),
            "stride": list(self.stride()),
            "padding": list(self.padding()),
            "position_dependent": self.position_dependent,
            "misaligned": self.misaligned,
            "global_context": self.context,
        }

    def describe(self) -> str:
        if self.kind == "global":
            return "global"
        if self.kind == "irregular":
            return "irregular"
        (sh, sw), (th, tw), (ph, pw) = self.size(), self.stride(), self.padding()
        text = f"{sh}x{sw} /{th},{tw} p{ph},{pw}" if (sh, th, ph) != (sw, tw, pw) else f"{sh} /{th} p{ph}"
        if self.position_dependent:
            text += " (varies with position)"
        elif self.misaligned:
            text += " (misaligned merge)"
        if self.context:
            text += " +ctx"
        return text


INPUT_RF = ReceptiveField("local", (((1, 0, 0),), ((1, 0, 0),)))
GLOBAL_RF = ReceptiveField("global")
IRREGULAR_RF = ReceptiveField("irregular")


def apply_window(rf: ReceptiveField, window: Window) -> ReceptiveField:
    if rf.kind != "local":
        return rf
    (k0, k1), (t0, t1), (p0, p1) = window.kernel, window.stride, window.padding
    rows, cols = rf.axes
    if len(rows) == 1 and len(cols) == 1:  # one piece per axis, as almost everywhere: no loops to set up
        (s, lo, hi), (z, left, right) = rows[0], cols[0]
        axes = (((s * t0, lo - s * p0, hi + s * (k0 - 1 - p0)),), ((z * t1, left - z * p1, right + z * (k1 - 1 - p1)),))
    else:
        axes = (
            tuple((s * t0, lo - s * p0, hi + s * (k0 - 1 - p0)) for s, lo, hi in rows),
            tuple((s * t1, lo - s * p1, hi + s * (k1 - 1 - p1)) for s, lo, hi in cols),
        )
    return _local_field(axes, rf.misaligned, rf.context)


_new_object = object.__new__
_set_attribute = object.__setattr__


def _local_field(axes, misaligned: bool, context: bool) -> ReceptiveField:
    """`ReceptiveField("local", axes, misaligned, context)`, without the frozen __init__'s one
    object.__setattr__ per field (one is made per window layer of every analysis)."""
    field = _new_object(ReceptiveField)
    _set_attribute(field, "__dict__", {"kind": "local", "axes": axes, "misaligned": misaligned, "context": context})
    return field


def merge(fields: list[ReceptiveField]) -> ReceptiveField:
    if len(fields) == 1:
        return fields[0]
    kinds = {f.kind for f in fields}
    if "global" in kinds:
        return GLOBAL_RF
    if "irregular" in kinds:
        return IRREGULAR_RF
    misaligned = context = False
    rows: list[Piece] = []
    cols: list[Piece] = []
    for f in fields:
        misaligned = misaligned or f.misaligned
        context = context or f.context
        rows += f.axes[0]
        cols += f.axes[1]
    rows_folded, rows_misaligned = _fold(rows)
    cols_folded, cols_misaligned = _fold(cols)
    return _local_field((rows_folded, cols_folded), misaligned or rows_misaligned or cols_misaligned, context)


def _fold(pieces: list[Piece]) -> tuple[tuple[Piece, ...], bool]:
    """One axis's pieces unioned: one envelope per stride, strides ascending; and whether that is
    misaligned (pieces of one stride whose centres differ, or pieces of several strides)."""
    envelopes: dict[int, list] = {}  # stride -> [lo, hi, centre (times 2), all centres equal]
    for s, lo, hi in pieces:
        envelope = envelopes.get(s)
        if envelope is None:
            envelopes[s] = [lo, hi, lo + hi, True]
            continue
        if lo < envelope[0]:
            envelope[0] = lo
        if hi > envelope[1]:
            envelope[1] = hi
        if lo + hi != envelope[2]:
            envelope[3] = False
    if len(envelopes) == 1:  # the usual case
        ((s, e),) = envelopes.items()
        return ((s, e[0], e[1]),), not e[3]
    folded = tuple((s, e[0], e[1]) for s, e in sorted(envelopes.items()))
    return folded, len(folded) > 1 or not all(e[3] for e in envelopes.values())


def receptive_fields(graph, shapes) -> tuple[dict[str, ReceptiveField], dict[str, object]]:
    """Receptive field of every tensor of `graph` (input pixels seen by one unit), and the rule each op
    gave for it ("pointwise", "global", "irregular" or its Window), which analysis shows as the kernel."""
    fields: dict[str, ReceptiveField] = {INPUT: INPUT_RF}
    rules: dict[str, object] = {}
    for name in graph.order:
        op = graph.nodes[name].op
        rule = rules[name] = op.rf_rule([shapes[i] for i in op.inputs])
        fields[name] = field_of(name, op.inputs, shapes, rule, fields)
    return fields, rules


def field_of(
    name: str, inputs: list[str], shapes: dict, rule, fields: dict[str, ReceptiveField], gates: list[bool] | None = None
) -> ReceptiveField:
    """The receptive field of node `name`'s output, from its inputs' `fields` and `shapes` and its op's
    `rule` (one step of `receptive_fields`, which analysis also takes node by node). `gates`: which
    inputs are broadcast gates (`broadcast_inputs` of their shapes), when the caller knows it."""
    if len(inputs) == 1:  # most nodes: nothing to merge, and a lone input is never a broadcast gate
        merged = fields[inputs[0]]
    else:
        if gates is None:
            gates = broadcast_inputs([shapes[i] for i in inputs])
        merged = merge([fields[i] for i, gate in zip(inputs, gates, strict=True) if not gate])
        if any(gates) and merged.kind == "local":
            merged = ReceptiveField("local", merged.axes, merged.misaligned, context=True)
    if isinstance(rule, Window):  # tested first: comparing a Window with a text is the slow way to say no
        return apply_window(merged, rule)
    if rule == "pointwise":
        return merged
    if rule == "global":
        return GLOBAL_RF
    if rule == "irregular":
        return IRREGULAR_RF if merged.kind == "local" else merged
    raise TypeError(f"node '{name}': unknown receptive-field rule {rule!r}")


# ---- exact per-unit spans at a given input size --------------------------------------------------
# The affine fields above are the textbook figure. At a real image border the truth is smaller:
# windows that reach into padding see nothing there, and pixels a strided layer skips are never
# seen. `exact_spans` follows every unit's window through the graph with index arithmetic, so the
# verifier can hold the measured field of *every* unit, border units included, to an exact value.

EMPTY = -1


def _window_spans(spans: np.ndarray, window: Window, axis: int, out_len: int) -> np.ndarray:
    k_eff, s, p, d = window.kernel[axis], window.stride[axis], window.padding[axis], window.dilation[axis]
    taps = (k_eff - 1) // d + 1
    idx = np.arange(out_len)[:, None] * s - p + np.arange(taps)[None, :] * d  # (out, taps)
    return _gather(spans, idx)


def _gather(spans: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Union of the spans of input units `idx` (rows), ignoring padding and empty units."""
    n = len(spans)
    valid = (idx >= 0) & (idx < n)
    safe = np.clip(idx, 0, n - 1)
    lo, hi = spans[safe, 0], spans[safe, 1]
    valid &= lo != EMPTY
    big = np.iinfo(np.int64).max
    lo_out = np.where(valid, lo, big).min(axis=1)
    hi_out = np.where(valid, hi, -1).max(axis=1)
    return np.stack([np.where(valid.any(axis=1), lo_out, EMPTY), np.where(valid.any(axis=1), hi_out, EMPTY)], axis=1)


def _union_all(spans_list: list[np.ndarray]) -> np.ndarray:
    both = np.concatenate(spans_list)
    real = both[both[:, 0] != EMPTY]
    if not len(real):
        return np.array([[EMPTY, EMPTY]])
    return np.array([[real[:, 0].min(), real[:, 1].max()]])


def exact_spans(graph, shapes, axis: int, nodes=None, *, context: bool = True) -> dict[str, np.ndarray]:
    """Input pixels [lo, hi] (or EMPTY) seen by every unit along `axis`, clipped as in reality.
    Flat tensors are reported as one unit (the union over their features). With context=False,
    broadcast gates are left out: the local field."""
    length = shapes[INPUT][1 + axis]
    spans: dict[str, np.ndarray] = {INPUT: np.stack([np.arange(length)] * 2, axis=1)}
    for name in graph.order if nodes is None else nodes:
        op = graph.op(name)
        in_shapes = [shapes[i] for i in op.inputs]
        gates = broadcast_inputs(in_shapes)
        out_shape = shapes[name]
        units = out_shape[1 + axis] if len(out_shape) == 3 else 1
        # A broadcast gate's single unit reaches every output unit (or, locally, none).
        ins = [
            (np.broadcast_to(spans[i], (units, 2)) if context else None) if gate else spans[i]
            for i, gate in zip(op.inputs, gates, strict=True)
        ]
        ins = [s for s in ins if s is not None]
        rule = op.rf_rule(in_shapes)
        cells = op.window_cells(in_shapes[0][1 + axis], axis) if len(out_shape) == 3 else None
        if len(out_shape) == 1 or rule == "global":
            union = _union_all(ins)
            spans[name] = np.repeat(union, units, axis=0)
        elif rule == "pointwise":
            stacked = np.stack(ins)  # (inputs, units, 2)
            real = stacked[:, :, 0] != EMPTY
            lo = np.where(real, stacked[:, :, 0], np.iinfo(np.int64).max).min(axis=0)
            hi = np.where(real, stacked[:, :, 1], -1).max(axis=0)
            spans[name] = np.stack([np.where(real.any(0), lo, EMPTY), np.where(real.any(0), hi, EMPTY)], axis=1)
        elif cells is not None:
            starts, ends = cells
            width = max(e - s for s, e in zip(starts, ends, strict=True))
            idx = np.array(starts)[:, None] + np.arange(width)[None, :]
            idx = np.where(idx < np.array(ends)[:, None], idx, -1)
            spans[name] = _gather(ins[0], idx)
        else:
            spans[name] = _window_spans(ins[0], rule, axis, out_shape[1 + axis])
    return spans
