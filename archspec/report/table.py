"""Presentation of an Analysis: text table, Markdown, CSV and JSON. Reads results, computes nothing new."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, replace

from archspec.analysis.analyze import Analysis, LayerStats, Totals
from archspec.analysis.receptive_field import ReceptiveField
from archspec.analysis.training import TrainingMemory
from archspec.ops.base import Window
from archspec.report.columns import COLUMNS, DEFAULT_COLUMNS
from archspec.report.grid import grid


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
    rf: ReceptiveField
    count: int = 1  # > 1 when identical consecutive blocks are shown once
    window: Window | None = None  # conv/pool sliding window (single layers only)
    groups: int = 1
    inputs: tuple[str, ...] = ()
    train_only: bool = False  # only feeds training-time outputs (auxiliary heads)
    saved: int | None = None  # analyze --train: bytes of saved tensors charged to these layers


def _layer_row(layer: LayerStats, saved: dict[str, int] | None = None) -> Row:
    return Row(
        layer.name,
        layer.op,
        layer.output_shape,
        layer.params,
        layer.macs,
        layer.activations,
        layer.receptive_field,
        window=layer.window,
        groups=layer.groups,
        inputs=layer.inputs,
        train_only=layer.train_only,
        saved=None if saved is None else saved[layer.name],
    )


def rows(analysis: Analysis, depth: int | None = None) -> list[Row]:
    """Per-layer rows; with depth N, layers are summed per name prefix of N dotted parts and
    consecutive groups with identical structure are shown once with a count ('x N')."""
    layers = list(analysis.layers)
    saved = analysis.training.layer_saved_bytes() if analysis.training is not None else None
    if depth is None:
        return [_layer_row(layer, saved) for layer in layers]
    # Inputs are shown as the rows they come from: a block's output is named by the block.
    key_of = {layer.name: ".".join(layer.name.split(".")[:depth]) for layer in layers}
    groups: list[tuple[str, list[LayerStats]]] = []
    for layer in layers:
        key = key_of[layer.name]
        if groups and groups[-1][0] == key:
            groups[-1][1].append(layer)
        else:
            groups.append((key, [layer]))
    summed = []
    for key, members in groups:
        outside = tuple(dict.fromkeys(key_of.get(i, i) for m in members for i in m.inputs if key_of.get(i, i) != key))
        if len(members) == 1:
            summed.append((replace(_layer_row(members[0], saved), inputs=outside), ()))
            continue
        last = members[-1]
        summed.append(
            (
                Row(
                    key,
                    f"block({len(members)} layers)",
                    last.output_shape,
                    sum(m.params for m in members),
                    sum(m.macs for m in members),
                    sum(m.activations for m in members),
                    last.receptive_field,
                    # The block's inputs: what its members read from outside the block.
                    inputs=outside,
                    train_only=all(m.train_only for m in members),
                    saved=None if saved is None else sum(saved[m.name] for m in members),
                ),
                # Structure signature: same ops, shapes and params in the same order.
                tuple((m.op, m.output_shape, m.params, m.macs) for m in members),
            )
        )
    merged: list[tuple[Row, tuple, list[str]]] = []
    for row, signature in summed:
        if merged and merged[-1][1] == signature and len(signature) > 1:
            prev, sig, names = merged[-1]
            names.append(row.name)
            merged[-1] = (
                replace(
                    row,
                    name=f"{names[0]} .. {row.name.split('.')[-1]}",
                    params=prev.params + row.params,
                    macs=prev.macs + row.macs,
                    activations=prev.activations + row.activations,
                    count=prev.count + 1,
                    inputs=prev.inputs,
                    saved=None if row.saved is None else prev.saved + row.saved,
                ),
                sig,
                names,
            )
        else:
            merged.append((row, signature, [row.name]))
    return [r for r, _, _ in merged]


def _axes(values: tuple[int, int], sep: str = "x") -> str:
    return str(values[0]) if values[0] == values[1] else f"{values[0]}{sep}{values[1]}"


def window_text(window: Window | None, groups: int = 1) -> str:
    """`11x11 /4 p0` (kernel, stride, padding), plus ` d2` for dilation and ` g2` for groups."""
    if window is None:
        return "" if groups == 1 else f"g{groups}"
    d = window.dilation
    k = tuple((window.kernel[a] - 1) // d[a] + 1 for a in range(2))  # the kernel before dilation
    text = f"{k[0]}x{k[1]} /{_axes(window.stride)} p{_axes(window.padding)}"
    if d != (1, 1):
        text += f" d{_axes(d)}"
    if groups != 1:
        text += f" g{groups}"
    return text


def _inputs_text(row: Row, previous: str | None) -> str:
    # Shown when the data does not simply come from the row above: merges and branch starts.
    if len(row.inputs) == 1 and row.inputs[0] == previous:
        return ""
    return ", ".join(row.inputs)


_CELLS = {
    "layer": lambda row, previous: row.name + (f"  (x{row.count})" if row.count > 1 else ""),
    "op": lambda row, previous: row.op,
    "kernel": lambda row, previous: window_text(row.window, row.groups),
    "inputs": _inputs_text,
    "output": lambda row, previous: shape_text(row.output_shape),
    "params": lambda row, previous: fmt_int(row.params),
    "macs": lambda row, previous: fmt_int(row.macs),
    "activations": lambda row, previous: fmt_int(row.activations),
    "rf": lambda row, previous: row.rf.describe(),
    "train": lambda row, previous: "yes" if row.train_only else "",
    "saved": lambda row, previous: "" if row.saved is None else fmt_int(row.saved),
}


def layer_table(
    analysis: Analysis, depth: int | None = None, layout: str = "simple", columns: tuple[str, ...] | None = None
) -> str:
    """The per-layer table alone. Training-only layers get a `train-only` column when the model has any."""
    rs = rows(analysis, depth)
    if columns is None:
        columns = DEFAULT_COLUMNS + (("train",) if any(r.train_only for r in rs) else ())
        columns += ("saved",) if analysis.training is not None else ()
    cells = [_CELLS[key] for key in columns]
    body = []
    previous = "input"
    for r in rs:
        body.append([cell(r, previous) for cell in cells])
        previous = r.name
    return grid(body, [COLUMNS[k][0] for k in columns], layout, [COLUMNS[k][1] for k in columns])


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
    if analysis.training is not None:
        lines += training_lines(analysis.training)
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


# ---- training memory (analyze --train) -----------------------------------------------------------------


def _bytes(n: int) -> str:
    return f"{fmt_int(n)} B  ({human_bytes(n)})"


def training_lines(t: TrainingMemory) -> list[tuple[str, str]]:
    opt = {"sgd": "SGD: none", "momentum": "SGD momentum: 1 x params", "adam": "Adam: 2 x params + step"}
    per_image, constant = t.saved_activations.per_image, t.saved_activations.constant
    return [
        (
            f"training: saved for backward (batch {t.batch})",
            f"{_bytes(t.saved_activation_bytes)} = {fmt_int(per_image)} B x {t.batch}"
            + (f" + {fmt_int(constant)} B (BN statistics)" if constant else "")
            + "; includes x",
        ),
        ("training: parameters", _bytes(t.param_bytes)),
        ("training: gradients", _bytes(t.grad_bytes)),
        (f"training: optimizer state ({opt[t.optimizer]})", _bytes(t.optimizer_state_bytes)),
        ("training: buffers (BN running stats, counters)", _bytes(t.buffer_bytes)),
        ("training: total (sum of the above)", _bytes(t.total_bytes)),
        (
            "training: torchinfo's Estimated Total Size",
            f"{_bytes(t.torchinfo_bytes)}  (input + 2 x outputs of layers with params + params)",
        ),
    ]


def fit_line(t: TrainingMemory, budget: int) -> str:
    batch = t.largest_batch(budget)
    if batch == 0:
        return f"largest batch within {_bytes(budget)}: none (batch 1 needs {_bytes(t.total().at(1))})"
    return (
        f"largest batch within {_bytes(budget)}: {fmt_int(batch)} "
        f"(needs {_bytes(t.total().at(batch))}; {t.optimizer}, PyTorch eager, float32)"
    )


def title_line(analysis: Analysis) -> str:
    title = f"{analysis.name}: input {shape_text(analysis.input_shape)}, batch {analysis.batch}, {analysis.dtype}"
    if analysis.batch > 1:
        title += (
            f"\n(params, MACs and activations are per image; activation memory and peak live"
            f" are for the batch of {analysis.batch})"
        )
    return title


def render_table(
    analysis: Analysis, depth: int | None = None, layout: str = "simple", columns: tuple[str, ...] | None = None
) -> str:
    body = layer_table(analysis, depth, layout, columns)
    totals = grid(totals_lines(analysis), layout="plain")
    return f"{title_line(analysis)}\n\n{body}\n\n{totals}\n"


def render_markdown(analysis: Analysis, depth: int | None = None, columns: tuple[str, ...] | None = None) -> str:
    """Markdown: pipe tables with numeric columns right-aligned, and the totals as a table of their own."""
    body = layer_table(analysis, depth, "pipe", columns)
    totals = totals_table(analysis)
    title = title_line(analysis).replace("\n", " ")
    return f"**{title}**\n\n{body}\n\n{totals}\n"


def totals_table(analysis: Analysis) -> str:
    """The totals as a Markdown table: the figure right-aligned, its unit and note beside it."""
    body = []
    for label, text in totals_lines(analysis):
        figure, _, note = text.partition(" ")
        body.append([label, figure, note.strip()])
    return grid(body, ["total", "value", "unit and note"], "pipe", ("left", "right", "left"))


def _rf_numbers(rf: ReceptiveField) -> list:
    if rf.kind != "local":
        return ["", "", "", "", "", ""]
    return [*rf.size(), *rf.stride(), *rf.padding()]


# The receptive field as numbers (empty when global), in both the analyze and the compare CSV.
RF_CSV_COLUMNS = ("rf_size_h", "rf_size_w", "rf_stride_h", "rf_stride_w", "rf_padding_h", "rf_padding_w")

CSV_HEADERS = [
    "name",
    "op",
    "output_shape",
    "params",
    "macs",
    "activations",
    *RF_CSV_COLUMNS,
    "rf_kind",  # local, global or irregular
    "kernel",
    "inputs",
    "train_only",
    "count",
]


def render_csv(analysis: Analysis, depth: int | None = None) -> str:
    """One row per layer (or block), raw integers, then a `TOTAL` row (inference path, per image)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    train = analysis.training is not None
    writer.writerow(CSV_HEADERS + (["saved_bytes"] if train else []))
    for r in rows(analysis, depth):
        writer.writerow(
            [
                r.name,
                r.op,
                "x".join(map(str, r.output_shape)),
                r.params,
                r.macs,
                r.activations,
                *_rf_numbers(r.rf),
                r.rf.kind,
                window_text(r.window, r.groups),
                " ".join(r.inputs),
                int(r.train_only),
                r.count,
            ]
            + ([r.saved] if train else [])
        )
    t = analysis.totals
    saved_total = [analysis.training.saved_activation_bytes] if train else []
    writer.writerow(["TOTAL", "", "", t.params, t.macs, t.activations] + [""] * 7 + ["", "", 0, ""] + saved_total)
    return buffer.getvalue()


