"""Markdown reports: one page per model and an index comparing them. Formatting only: the command layer
(archspec/commands.py) loads, analyses and writes. Deterministic output (no dates, no timings), so a test
can regenerate the committed reports and diff them."""

from __future__ import annotations

from archspec.analysis.analyze import Analysis
from archspec.report import conventions
from archspec.report.grid import grid
from archspec.report.table import (
    COMPARE_ALIGN,
    COMPARE_HEADERS,
    comparison_rows,
    final_local_rf,
    fmt_int,
    layer_table,
    totals_lines,
)

# First line of every file `archspec report` writes: it only ever overwrites files that start with it.
MARKER = "<!-- written by `archspec report`; regenerate, do not edit -->"

CONVENTIONS = "## Conventions\n\n" + conventions.markdown()


def _final_local_rf(analysis: Analysis) -> str:
    rf = final_local_rf(analysis)
    return f"{rf[0]} ({rf[1]})" if rf else "n/a"


def _reference_rows(analysis: Analysis) -> list[list[str]]:
    ref = (analysis.metadata.get("reference") or {}) if analysis.metadata else {}
    t = analysis.totals
    rows = []
    if "params" in ref:
        diff = t.params - ref["params"]
        extra = analysis.train_extra.params if analysis.train_extra else 0
        if diff != 0 and extra and t.params + extra == ref["params"]:
            # torchvision's num_params counts training-only heads (Inception-v3's AuxLogits) too.
            ours = f"{fmt_int(t.params)} + {fmt_int(extra)} training-only"
            rows.append(["params", fmt_int(ref["params"]), ours, "exact, training-only heads included"])
        else:
            rows.append(["params", fmt_int(ref["params"]), fmt_int(t.params), "exact" if diff == 0 else f"{diff:+,}"])
    if "gflops" in ref:
        rounded = round(t.macs / 1e9, 3)
        rows.append(
            [
                "GFLOPS (torchvision: GMACs)",
                f"{ref['gflops']}",
                f"{t.macs / 1e9:.6f}",
                "matches to 3 decimals" if abs(rounded - ref["gflops"]) < 1e-9 else f"rounds to {rounded}",
            ]
        )
    if "macs" in ref:
        rows.append(
            [
                "MACs",
                fmt_int(ref["macs"]),
                fmt_int(t.macs),
                "exact" if ref["macs"] == t.macs else f"{t.macs - ref['macs']:+,}",
            ]
        )
    if "top1" in ref:
        rows.append(["top-1 accuracy (%)", f"{ref['top1']}", "(not computed)", ref.get("dataset", "")])
    return rows


def _module_table(analysis: Analysis, table: dict) -> str:
    """A paper's per-module figures beside archspec's, in the paper's units (K = 1024, M = 10^6)."""
    rows = []
    for module, printed in table.items():
        parts = module.split("+")  # one printed row may cover several layers, e.g. "conv2+conv3"
        members = [m for m in analysis.layers if any(m.name == p or m.name.startswith(p + ".") for p in parts)]
        weights = sum(m.weights_without_bias for m in members)
        macs = sum(m.macs for m in members)
        row = [module, fmt_int(weights), f"{weights / 1024:,.1f}K"]
        params_k = printed.get("params_k")
        row.append("" if params_k is None else f"{params_k:g}K")
        row.append("" if params_k is None else f"{(weights / 1024 - params_k) / params_k:+.1%}")
        row += [fmt_int(macs), f"{macs / 1e6:,.1f}M"]
        ops_m = printed.get("ops_m")
        row.append("" if ops_m is None else f"{ops_m:g}M")
        row.append("" if ops_m is None else f"{(macs / 1e6 - ops_m) / ops_m:+.1%}")
        rows.append(row)
    return grid(
        rows,
        ["module", "weights", "/ 1024", "published", "diff", "MACs", "/ 10^6", "published", "diff"],
        "pipe",
        ("left",) + ("right",) * 8,
    )


