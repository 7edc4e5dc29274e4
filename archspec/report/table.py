"""Presentation of an Analysis: text table, Markdown, CSV and JSON. Reads results, computes nothing new."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from tabulate import tabulate

from archspec.analysis.analyze import Analysis, LayerStats, Totals


def fmt_int(n: int | float) -> str:
    return f"{n:,.0f}" if isinstance(n, float) else f"{n:,}"


def human(n: float, unit: str = "") -> str:
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(n) >= scale:
            return f"{n / scale:.3f} {suffix}{unit}"
    return f"{n:.0f} {unit}".rstrip()


def human_bytes(n: float) -> str:
    for scale, suffix in ((2**30, "GiB"), (2**20, "MiB"), (2**10, "KiB")):
        if n >= scale:
            return f"{n / scale:.2f} {suffix}"
    return f"{n:.0f} B"


def shape_text(shape) -> str:
    return " x ".join(str(d) for d in shape)


# ---- rows, optionally rolled up to block level --------------------------------------------------


@dataclass(frozen=True)
class Row:
    name: str
    op: str
    output_shape: tuple
    params: int
    macs: int
    activations: int
    rf: str
    count: int = 1  # > 1 when identical consecutive blocks are shown once


TRAIN_MARK = " [train]"  # rows that only feed training-time outputs (auxiliary heads)


def _layer_row(layer: LayerStats) -> Row:
    return Row(
        layer.name,
        layer.op + (TRAIN_MARK if layer.train_only else ""),
        layer.output_shape,
        layer.params,
        layer.macs,
        layer.activations,
        layer.receptive_field.describe(),
    )


def rows(analysis: Analysis, depth: int | None = None) -> list[Row]:
    """Per-layer rows; with depth N, layers are summed per name prefix of N dotted parts and
    consecutive groups with identical structure are shown once with a count ('x N')."""
    layers = [layer for layer in analysis.layers]
    if depth is None:
        return [_layer_row(layer) for layer in layers]
    groups: list[tuple[str, list[LayerStats]]] = []
    for layer in layers:
        key = ".".join(layer.name.split(".")[:depth])
        if groups and groups[-1][0] == key:
            groups[-1][1].append(layer)
        else:
            groups.append((key, [layer]))
    summed = []
    for key, members in groups:
        last = members[-1]
        ops = {m.op for m in members}
        summed.append(
            (
                Row(
                    key,
                    (last.op if len(members) == 1 else f"block({len(members)} layers)")
                    + (TRAIN_MARK if all(m.train_only for m in members) else ""),
                    last.output_shape,
                    sum(m.params for m in members),
                    sum(m.macs for m in members),
                    sum(m.activations for m in members),
                    last.receptive_field.describe(),
                ),
                # Structure signature: same ops, shapes and params in the same order.
                tuple((m.op, m.output_shape, m.params, m.macs) for m in members) if len(ops) else (),
            )
        )
    merged: list[tuple[Row, tuple, list[str]]] = []
    for row, signature in summed:
        if merged and merged[-1][1] == signature and len(signature) > 1:
            prev, sig, names = merged[-1]
            names.append(row.name)
            merged[-1] = (
                Row(
                    f"{names[0]} .. {row.name.split('.')[-1]}",
                    prev.op,
                    row.output_shape,
                    prev.params + row.params,
                    prev.macs + row.macs,
                    prev.activations + row.activations,
                    row.rf,
                    prev.count + 1,
                ),
                sig,
                names,
            )
        else:
            merged.append((row, signature, [row.name]))
    return [r for r, _, _ in merged]


def _table_rows(rs: list[Row]) -> list[list[str]]:
    return [
        [
            r.name + (f"  (x{r.count})" if r.count > 1 else ""),
            r.op,
            shape_text(r.output_shape),
            fmt_int(r.params),
            fmt_int(r.macs),
            fmt_int(r.activations),
            r.rf,
        ]
        for r in rs
    ]


HEADERS = ["layer", "op", "output (C x H x W)", "params", "MACs", "activations", "receptive field"]


def totals_lines(analysis: Analysis) -> list[tuple[str, str]]:
    t = analysis.totals
    lines = [
        ("params", f"{fmt_int(t.params)}  ({human(t.params)})"),
        ("MACs (conv + linear)", f"{fmt_int(t.macs)}  ({human(t.macs)}; FLOPs = 2 x MACs = {human(2 * t.macs)})"),
        ("activations (all outputs)", f"{fmt_int(t.activations)} elements per image"),
        ("parameter memory", f"{fmt_int(t.param_bytes)} B  ({human_bytes(t.param_bytes)}, {analysis.dtype})"),
        (
            "activation memory (sum of outputs)",
            f"{fmt_int(t.activation_bytes)} B  ({human_bytes(t.activation_bytes)}, batch {analysis.batch})",
        ),
        (
            "peak live activations (inference)",
            f"{fmt_int(t.peak_activation_bytes)} B  ({human_bytes(t.peak_activation_bytes)}, at {t.peak_at})",
        ),
    ]
    if t.buffers:
        lines.append(("buffers (BN running stats, not params)", fmt_int(t.buffers)))
    if analysis.train_extra is not None:
        e = analysis.train_extra
        lines.append(
            (
                f"training-only heads ({', '.join(analysis.train_outputs)})",
                f"+{fmt_int(e.params)} params, +{fmt_int(e.macs)} MACs; "
                f"peak live with the heads {human_bytes(e.peak_activation_bytes)}",
            )
        )
    sd = analysis.stochastic_depth
    if sd is not None:
        lines.append(
            (
                "stochastic depth",
                f"{sd.blocks} droppable blocks, expected active {sd.expected_active_blocks:.4f}; "
                f"expected training MACs {fmt_int(sd.expected_train_macs)} "
                f"({sd.expected_train_macs / sd.full_train_macs:.2%} of {fmt_int(sd.full_train_macs)})",
            )
        )
    return lines


def render_table(analysis: Analysis, depth: int | None = None, tablefmt: str = "simple") -> str:
    title = f"{analysis.name}: input {shape_text(analysis.input_shape)}, batch {analysis.batch}, {analysis.dtype}"
    body = tabulate(
        _table_rows(rows(analysis, depth)),
        headers=HEADERS,
        tablefmt=tablefmt,
        colalign=("left", "left", "right", "right", "right", "right", "left"),
        disable_numparse=True,
    )
    totals = tabulate(totals_lines(analysis), tablefmt="plain")
    return f"{title}\n\n{body}\n\n{totals}\n"


def render_markdown(analysis: Analysis, depth: int | None = None) -> str:
    return render_table(analysis, depth, tablefmt="github")


def render_csv(analysis: Analysis, depth: int | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "op", "output_shape", "params", "macs", "activations", "receptive_field", "count"])
    for r in rows(analysis, depth):
        writer.writerow(
            [r.name, r.op, "x".join(map(str, r.output_shape)), r.params, r.macs, r.activations, r.rf, r.count]
        )
    return buffer.getvalue()


def _totals_json(t: Totals) -> dict:
    return {
        "params": t.params,
        "macs": t.macs,
        "activations": t.activations,
        "param_bytes": t.param_bytes,
        "activation_bytes": t.activation_bytes,
        "peak_activation_bytes": t.peak_activation_bytes,
        "buffers": t.buffers,
    }


def to_json_dict(analysis: Analysis) -> dict:
    totals = _totals_json(analysis.totals)
    if analysis.train_extra is not None:
        totals["training_only"] = _totals_json(analysis.train_extra)
    sd = analysis.stochastic_depth
    if sd is not None:
        totals["stochastic_depth"] = {
            "blocks": sd.blocks,
            "expected_active_blocks": sd.expected_active_blocks,
            "expected_train_macs": sd.expected_train_macs,
            "full_train_macs": sd.full_train_macs,
            "survival": [p for _, p, _ in sd.branches],
        }
    return {
        "name": analysis.name,
        "input_shape": list(analysis.input_shape),
        "batch": analysis.batch,
        "dtype": analysis.dtype,
        "outputs": list(analysis.outputs),
        "train_outputs": list(analysis.train_outputs),
        "layers": [
            {
                "name": layer.name,
                "op": layer.op,
                "inputs": list(layer.inputs),
                "output_shape": list(layer.output_shape),
                "params": layer.params,
                "param_tensors": dict(layer.param_tensors),  # e.g. {"weight": 34848, "bias": 96}
                "buffers": layer.buffers,
                "macs": layer.macs,
                "activations": layer.activations,
                "receptive_field": layer.receptive_field.to_json(),
                "train_only": layer.train_only,
            }
            for layer in analysis.layers
        ],
        "totals": totals,
        "metadata": analysis.metadata,
    }


def render_json(analysis: Analysis) -> str:
    return json.dumps(to_json_dict(analysis), indent=2) + "\n"


# ---- comparing models ----------------------------------------------------------------------------

COMPARE_HEADERS = [
    "model",
    "input",
    "params",
    "MACs",
    "MACs (short)",
    "activations (sum)",
    "peak live",
    "receptive field",
    "top-1 (%)",
]


def final_local_rf(analysis: Analysis) -> tuple[str, str] | None:
    """The receptive field of the last spatial layer on the inference path, and that layer's name."""
    for layer in reversed(analysis.layers):
        if layer.receptive_field.kind == "local" and not layer.train_only:
            return layer.receptive_field.describe(), layer.name
    return None


