"""archspec beside onnx-tool (a profiler of ONNX models; only used here, never a dependency) on the
same ONNX files: agreement on params and MACs, each tool's convention named, and the time each takes.

    python benchmarks/onnx_peer.py [--runs N] MODEL.onnx...      (e.g. /tmp/onnxref/*.onnx)
    python benchmarks/onnx_peer.py --specs resnet18 vgg16 ...    (exported by archspec first, random weights)

Conventions:
- params: archspec counts trainable tensors per layer (BatchNorm running statistics are buffers);
  onnx-tool counts every initializer element once. So onnx-tool = archspec params + buffers - shared,
  where "shared" counts again each initializer that several nodes read (PyTorch's exporter merges
  identical constants: the all-zero biases that BatchNorm folding gives freshly built models).
- MACs: archspec counts conv and linear weights, one multiply-add = 1, bias excluded. onnx-tool counts a
  bias add as one more MAC per output element of a Conv/Gemm, and also counts element-wise ops (BN, ReLU,
  pooling, Add). So onnx-tool's Conv/Gemm/MatMul MACs minus their bias adds must equal archspec's total.
Times: median of N runs of the whole job in one process, the two tools' runs interleaved, file already on
disk (and in the page cache): archspec = read + import + analyze (shapes, params, MACs, memory, receptive
fields); onnx-tool = load + shape inference + profile. Imports are not timed (one untimed call each first).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
PRODUCTS = ("Conv", "Gemm", "MatMul")


def archspec_figures(path: str):
    from archspec.onnx.importer import load_onnx

    return load_onnx(path).analyze()


def onnx_tool_figures(path: str, input_shape):
    import onnx_tool

    with contextlib.redirect_stdout(io.StringIO()):
        model = onnx_tool.Model(path)
        graph = model.graph
        name = next(iter(graph.input))
        graph.shape_infer({name: np.zeros((1, *input_shape), dtype=np.float32)})
        graph.profile()
    products, bias_adds = 0, 0
    for node in graph.nodemap.values():
        if node.op_type in PRODUCTS:
            products += int(node.macs[0])
            if len(node.input) > 2 or (node.op_type == "Conv" and len(node.input) == 3):
                bias_adds += int(np.prod(graph.tensormap[node.output[0]].shape))
    return int(graph.params), int(graph.macs[0]), products, bias_adds


def shared_elements(path: str) -> int:
    """Elements of initializers read by more than one node, counted once per extra reader."""
    import onnx

    proto = onnx.load(path, load_external_data=False)
    sizes = {t.name: int(np.prod(t.dims)) for t in proto.graph.initializer}
    readers: dict[str, int] = {}
    for node in proto.graph.node:
        for name in set(node.input):
            if name in sizes:
                readers[name] = readers.get(name, 0) + 1
    return sum((count - 1) * sizes[name] for name, count in readers.items() if count > 1)


def timed_pair(ours, theirs, runs: int) -> tuple[object, float, object, float]:
    """Median milliseconds of `runs` calls of each, interleaved (ours, theirs, ours, ...) so that a change
    in the machine's load affects both alike; one untimed call of each first (imports, caches)."""
    mine, peer = [], []
    result_ours, result_theirs = ours(), theirs()
    for _ in range(runs):
        for fn, times in ((ours, mine), (theirs, peer)):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
    return result_ours, statistics.median(mine) * 1000, result_theirs, statistics.median(peer) * 1000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="*")
    parser.add_argument("--specs", nargs="*", default=[], help="export these specs with archspec first")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    paths = list(args.models)
    tmp = tempfile.TemporaryDirectory()
    for spec in args.specs:
        from archspec.cli import main as cli

        out = str(Path(tmp.name) / f"{spec}.onnx")
        with contextlib.redirect_stdout(io.StringIO()):
            if cli(["export", str(ROOT / "specs" / f"{spec}.yaml"), "--out", out]) != 0:
                return 2
        paths.append(out)
    rows, disagree = [], 0
    for path in paths:
        shape = archspec_figures(path).input_shape
        ours, t_ours, theirs, t_theirs = timed_pair(
            lambda p=path: archspec_figures(p), lambda p=path, s=shape: onnx_tool_figures(p, s), args.runs
        )
        params, all_macs, products, bias_adds = theirs
        shared = shared_elements(path)
        params_ok = params == ours.totals.params + ours.totals.buffers - shared
        macs_ok = products - bias_adds == ours.totals.macs
        disagree += not (params_ok and macs_ok)
        rows.append(
            [
                Path(path).name,
                f"{ours.totals.params:,} + {ours.totals.buffers:,} - {shared:,}",
                f"{params:,}",
                "yes" if params_ok else "NO",
                f"{ours.totals.macs:,}",
                f"{products:,} - {bias_adds:,}",
                "yes" if macs_ok else "NO",
                f"{all_macs:,}",
                f"{t_ours:.1f}",
                f"{t_theirs:.1f}",
                f"{t_theirs / t_ours:.2f}",
            ]
        )
    headers = ["model", "archspec params + buffers - shared", "onnx-tool params", "agree"]
    headers += ["archspec MACs", "onnx-tool Conv/Gemm MACs - bias adds", "agree", "onnx-tool MACs (all ops)"]
    headers += ["archspec ms", "onnx-tool ms", "onnx-tool / archspec"]
    print(tabulate(rows, headers=headers, disable_numparse=True, colalign=("left",) + ("right",) * 10))
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"\n{len(rows) - disagree} of {len(rows)} models agree; times: median of {args.runs} interleaved runs")
    print(f"load average after the runs (1, 5, 15 min): {load} on {os.cpu_count()} cores")
    return 1 if disagree else 0


if __name__ == "__main__":
    sys.exit(main())