def render_report(
    analysis: Analysis,
    spec_path: str,
    *,
    profile: str | None = None,
    diagram: str | None = None,
    explanations: list[tuple[str, str]] | None = None,
) -> str:
    """One model's page. `profile`: file name of its layer-profile chart; `diagram`: a Mermaid graph;
    `explanations`: (layer, derivation text) pairs shown as collapsible sections."""
    meta = analysis.metadata or {}
    lines = [MARKER, f"# {analysis.name}", ""]
    lines.append(f"Spec: `{spec_path}`  ")
    lines.append(f"Source: {meta.get('source', 'n/a')}  ")
    if meta.get("citation"):
        lines.append(f"Citation: {meta['citation']}  ")
    if meta.get("url"):
        lines.append(f"URL: {meta['url']}  ")
    lines.append("")
    if meta.get("notes"):
        lines += [f"> {meta['notes'].strip()}", ""]
    lines += ["## Summary", ""]
    summary = totals_lines(analysis)
    no_bias = sum(layer.weights_without_bias for layer in analysis.layers if not layer.train_only)
    summary.append(("conv + linear weights without biases (CS231n count)", fmt_int(no_bias)))
    summary.append(("receptive field of the last spatial layer", _final_local_rf(analysis)))
    lines.append(grid(summary, ["quantity", "value"], "pipe"))
    lines.append("")
    ref_rows = _reference_rows(analysis)
    if ref_rows:
        lines += ["## Against published figures", ""]
        lines.append(
            grid(ref_rows, ["figure", "published", "archspec", "agreement"], "pipe", ("left", "right", "right", "left"))
        )
        lines.append("")
    table = ((analysis.metadata or {}).get("reference") or {}).get("table")
    if table:
        source = analysis.metadata["reference"].get("table_source", "the paper's table")
        lines += [f"## Per module against {source}", ""]
        lines.append(
            "Weights exclude biases and are also shown in K = 1024, ops are MACs in M = 10^6, as the table counts;"
            " the diff column shows where the table's own figures differ from the architecture it describes."
        )
        lines += ["", _module_table(analysis, table), ""]
    if profile:
        lines += [
            "## Layer profile",
            "",
            "Activation memory, params and MACs per layer (log scales; `archspec chart` draws the model comparisons).",
            "",
            f"![layer profile of {analysis.name}]({profile})",
            "",
        ]
    if diagram:
        lines += ["## Graph", "", diagram.rstrip("\n"), ""]
    lines.append(CONVENTIONS)
    if len(analysis.layers) > 60:
        lines += ["## Blocks", "", "Layers summed per block (`analyze --depth 2`).", ""]
        lines.append(layer_table(analysis, depth=2, layout="pipe"))
        lines.append("")
    lines += ["## Layers", ""]
    lines.append(layer_table(analysis, layout="pipe"))
    lines.append("")
    if explanations:
        lines += ["## How each number is computed", "", "`archspec explain` prints the same text.", ""]
        for name, text in explanations:
            lines += [f"<details><summary>{name}</summary>", "", "```", text.rstrip("\n"), "```", "", "</details>", ""]
    return "\n".join(lines)


def render_index(analyses: list[Analysis], command: str, charts: list[tuple[str, str, str]] = ()) -> str:
    """The comparison page; `command` is the exact command line that wrote it (checked before overwriting).
    `charts`: (title, file name, note) of the comparison charts to embed."""
    rows = comparison_rows(analyses)
    for row in rows:
        row[0] = f"[{row[0]}]({row[0]}.md)"
    table = grid(rows, COMPARE_HEADERS, "pipe", COMPARE_ALIGN)
    return (
        f"{MARKER}\n"
        "# archspec model comparison\n\n"
        f"{GENERATED_BY}`{command}`\n\n"
        "The same table prints with `archspec compare` on the same specs; every figure is static and proven by\n"
        "`archspec verify`. Batch 1, float32. MACs: conv + linear multiply-accumulates (torchvision's GFLOPS).\n"
        "Activation memory: the sum of every node's output; peak live: what inference needs with buffers freed\n"
        "after their last use. Receptive field: the last spatial layer's, `size /stride pPadding`. Top-1 is the\n"
        "published figure from each spec's metadata (torchvision's IMAGENET1K_V1 or the paper's). Training (SGD):\n"
        "what PyTorch holds at the end of a training-mode forward with plain SGD (tensors saved for backward,\n"
        "parameters, gradients, buffers; `archspec analyze SPEC --train`).\n\n"
        f"{table}\n" + "".join(f"\n## {title}\n\n![{title}]({name})\n\n{note}\n" for title, name, note in charts)
    )


GENERATED_BY = "Generated by "


def generated_by(index_text: str) -> str | None:
    """The command recorded in an index page, or None when the file is not one of ours."""
    lines = index_text.splitlines()
    if not lines or lines[0] != MARKER:
        return None
    for line in lines:
        if line.startswith(GENERATED_BY + "`") and line.endswith("`"):
            return line[len(GENERATED_BY) + 1 : -1]
    return None
