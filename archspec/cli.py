"""Command line: wires the stages together (load -> analyze/verify/run/report -> print).

Exit codes: 0 success, 1 verification mismatch, 2 invalid input or usage. No traceback unless --debug.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import traceback
from pathlib import Path

from archspec.errors import ArchspecError, UsageError
from archspec.spec.yamlsafe import MAX_INT

FORMATS = ("table", "markdown", "json", "csv")
DTYPES = ("float32", "float16", "bfloat16", "int8")
OPTIMIZERS = ("sgd", "momentum", "adam")  # archspec.analysis.training.OPTIMIZERS (not imported: startup time)
CHART_FIGURES = ("macs", "params", "peak", "activations", "top1")  # archspec.report.chart.FIGURES


_SHAPE = re.compile(r"\s*([0-9]{1,19})\s*[,x]\s*([0-9]{1,19})\s*[,x]\s*([0-9]{1,19})\s*")


def parse_input_shape(text: str) -> tuple[int, int, int]:
    match = _SHAPE.fullmatch(text)
    values = tuple(int(v) for v in match.groups()) if match else ()
    if len(values) != 3 or any(v < 1 or v > MAX_INT for v in values):
        shown = text if len(text) <= 40 else text[:37] + "..."
        raise UsageError(
            f"error: --input {shown!r} is not a shape; write C,H,W with positive integers"
            f" (at most 10**18), e.g. 3,224,224"
        )
    return values  # type: ignore[return-value]


def _positive(text: str) -> int:
    try:
        value = int(text) if len(text) <= 20 else None
    except ValueError:
        value = None
    if value is None:
        raise argparse.ArgumentTypeError(f"{text[:30]!r} is not a whole number")
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1")
    if value > MAX_BATCH:
        raise argparse.ArgumentTypeError(f"{text!r} is too large (at most {MAX_BATCH:,})")
    return value


MAX_BATCH = 1 << 30  # --batch, --depth, --samples: a sanity bound, so totals stay exact *and* printable


def _natural(text: str) -> int:
    """A whole number >= 0 (a random seed)."""
    if not (text.strip().isdigit() and len(text) <= 20):
        raise argparse.ArgumentTypeError(f"{text[:30]!r} is not a whole number >= 0")
    return int(text)


def _columns(text: str) -> tuple[str, ...]:
    from archspec.report.columns import COLUMNS

    keys = tuple(k.strip() for k in text.split(",") if k.strip())
    unknown = [k for k in keys if k not in COLUMNS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(
            f"unknown column {unknown[0] if unknown else text!r}; choose from {','.join(COLUMNS)}"
        )
    return keys


def _add_analysis_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", help="input shape C,H,W (default: the spec's)")
    p.add_argument("--batch", type=_positive, default=1)
    p.add_argument("--dtype", choices=DTYPES, default="float32")


def _analysis_options(args) -> dict:
    shape = parse_input_shape(args.input) if args.input is not None else None
    return {"input_shape": shape, "batch": args.batch, "dtype": args.dtype}


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("archspec")
    except PackageNotFoundError:  # running from a source tree that was never installed
        return "unknown (not installed)"


class _VersionAction(argparse.Action):
    """--version, looked up only when asked for (importlib.metadata costs every other command 10 ms)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        help = help or "show program's version number and exit"
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"archspec {_version()}")  # on stdout, like argparse's own version action
        parser.exit()