# ---- the CS231n view: the lecture's VGG16 table, reproducible line by line ----------------------


@dataclass(frozen=True)
class Cs231nRow:
    name: str
    op: str
    volume: tuple  # H x W x C (or (F,) for flat features)
    memory: int  # values
    weights: int  # conv/linear weights without biases


def cs231n_rows(analysis: Analysis) -> list[Cs231nRow]:
    """The input, then every inference layer that has weights or changes the number of values; the
    parameter-free layers that keep it (ReLU, dropout, flatten, same-size pooling) fold into the row
    before, as the lecture's table does."""

    def hwc(shape):
        return (shape[1], shape[2], shape[0]) if len(shape) == 3 else tuple(shape)

    values = {"input": analysis.totals.input_elements}
    out = [Cs231nRow("input", "input", hwc(analysis.input_shape), analysis.totals.input_elements, 0)]
    for layer in analysis.layers:
        values[layer.name] = layer.activations
        if layer.train_only:
            continue
        keeps_values = len(layer.inputs) == 1 and values[layer.inputs[0]] == layer.activations
        if layer.params == 0 and keeps_values:
            continue
        out.append(
            Cs231nRow(layer.name, layer.op, hwc(layer.output_shape), layer.activations, layer.weights_without_bias)
        )
    return out


