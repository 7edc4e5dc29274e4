"""The command layer behind `archspec report` (and the other writing commands): load and analyse specs,
ask archspec/report/ to format the results, check the targets, then write. archspec/report/ never loads
a spec or touches a file."""

from __future__ import annotations

import glob
import os
from pathlib import Path

from archspec.analysis.analyze import Analysis
from archspec.errors import Diagnostic, UsageError
from archspec.report.files import atomic_write_bytes, inside


def analyze_specs(
    spec_paths: list[str], input_shape=None, batch: int = 1, dtype: str = "float32", optimizer: str | None = None
) -> list[Analysis]:
    """Every spec analysed alike; `optimizer` adds the training-memory figures (archspec.analysis.training)."""
    from archspec.model import load

    # Training memory (plain SGD) for the compare and report tables; it is modelled for float32 only.
    optimizer = "sgd" if dtype == "float32" else None
    return [load(path).analyze(input_shape, batch=batch, dtype=dtype, optimizer=optimizer) for path in spec_paths]


def explanations(
    spec_path: str, layers: list[str] | None = None, input_shape=None, batch: int = 1, dtype: str = "float32"
):
    """(analysis, [(layer name, text)]) for the named layers (all when None); unknown names are errors."""
    from archspec.model import load

    model = load(spec_path)
    analysis = model.analyze(input_shape, batch=batch, dtype=dtype)
    return analysis, explain_analysis(model, analysis, layers, where=spec_path)


def explain_analysis(
    model, analysis: Analysis, layers: list[str] | None = None, where: str = ""
) -> list[tuple[str, str]]:
    from archspec.errors import did_you_mean
    from archspec.report.explain import explain_layer

    by_name = {layer.name: layer for layer in analysis.layers}
    wanted = list(by_name) if not layers else layers
    problems = [
        Diagnostic(None, f"{where}: error: no layer named '{name}'", did_you_mean(name, by_name))
        for name in wanted
        if name not in by_name
    ]
    if problems:
        raise UsageError(problems)
    shapes = model.graph.infer_shapes(tuple(analysis.input_shape))
    out = []
    for name in wanted:
        op = model.graph.op(name)
        op_lines = op.explain([shapes[i] for i in op.inputs], shapes[name])
        out.append((name, explain_layer(analysis, by_name[name], op_lines)))
    return out


def report_command(spec_paths: list[str], out_dir: str) -> str:
    """The command line that reproduces a report folder; `folder/*.yaml` when it names every spec there."""
    specs = list(spec_paths)
    folders = {os.path.dirname(p) for p in specs}
    if len(specs) > 1 and len(folders) == 1:
        folder = folders.pop()
        pattern = os.path.join(folder, "*.yaml")
        if sorted(specs) == sorted(glob.glob(pattern)):
            specs = [pattern]
    return f"archspec report {' '.join(specs)} --out-dir {str(out_dir).rstrip('/') or '.'}/"


def report_files(spec_paths: list[str], command: str, *, charts: bool = True) -> dict[str, bytes]:
    """File name -> contents of a report folder (one page per spec, charts, index.md). Analyses every
    spec first, so a bad spec leaves nothing behind. `charts=False` skips drawing (the pages still link
    the chart files), for tests that only compare the Markdown."""
    from archspec.report import chart
    from archspec.report.markdown import render_index, render_report

    files: dict[str, bytes] = {}
    seen: dict[str, str] = {}
    analyses = []
    from archspec.model import load

    for spec_path in spec_paths:
        model = load(spec_path)
        analysis = model.analyze(optimizer="sgd")  # with the training-memory column
        if analysis.name in seen:
            raise UsageError(f"{spec_path}: error: model name '{analysis.name}' is also used by {seen[analysis.name]}")
        seen[analysis.name] = spec_path
        analyses.append(analysis)
        profile = f"{analysis.name}_profile.svg"
        if charts:
            data = chart.profile_data(analysis)
            files[profile] = chart.figure_bytes(chart.profile_figure(data, analysis.name), "svg")
        files[f"{analysis.name}.md"] = render_report(
            analysis,
            spec_path,
            profile=profile,
            diagram=_mermaid_section(analysis),
            explanations=explain_analysis(model, analysis, where=spec_path),
        ).encode()
    lecture = chart.chart_data(analyses, "macs", "top1", "peak")
    embedded = [
        (
            "Top-1 against MACs (the lecture's closing chart)",
            "chart_top1_macs.svg",
            "Circle area: peak live activation memory. Drawn by `archspec chart specs/*.yaml --out chart.svg`."
            + (f" No published top-1, so not plotted: {', '.join(lecture.missing)}." if lecture.missing else ""),
            lecture,
        ),
        (
            "Params against MACs",
            "chart_params_macs.svg",
            "Every model, no accuracy needed: `archspec chart specs/*.yaml --x macs --y params --size peak --out chart.svg`.",
            chart.chart_data(analyses, "macs", "params", "peak"),
        ),
    ]
    if charts:
        for _, name, _, data in embedded:
            files[name] = chart.figure_bytes(chart.chart_figure(data), "svg")
    files["index.md"] = render_index(analyses, command, [(t, n, note) for t, n, note, _ in embedded]).encode()
    return files


def _refusal(message: str, detail: str) -> UsageError:
    hint = f"choose another --out-dir, or add --force to replace it{detail}"
    return UsageError(Diagnostic(None, message, hint))


def _mermaid_section(analysis: Analysis) -> str:
    from archspec.report import diagram

    depth = diagram.auto_depth(analysis)
    how = "every layer" if depth is None else f"blocks of {depth} name part{'s' if depth > 1 else ''} collapsed"
    command = "archspec diagram SPEC" + ("" if depth is None else f" --depth {depth}")
    return (
        f"Data flow, {how} (`{command}`; `--format dot` for Graphviz).\n\n"
        f"```mermaid\n{diagram.render_mermaid(diagram.diagram(analysis, depth))}```\n"
    )


def write_reports(
    spec_paths: list[str], out_dir: Path, *, command: str | None = None, force: bool = False, charts: bool = True
) -> list[Path]:
    """Write a report folder. Refuses (unless `force`) to replace an index.md written by another command
    (e.g. a one-spec run over the committed index of every shipped spec) or any file archspec did not write."""
    from archspec.report.markdown import MARKER, generated_by

    out_dir = Path(out_dir)
    command = command or report_command(spec_paths, str(out_dir))
    files = report_files(spec_paths, command, charts=charts)
    targets = {name: inside(out_dir, name) for name in files}
    if not force:
        for name, target in targets.items():
            if not target.exists():
                continue
            old = target.read_bytes()
            if name.endswith(".md") and not old.decode("utf-8", "replace").startswith(MARKER):
                raise _refusal(f"{out_dir / name}: error: refusing to overwrite a file archspec did not write", "")
            if name == "index.md" and generated_by(old.decode("utf-8", "replace")) != command:
                raise _refusal(
                    f"{out_dir / name}: error: refusing to overwrite an index written by another command,"
                    f" `{generated_by(old.decode('utf-8', 'replace'))}`",
                    f" (this run is `{command}`)",
                )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in files.items():
        atomic_write_bytes(targets[name], data)
        written.append(out_dir / name)
    return written