def comparison_rows(analyses: list[Analysis]) -> list[list[str]]:
    """One row per model, cheapest (fewest MACs) first."""
    rows = []
    for a in sorted(analyses, key=lambda a: a.totals.macs):
        ref = (a.metadata.get("reference") or {}) if a.metadata else {}
        rf = final_local_rf(a)
        rows.append(
            [
                a.name,
                "x".join(map(str, a.input_shape)),
                fmt_int(a.totals.params),
                fmt_int(a.totals.macs),
                human(a.totals.macs),
                human_bytes(a.totals.activation_bytes),
                human_bytes(a.totals.peak_activation_bytes),
                rf[0] if rf else "n/a",
                str(ref.get("top1", "")),
            ]
        )
    return rows


def render_comparison(analyses: list[Analysis], fmt: str = "table") -> str:
    if fmt == "json":
        return json.dumps([{**to_json_dict(a)["totals"], "name": a.name} for a in analyses], indent=2) + "\n"
    rows = comparison_rows(analyses)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COMPARE_HEADERS)
        writer.writerows(rows)
        return buffer.getvalue()
    tablefmt = "github" if fmt == "markdown" else "simple"
    align = ("left", "left", "right", "right", "right", "right", "right", "left", "right")
    return tabulate(rows, headers=COMPARE_HEADERS, tablefmt=tablefmt, disable_numparse=True, colalign=align) + "\n"