def render_cs231n(analysis: Analysis, layout: str = "simple") -> str:
    from archspec.report.conventions import CS231N_FOOTNOTE

    rs = cs231n_rows(analysis)
    body = grid(
        [[r.name, r.op, f"[{'x'.join(map(str, r.volume))}]", fmt_int(r.memory), fmt_int(r.weights)] for r in rs],
        ["layer", "op", "volume (H x W x C)", "memory (values)", "weights (no bias)"],
        layout,
        ("left", "left", "right", "right", "right"),
    )
    memory = sum(r.memory for r in rs)
    weights = sum(r.weights for r in rs)
    from archspec.analysis.memory import DTYPE_BYTES

    nbytes = memory * DTYPE_BYTES[analysis.dtype]
    totals = grid(
        [
            (
                "TOTAL memory",
                f"{fmt_int(memory)} values x {DTYPE_BYTES[analysis.dtype]} B = {human_bytes(nbytes)} per image (forward only)",
            ),
            ("TOTAL weights", f"{fmt_int(weights)}  ({human(weights)})"),
        ],
        layout="plain",
    )
    note = "\n".join("  " + line for line in CS231N_FOOTNOTE.splitlines())
    return f"{analysis.name} (CS231n view): input {shape_text(analysis.input_shape)}, {analysis.dtype}\n\n{body}\n\n{totals}\n\n*{note.strip()}\n"


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
    training = analysis.training
    saved = training.layer_saved_bytes() if training is not None else None
    if training is not None:
        totals["training"] = training_json(training)
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
            | ({} if saved is None else {"saved_bytes": saved[layer.name]})
            for layer in analysis.layers
        ],
        "totals": totals,
        "metadata": analysis.metadata,
    }