# ---- analyze --train --fit: memory budgets ----------------------------------------------------------------
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12}
_UNITS.update({"KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40})
_BUDGET = re.compile(r"\s*([0-9]{1,15})(?:\.([0-9]{1,9}))?\s*([A-Za-z]*)\s*")


def _budget(text: str) -> int:
    """A memory budget in bytes: 16GiB, 1.5GB, 800MiB, 123456 (binary and decimal units)."""
    match = _BUDGET.fullmatch(text)
    unit = match and next((u for u in _UNITS if u.lower() == match.group(3).lower()), None)
    if not match or unit is None:
        raise argparse.ArgumentTypeError(f"{text[:30]!r} is not a size; write e.g. 16GiB, 1.5GB, 800MiB or bytes")
    whole, fraction = match.group(1), match.group(2) or ""
    value = int(whole + fraction) * _UNITS[unit] // 10 ** len(fraction)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} must be at least 1 byte")
    return value


def build_parser() -> argparse.ArgumentParser:
    from archspec.report import columns, conventions

    parser = argparse.ArgumentParser(
        prog="archspec",
        description="Exact static analysis of CNN architectures declared as YAML graphs.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "analyze",
        help="per-layer shapes, params, MACs, memory and receptive fields",
        epilog=conventions.plain(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec")
    _add_analysis_options(p)
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--depth", type=_positive, help="roll layers up to blocks of N name parts (not with json)")
    p.add_argument(
        "--columns",
        type=_columns,
        help=f"comma-separated table columns from {','.join(columns.COLUMNS)} (default: {','.join(columns.DEFAULT_COLUMNS)})",
    )
    p.add_argument(
        "--cs231n", action="store_true", help="the lecture's table: H x W x C, weights without biases, input memory"
    )
    # Training memory (archspec/analysis/training.py): PyTorch eager autograd, float32.
    p.add_argument("--train", action="store_true", help="add what training keeps (PyTorch autograd, float32)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, help="optimizer state for --train (default: sgd)")
    p.add_argument("--fit", type=_budget, metavar="BYTES", help="with --train: largest batch within e.g. 16GiB")

    p = sub.add_parser("verify", help="prove every static number with the NumPy forward pass")
    p.add_argument("specs", nargs="+")
    p.add_argument("--seed", type=_natural, default=0)
    p.add_argument("--samples", type=_positive, default=400, help="drop masks sampled for stochastic depth")
    p.add_argument("--input", help="verify at input shape C,H,W instead of the spec's (e.g. a huge model, smaller)")

    p = sub.add_parser("run", help="run the reference forward pass with real weights")
    p.add_argument("spec")
    p.add_argument("--weights", required=True, help=".npz with '<layer>.<tensor>' keys")
    p.add_argument("--input", required=True, dest="input_file", help=".npy of shape N x C x H x W")
    p.add_argument("--out", required=True, help="where to write the output .npy")

    p = sub.add_parser("compare", help="compare models: params, MACs, memory, receptive field, top-1")
    p.add_argument("specs", nargs="+")
    _add_analysis_options(p)
    p.add_argument("--format", choices=FORMATS, default="table")

    p = sub.add_parser("report", help="write Markdown reports and a comparison index into --out-dir")
    p.add_argument("specs", nargs="+")
    # Required: a default folder would let `archspec report one.yaml` replace a repository's reports.
    p.add_argument("--out-dir", required=True, help="folder to write (created if missing)")
    p.add_argument("--force", action="store_true", help="replace files another command (or a person) wrote")

    p = sub.add_parser("chart", help="draw models against each other: the lecture's top-1 vs MACs chart")
    p.add_argument("specs", nargs="+")
    p.add_argument("--out", required=True, help="FILE.svg or FILE.png")
    p.add_argument("--x", choices=CHART_FIGURES[:4], default="macs", help="x axis (log scale; default macs)")
    p.add_argument("--y", choices=CHART_FIGURES, default="top1", help="y axis (default top1, the published figure)")
    p.add_argument("--size", choices=("params", "peak", "activations", "none"), default="peak", help="circle area")
    _add_analysis_options(p)

    p = sub.add_parser("diagram", help="the graph as Mermaid (GitHub) or DOT (Graphviz): ops, shapes, blocks")
    p.add_argument("spec")
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    p.add_argument("--depth", type=_positive, help="collapse blocks of N name parts into one box")
    _add_analysis_options(p)

    p = sub.add_parser("explain", help="the arithmetic behind each layer's shape, params, MACs, memory and RF")
    p.add_argument("spec")
    p.add_argument("layers", nargs="*", help="layer names (default: every layer)")
    _add_analysis_options(p)

    p = sub.add_parser("schema", help="print (or write) the JSON Schema for spec files")
    p.add_argument("--out", help="write to this file instead of stdout")
    add_onnx_commands(sub)
    return parser


def cmd_analyze(args) -> int:
    from archspec.model import load
    from archspec.report import table

    if args.format == "json" and args.depth is not None:
        raise UsageError("error: --depth does not apply to --format json, which always lists every layer")
    if args.cs231n and (args.format not in ("table", "markdown") or args.depth or args.columns):
        raise UsageError("error: --cs231n is a table of its own: use it with --format table or markdown only")
    if (args.optimizer or args.fit) and not args.train:
        raise UsageError("error: --optimizer and --fit go with --train")
    if args.train and args.dtype != "float32":
        raise UsageError("error: --train models PyTorch's float32 training only; drop --dtype")
    options = _analysis_options(args)
    shape = options["input_shape"]
    model = load_onnx_or_spec(args.spec, shape) if shape else load(args.spec)  # ONNX: --input fills dynamic sizes
    optimizer = (args.optimizer or "sgd") if args.train else None
    analysis = model.analyze(options["input_shape"], batch=args.batch, dtype=args.dtype, optimizer=optimizer)
    if args.fit:
        return _print_fit(table, analysis, args.fit, args.format, args.depth, args.columns)
    if args.cs231n:
        sys.stdout.write(table.render_cs231n(analysis, "pipe" if args.format == "markdown" else "simple"))
        return 0
    render = {
        "table": lambda: table.render_table(analysis, args.depth, columns=args.columns),
        "markdown": lambda: table.render_markdown(analysis, args.depth, columns=args.columns),
        "csv": lambda: table.render_csv(analysis, args.depth),
        "json": lambda: table.render_json(analysis),
    }[args.format]
    sys.stdout.write(render())
    return 0


def _print_fit(table, analysis, budget: int, fmt: str, depth: int | None, columns) -> int:
    """--train --fit: the analysis, then the largest batch whose training memory fits the budget."""
    training = analysis.training
    if fmt == "json":
        data = table.to_json_dict(analysis)
        data["totals"]["training"]["fit"] = {"budget_bytes": budget, "largest_batch": training.largest_batch(budget)}
        sys.stdout.write(table.json.dumps(data, indent=2) + "\n")
        return 0
    if fmt == "csv":
        raise UsageError("error: --fit prints a sentence: use --format table, markdown or json")
    render = table.render_markdown if fmt == "markdown" else table.render_table
    sys.stdout.write(render(analysis, depth, columns=columns))
    sys.stdout.write(table.fit_line(training, budget) + "\n")
    return 0


def cmd_verify(args) -> int:
    from archspec.model import load
    from archspec.verify import render_report, verify_model

    ok = True
    shape = parse_input_shape(args.input) if args.input is not None else None
    for path in args.specs:
        report = verify_model(load(path), path, seed=args.seed, samples=args.samples, input_shape=shape)
        sys.stdout.write(render_report(report))
        ok &= report.passed
    return 0 if ok else 1


def cmd_run(args) -> int:
    import numpy as np

    from archspec.model import load
    from archspec.reference.io import load_input, load_weights
    from archspec.report.files import atomic_write_bytes

    model = load(args.spec)
    weights = load_weights(args.weights)
    x = load_input(args.input_file)
    y = model.forward(x, weights, weights_source=args.weights, input_source=args.input_file)
    buffer = _npy_bytes(np, y)
    atomic_write_bytes(Path(args.out), buffer)
    print(f"wrote {args.out}: output {list(y.shape)} ({y.dtype})")
    return 0


def _npy_bytes(np, array) -> bytes:
    import io

    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def cmd_compare(args) -> int:
    from archspec.commands import analyze_specs
    from archspec.report.table import render_comparison

    sys.stdout.write(render_comparison(analyze_specs(args.specs, **_analysis_options(args)), args.format))
    return 0


def cmd_report(args) -> int:
    from archspec.commands import write_reports

    for path in write_reports(args.specs, Path(args.out_dir), force=args.force):
        print(f"wrote {path}")
    return 0


def cmd_chart(args) -> int:
    from archspec.commands import analyze_specs
    from archspec.report import chart
    from archspec.report.files import atomic_write_bytes

    out = Path(args.out)
    fmt = out.suffix.lower().lstrip(".")
    if fmt not in ("svg", "png"):
        raise UsageError(f"{args.out}: error: --out must end in .svg or .png")
    data = chart.chart_data(
        analyze_specs(args.specs, **_analysis_options(args)), args.x, args.y, None if args.size == "none" else args.size
    )
    if not data.points:
        raise UsageError(f"error: no model has a value for --y {args.y} (no published top-1 in their metadata)")
    atomic_write_bytes(out, chart.figure_bytes(chart.chart_figure(data), fmt))
    print("\n".join(chart.describe_points(data)))
    print(f"wrote {args.out}")
    return 0


def cmd_diagram(args) -> int:
    from archspec.commands import analyze_specs
    from archspec.report import diagram

    (analysis,) = analyze_specs([args.spec], **_analysis_options(args))
    graph = diagram.diagram(analysis, args.depth)
    sys.stdout.write(diagram.render_mermaid(graph) if args.format == "mermaid" else diagram.render_dot(graph))
    return 0


def cmd_explain(args) -> int:
    from archspec.commands import explanations

    _, texts = explanations(args.spec, args.layers, **_analysis_options(args))
    sys.stdout.write("\n".join(text for _, text in texts))
    return 0


def cmd_schema(args) -> int:
    import json

    from archspec.report.files import atomic_write_bytes
    from archspec.spec.jsonschema import spec_json_schema

    text = json.dumps(spec_json_schema(), indent=2) + "\n"
    if args.out:
        atomic_write_bytes(Path(args.out), text.encode())
        print(f"wrote {args.out}")
    else:
        sys.stdout.write(text)
    return 0


# ---- ONNX: export and import (archspec/onnx/; onnx is imported only when these run) ----------------


def add_onnx_commands(sub) -> None:
    p = sub.add_parser("export", help="write a spec as an ONNX model (needs archspec[onnx])")
    p.add_argument("spec")
    p.add_argument("--out", required=True, help="the .onnx file to write")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--weights", help=".npz with '<layer>.<tensor>' keys (default: random weights)")
    source.add_argument("--seed", type=_natural, default=0, help="seed of the random weights")
    p.add_argument("--opset", type=_positive, help="ONNX opset (default: a recent one)")
    p.add_argument("--input", help="input shape C,H,W (default: the spec's)")

    p = sub.add_parser("import", help="convert an ONNX model to a spec and weights (needs archspec[onnx])")
    p.add_argument("model")
    p.add_argument("--out", required=True, help="the spec .yaml to write")
    p.add_argument("--weights-out", help="write the weights as .npz ('<layer>.<tensor>' keys)")
    p.add_argument("--input", help="input shape C,H,W (needed when the model's H and W are dynamic)")


def load_onnx_or_spec(path: str, shape=None):
    """A model from a YAML spec or an ONNX file (whose dynamic sizes `shape` fills in)."""
    from archspec.onnx import is_onnx_path

    if is_onnx_path(path):
        from archspec.onnx.importer import load_onnx

        return load_onnx(path, shape)
    from archspec.model import load

    return load(path)


def cmd_export(args) -> int:
    from archspec.onnx.export import DEFAULT_OPSET, check_opset, export_model, write_model
    from archspec.reference.io import load_weights

    opset = args.opset or DEFAULT_OPSET
    check_opset(opset)
    model = load_onnx_or_spec(args.spec)
    shape = parse_input_shape(args.input) if args.input is not None else model.input_shape
    weights = load_weights(args.weights) if args.weights else model.init_weights(args.seed, shape)
    proto = export_model(model, weights, opset, shape)
    written = write_model(proto, Path(args.out))
    source = args.weights or f"random weights, seed {args.seed}"
    print(f"wrote {args.out}: {len(proto.graph.node)} ONNX nodes, opset {opset}, {source}")
    if len(written) > 1:
        print(f"wrote {written[1]}: the weights (over 2 GiB, ONNX external data; keep it beside {written[0].name})")
    return 0


def cmd_import(args) -> int:
    from archspec.onnx.importer import import_onnx, model_of, render_spec
    from archspec.report.files import atomic_write_bytes

    shape = parse_input_shape(args.input) if args.input is not None else None
    imported = import_onnx(args.model, shape)
    text = render_spec(imported.spec)
    analysis = model_of(imported, args.model).analyze()  # what is written must load
    atomic_write_bytes(Path(args.out), text.encode())
    print(f"wrote {args.out}: {len(imported.spec['nodes'])} nodes, {analysis.totals.params:,} params")
    if args.weights_out:
        atomic_write_bytes(Path(args.weights_out), _npz_bytes(imported.weights))
        print(f"wrote {args.weights_out}: {len(imported.weights)} tensors")
    for note in imported.notes:
        print(f"note: {note}")
    return 0


def _npz_bytes(arrays) -> bytes:
    import io

    import numpy as np

    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


COMMANDS = {
    "analyze": cmd_analyze,
    "verify": cmd_verify,
    "run": cmd_run,
    "compare": cmd_compare,
    "report": cmd_report,
    "chart": cmd_chart,
    "diagram": cmd_diagram,
    "explain": cmd_explain,
    "schema": cmd_schema,
    "export": cmd_export,
    "import": cmd_import,
}


def main(argv: list[str] | None = None) -> int:
    # Figures are exact integers of any size (a receptive field's stride can have thousands of
    # digits); lift Python's guard on printing long integers.
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    # pydantic searches every installed distribution's entry points for plugins when it builds its first
    # validator (20-30 ms here, more with more packages installed); this process validates only specs.
    os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # usage error (exit 2, message already printed) or --help (exit 0)
        return exc.code if isinstance(exc.code, int) else 2
    try:
        return COMMANDS[args.command](args)
    except ArchspecError as exc:
        if args.debug:
            traceback.print_exc()
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
    except Exception as exc:  # a bug in archspec: say so plainly, traceback only with --debug
        if args.debug:
            raise
        print(f"internal error: {type(exc).__name__}: {exc} (rerun with --debug for a traceback)", file=sys.stderr)
        return 3
