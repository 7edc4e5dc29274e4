"""`archspec report`: one Markdown file per spec and an index comparing them. Deterministic output
(no dates, no timings), so a test can regenerate the committed reports and diff them."""

from __future__ import annotations

from pathlib import Path

from tabulate import tabulate

from archspec.analysis.analyze import Analysis
from archspec.model import load
from archspec.report.files import atomic_write_text, inside
from archspec.report.table import (
    COMPARE_HEADERS,
    comparison_rows,
    final_local_rf,
    fmt_int,
    render_markdown,
    totals_lines,
)

CONVENTIONS = """\
## Conventions

- **MACs** count the multiply-accumulates of conv and linear weights only, one fused multiply-add = 1,
  bias excluded; BatchNorm, ReLU, pooling, adds and concats are not counted. This is torchvision's
  "GFLOPS" metadata and fvcore's conv/linear rule. **FLOPs = 2 x MACs** is the convention of most
  papers since 2017.
- **Params** are trainable tensors: weights, biases and BatchNorm gamma/beta. BatchNorm running
  statistics are buffers, shown separately (torchvision's `num_params` rule). CS231n counts conv
  weights without biases; that figure is given below too.
- **Activations** are output elements per image, summed over every node (ReLU outputs included).
  **Peak live activations** simulate inference: each tensor is freed after its last reader, graph
  outputs stay alive, and ReLU/dropout run in place when their input dies there.
- **Receptive field** `r /s pP`: size r, effective stride s and effective padding P per axis
  (Araujo et al., Distill 2019); unit u sees input pixels [s*u - P, s*u - P + r - 1]. "global" means
  the unit sees the whole input (after global pooling, flatten or a linear layer).
"""


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
    return tabulate(
        rows,
        headers=["module", "weights", "/ 1024", "published", "diff", "MACs", "/ 10^6", "published", "diff"],
        tablefmt="github",
        disable_numparse=True,
    )


def render_report(analysis: Analysis, spec_path: str) -> str:
    meta = analysis.metadata or {}
    lines = [f"# {analysis.name}", ""]
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
    lines.append(tabulate(summary, headers=["quantity", "value"], tablefmt="github", disable_numparse=True))
    lines.append("")
    ref_rows = _reference_rows(analysis)
    if ref_rows:
        lines += ["## Against published figures", ""]
        lines.append(
            tabulate(
                ref_rows,
                headers=["figure", "published", "archspec", "agreement"],
                tablefmt="github",
                disable_numparse=True,
            )
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
    lines.append(CONVENTIONS)
    if len(analysis.layers) > 60:
        lines += ["## Blocks", "", "Layers summed per block (`analyze --depth 2`).", ""]
        lines.append(_table_only(render_markdown(analysis, depth=2)))
        lines.append("")
    lines += ["## Layers", ""]
    lines.append(_table_only(render_markdown(analysis)))
    lines.append("")
    return "\n".join(lines)


def _table_only(text: str) -> str:
    # render_markdown prints a title, the table and the totals; keep the table.
    parts = text.split("\n\n")
    return parts[1] if len(parts) > 1 else text


def render_index(entries: list[tuple[str, Analysis]]) -> str:
    rows = comparison_rows([a for _, a in entries])
    for row in rows:
        row[0] = f"[{row[0]}]({row[0]}.md)"
    table = tabulate(rows, headers=COMPARE_HEADERS, tablefmt="github", disable_numparse=True)
    return (
        "# archspec model comparison\n\n"
        "Generated by `archspec report specs/*.yaml --out-dir reports/` (the same table prints with\n"
        "`archspec compare specs/*.yaml`); every figure is static and proven by `archspec verify`. Batch 1,\n"
        "float32. MACs: conv + linear multiply-accumulates (torchvision's GFLOPS). Activation memory: the sum\n"
        "of every node's output; peak live: what inference needs with buffers freed after their last use.\n"
        "Receptive field: the last spatial layer's, `size /stride pPadding`. Top-1 is the published figure\n"
        "from each spec's metadata (torchvision's IMAGENET1K_V1 or the paper's).\n\n"
        f"{table}\n"
    )


def write_reports(spec_paths: list[str], out_dir: Path) -> list[Path]:
    """Analyze every spec first and check every target name; only then create the folder and write,
    so a bad spec or name leaves nothing behind."""
    from archspec.errors import UsageError

    out_dir = Path(out_dir)
    entries = []
    seen: dict[str, str] = {}
    for spec_path in spec_paths:
        analysis = load(spec_path).analyze()
        if analysis.name in seen:
            raise UsageError(f"{spec_path}: error: model name '{analysis.name}' is also used by {seen[analysis.name]}")
        seen[analysis.name] = spec_path
        entries.append((spec_path, analysis, inside(out_dir, f"{analysis.name}.md")))
    index = inside(out_dir, "index.md")
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for spec_path, analysis, target in entries:
        atomic_write_text(target, render_report(analysis, spec_path))
        written.append(out_dir / target.name)
    atomic_write_text(index, render_index([(p, a) for p, a, _ in entries]))
    written.append(out_dir / index.name)
    return written
