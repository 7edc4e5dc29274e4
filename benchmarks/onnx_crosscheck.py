"""Optional cross-check: torchvision models exported by PyTorch's own ONNX exporter, imported by archspec,
against archspec's matching specs (torch is never a dependency of archspec).

    python benchmarks/onnx_crosscheck.py --torch-python PY --out DIR [--dynamo] [--force] [SPEC ...]

1. PY (a Python with torch and torchvision) runs benchmarks/_onnx_torch_export.py, which exports each
   model twice: in eval mode (the exporter folds BatchNorm into the convolutions) and in train mode with
   training=TrainingMode.PRESERVE (BatchNorm kept).
2. This Python imports both files (`archspec.onnx.importer`) and compares them with the spec: MACs must
   equal the spec's for both exports; params must equal the spec's for the BN-preserved export (the
   eval export's params differ by BatchNorm's weight and bias minus the folded conv biases, which the
   table shows); every layer of the spec whose name the import also has must have the same output shape.

Exit 0 when every spec agrees, 1 otherwise, 2 when PY cannot run the exporter.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from tabulate import tabulate

import archspec
from archspec.errors import ArchspecError
from archspec.onnx.importer import load_onnx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from torch_crosscheck import MODELS, TORCHVISION  # noqa: E402

EXPORTER = Path(__file__).with_name("_onnx_torch_export.py")
HEADERS = ("spec", "params (spec)", "params (BN kept)", "params (BN folded)", "MACs (spec)", "MACs (both)")
HEADERS += ("shapes", "result")


def check(spec: str, builder: str, out: Path) -> tuple[list, list[str]]:
    model = archspec.load(str(ROOT / "specs" / f"{spec}.yaml"))
    ref = model.analyze()
    problems, row = [], [spec, f"{ref.totals.params:,}"]
    shapes_checked = 0
    macs = set()
    for kind in ("preserved", "eval"):
        try:
            imported = load_onnx(str(out / f"{builder}_{kind}.onnx")).analyze()
        except ArchspecError as exc:
            problems.append(f"{kind}: {exc.render().splitlines()[0]}")
            row.append("-")
            continue
        row.append(f"{imported.totals.params:,}")
        macs.add(imported.totals.macs)
        if kind == "preserved" and imported.totals.params != ref.totals.params:
            problems.append(f"params {imported.totals.params:,} != {ref.totals.params:,}")
        if imported.totals.macs != ref.totals.macs:
            problems.append(f"{kind}: MACs {imported.totals.macs:,} != {ref.totals.macs:,}")
        theirs = {layer.name: layer.output_shape for layer in imported.layers}
        for layer in ref.layers:
            if layer.name in theirs and not layer.train_only:
                shapes_checked += 1
                if theirs[layer.name] != layer.output_shape:
                    problems.append(f"{kind}: {layer.name} {theirs[layer.name]} != {layer.output_shape}")
    row += [f"{ref.totals.macs:,}", ", ".join(f"{m:,}" for m in sorted(macs)), shapes_checked]
    row.append("ok" if not problems else "; ".join(problems[:3]))
    return row, problems


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--torch-python", default=os.environ.get("ARCHSPEC_TORCH_PYTHON"))
    parser.add_argument("--out", default=os.environ.get("ARCHSPEC_ONNXREF", "/tmp/onnxref"))
    parser.add_argument("--dynamo", action="store_true")
    parser.add_argument("--force", action="store_true")
    parser.add_argument("specs", nargs="*")
    args = parser.parse_args()
    specs = args.specs or sorted(s for s in TORCHVISION if (ROOT / "specs" / f"{s}.yaml").exists())
    out = Path(args.out)
    if not args.torch_python:
        print("error: give --torch-python (a Python with torch and torchvision)", file=sys.stderr)
        return 2
    cmd = [args.torch_python, str(EXPORTER), "--out", str(out), *(["--dynamo"] if args.dynamo else [])]
    cmd += [*(["--force"] if args.force else []), *(f"{MODELS[s][0]}:{MODELS[s][1]}" for s in specs)]
    if subprocess.run(cmd).returncode:
        print(f"error: {EXPORTER.name} failed", file=sys.stderr)
        return 2
    rows, failed = [], 0
    for spec in specs:
        row, problems = check(spec, TORCHVISION[spec], out)
        rows.append(row)
        failed += bool(problems)
    print(tabulate(rows, headers=HEADERS, disable_numparse=True, colalign=("left",) + ("right",) * 6 + ("left",)))
    print(
        "\nshapes: layers of the spec found by name in the imports (both exports) with the same output shape."
        "\nBN folded: PyTorch's eval-mode export fuses BatchNorm into the convolution before it, so those params"
        " are the convs' new biases instead of BatchNorm's weight and bias; MACs are the same."
    )
    print(f"{len(specs) - failed} of {len(specs)} specs agree")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
