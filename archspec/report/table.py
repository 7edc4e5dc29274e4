"""Presentation of an Analysis: text table, Markdown, CSV and JSON. Reads results, computes nothing new."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from tabulate import tabulate

from archspec.analysis.analyze import Analysis, LayerStats, Totals
from archspec.analysis.training import TrainingMemory


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
    saved: int | None = None  # --train: bytes of saved tensors charged to these layers


TRAIN_MARK = " [train]"  # rows that only feed training-time outputs (auxiliary heads)


def _layer_row(layer: LayerStats, saved: dict[str, int] | None = None) -> Row:
    return Row(
        layer.name,
        layer.op + (TRAIN_MARK if layer.train_only else ""),
        layer.output_shape,
        layer.params,
        layer.macs,
        layer.activations,
        layer.receptive_field.describe(),
        saved=None if saved is None else saved[layer.name],
    )


def rows(analysis: Analysis, depth: int | None = None) -> list[Row]:
    """Per-layer rows; with depth N, layers are summed per name prefix of N dotted parts and
    consecutive groups with identical structure are shown once with a count ('x N')."""
    layers = [layer for layer in analysis.layers]
    saved = analysis.training.layer_saved_bytes() if analysis.training is not None else None
    if depth is None:
        return [_layer_row(layer, saved) for layer in layers]
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
                    saved=None if saved is None else sum(saved[m.name] for m in members),
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
                    None if row.saved is None else prev.saved + row.saved,
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
        + ([] if r.saved is None else [fmt_int(r.saved)])
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


def render_table(analysis: Analysis, depth: int | None = None, tablefmt: str = "simple") -> str:
    title = f"{analysis.name}: input {shape_text(analysis.input_shape)}, batch {analysis.batch}, {analysis.dtype}"
    train = analysis.training is not None
    body = tabulate(
        _table_rows(rows(analysis, depth)),
        headers=HEADERS + (["saved"] if train else []),
        tablefmt=tablefmt,
        colalign=("left", "left", "right", "right", "right", "right", "left") + (("right",) if train else ()),
        disable_numparse=True,
    )
    totals = tabulate(totals_lines(analysis), tablefmt="plain")
    return f"{title}\n\n{body}\n\n{totals}\n"


def render_markdown(analysis: Analysis, depth: int | None = None) -> str:
    return render_table(analysis, depth, tablefmt="github")


def render_csv(analysis: Analysis, depth: int | None = None) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    train = analysis.training is not None
    header = ["name", "op", "output_shape", "params", "macs", "activations", "receptive_field", "count"]
    writer.writerow(header + (["saved_bytes"] if train else []))
    for r in rows(analysis, depth):
        writer.writerow(
            [r.name, r.op, "x".join(map(str, r.output_shape)), r.params, r.macs, r.activations, r.rf, r.count]
            + ([r.saved] if train else [])
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
    training = analysis.training
    saved = training.layer_saved_bytes() if training is not None else None
    if training is not None:
        totals["training"] = {
            "saved_activation_bytes": training.saved_activation_bytes,
            "param_bytes": training.param_bytes,
            "grad_bytes": training.grad_bytes,
            "optimizer_state_bytes": training.optimizer_state_bytes,
            "buffer_bytes": training.buffer_bytes,
            "total_bytes": training.total_bytes,
            "optimizer": training.optimizer,
            "batch": training.batch,
            "input_bytes": training.input_bytes,  # part of saved_activation_bytes
            "saved_per_image_bytes": training.saved_activations.per_image,
            "saved_batch_constant_bytes": training.saved_activations.constant,
            "torchinfo_estimated_total_bytes": training.torchinfo_bytes,
        }
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
    "training (SGD, b1)",
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
                human_bytes(a.training.total_bytes) if a.training is not None else "n/a",
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
    align = ("left", "left", "right", "right", "right", "right", "right", "left", "right", "right")
    return tabulate(rows, headers=COMPARE_HEADERS, tablefmt=tablefmt, disable_numparse=True, colalign=align) + "\n"