def training_json(t: TrainingMemory) -> dict:
    return {
        "saved_activation_bytes": t.saved_activation_bytes,
        "param_bytes": t.param_bytes,
        "grad_bytes": t.grad_bytes,
        "optimizer_state_bytes": t.optimizer_state_bytes,
        "buffer_bytes": t.buffer_bytes,
        "total_bytes": t.total_bytes,
        "optimizer": t.optimizer,
        "batch": t.batch,
        "input_bytes": t.input_bytes,  # part of saved_activation_bytes
        "saved_per_image_bytes": t.saved_activations.per_image,
        "saved_batch_constant_bytes": t.saved_activations.constant,
        "torchinfo_estimated_total_bytes": t.torchinfo_bytes,
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
    "training (SGD)",
]


COMPARE_ALIGN = ("left", "left", "right", "right", "right", "right", "right", "left", "right", "right")


def final_local_rf(analysis: Analysis) -> tuple[str, str] | None:
    """The receptive field of the last spatial layer on the inference path, and that layer's name."""
    for layer in reversed(analysis.layers):
        if layer.receptive_field.kind == "local" and not layer.train_only:
            return layer.receptive_field.describe(), layer.name
    return None


def compare_order(analyses: list[Analysis]) -> list[Analysis]:
    """The order every compare format uses: cheapest (fewest MACs) first, then by name."""
    return sorted(analyses, key=lambda a: (a.totals.macs, a.name))


def top1(analysis: Analysis):
    """The published top-1 accuracy (%) from the spec's metadata, or None."""
    return ((analysis.metadata or {}).get("reference") or {}).get("top1")


def comparison_rows(analyses: list[Analysis]) -> list[list[str]]:
    """One row per model, in compare_order."""
    rows = []
    for a in compare_order(analyses):
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
                "" if top1(a) is None else str(top1(a)),
                human_bytes(a.training.total_bytes) if a.training is not None else "n/a",
            ]
        )
    return rows


def comparison_record(a: Analysis) -> dict:
    """Everything the compare table shows, as raw numbers (JSON; CSV flattens it)."""
    layer = final_local_rf(a)
    rf = next(x.receptive_field for x in a.layers if x.name == layer[1]) if layer else None
    return {
        "name": a.name,
        "input_shape": list(a.input_shape),
        "batch": a.batch,
        "dtype": a.dtype,
        **_totals_json(a.totals),
        "receptive_field": None if rf is None else {"layer": layer[1], **rf.to_json()},
        "top1": top1(a),
        "training_total_bytes": None if a.training is None else a.training.total_bytes,  # SGD, this batch
    }


COMPARE_CSV_HEADERS = [
    "model",
    "input_c",
    "input_h",
    "input_w",
    "batch",
    "dtype",
    "params",
    "macs",
    "activation_bytes",
    "peak_activation_bytes",
    "rf_layer",
    *RF_CSV_COLUMNS,
    "top1",
    "training_total_bytes",
]


def render_comparison(analyses: list[Analysis], fmt: str = "table") -> str:
    ordered = compare_order(analyses)
    if fmt == "json":
        return json.dumps([comparison_record(a) for a in ordered], indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COMPARE_CSV_HEADERS)
        for a in ordered:
            r = comparison_record(a)
            rf = r["receptive_field"]
            rf_cells = [rf["layer"], *rf["size"], *rf["stride"], *rf["padding"]] if rf else [""] * 7
            t = a.totals
            writer.writerow(
                [
                    a.name,
                    *a.input_shape,
                    a.batch,
                    a.dtype,
                    t.params,
                    t.macs,
                    t.activation_bytes,
                    t.peak_activation_bytes,
                    *rf_cells,
                    "" if r["top1"] is None else r["top1"],
                    "" if r["training_total_bytes"] is None else r["training_total_bytes"],
                ]
            )
        return buffer.getvalue()
    rows = comparison_rows(ordered)
    layout = "pipe" if fmt == "markdown" else "simple"
    return grid(rows, COMPARE_HEADERS, layout, COMPARE_ALIGN) + "\n"
