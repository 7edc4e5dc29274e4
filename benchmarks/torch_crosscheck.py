"""Optional cross-check of archspec against PyTorch/torchvision (torch is never a dependency of archspec).

    python benchmarks/torch_crosscheck.py --torch-python PY --out DIR [--force] [--runs N] [SPEC ...]

SPEC defaults to every torchvision CNN classifier (MODELS below: 68 specs, each with its torchvision builder
and input size); a model whose spec is not written yet is listed as "no spec yet" and does not fail the run.
Two steps:

1. PY (a Python with torch and torchvision) runs benchmarks/_torch_export.py once per input size, which
   writes each model's state_dict (.npz), logits (_out.npy) for a fixed input of that size and per-module
   calls and params (.json) into DIR -- skipped for models already exported there unless --force -- and
   times torchvision's forward pass.
2. This Python, with archspec only, compares each spec with its export: total params (exact, training-only
   heads included, as torch counts them); every
   torchvision module called once has a layer of that name with the same output shape; the layers with
   params are exactly the torchvision modules with trainable params, with the same counts; and
   archspec.load(spec).forward(x, state_dict) against torchvision's logits (max|diff| / max|ref| within
   1e-4, same argmax). archspec's forward is timed beside torch's.

3. Training memory: the tensors torch's autograd saved in a training-mode forward (unique storages, recorded
   per module with saved_tensors_hooks at batch 1 and 8) against archspec's `analyze(optimizer=...)`: the
   total to the byte, and the bytes charged to every torchvision module, plus parameter and buffer bytes.

Prints one table per step; exits 0 when every spec agrees, 1 otherwise, 2 when PY cannot run torch. The defaults
for PY and DIR are $ARCHSPEC_TORCH_PYTHON and $ARCHSPEC_TVREF (the directory tests/golden.py reads).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
from tabulate import tabulate

import archspec
from archspec.errors import ArchspecError

ROOT = Path(__file__).resolve().parent.parent
EXPORTER = Path(__file__).with_name("_torch_export.py")
TOLERANCE = 1e-4  # float32 through ~100 layers in a different summation order; real bugs are >> 1e-3

# Every CNN classifier torchvision ships (68; vision transformers, Swin and MaxViT are out of scope):
# spec -> (torchvision builder, input size). The size is the crop_size of the builder's first weights'
# transforms (IMAGENET1K_V1; regnet_y_128gf has only SWAG weights, 384 end-to-end), at which torchvision
# measures GFLOPS. tests/golden.py's TORCHVISION table must agree (a test keeps the two in step). Only the
# two whose plain spec name belongs to the paper's version of the network differ from their builder.
_AT_224 = """alexnet_torchvision vgg11 vgg13 vgg16 vgg19 vgg11_bn vgg13_bn vgg16_bn vgg19_bn googlenet_torchvision
    resnet18 resnet34 resnet50 resnet101 resnet152 wide_resnet50_2 wide_resnet101_2 resnext50_32x4d
    resnext101_32x8d resnext101_64x4d densenet121 densenet161 densenet169 densenet201 squeezenet1_0 squeezenet1_1
    mobilenet_v2 mobilenet_v3_small mobilenet_v3_large mnasnet0_5 mnasnet0_75 mnasnet1_0 mnasnet1_3
    shufflenet_v2_x0_5 shufflenet_v2_x1_0 shufflenet_v2_x1_5 shufflenet_v2_x2_0 efficientnet_b0
    regnet_x_400mf regnet_x_800mf regnet_x_1_6gf regnet_x_3_2gf regnet_x_8gf regnet_x_16gf regnet_x_32gf
    regnet_y_400mf regnet_y_800mf regnet_y_1_6gf regnet_y_3_2gf regnet_y_8gf regnet_y_16gf regnet_y_32gf
    convnext_tiny convnext_small convnext_base convnext_large""".split()
_LARGER = {
    "efficientnet_b1": 240,
    "efficientnet_b2": 288,
    "efficientnet_b3": 300,
    "efficientnet_b4": 380,
    "efficientnet_b5": 456,
    "efficientnet_b6": 528,
    "efficientnet_b7": 600,
    "efficientnet_v2_s": 384,
    "efficientnet_v2_m": 480,
    "efficientnet_v2_l": 480,
    "inception_v3": 299,
    "regnet_y_128gf": 384,
}
_BUILDER = {"alexnet_torchvision": "alexnet", "googlenet_torchvision": "googlenet"}
MODELS = {spec: (_BUILDER.get(spec, spec), _LARGER.get(spec, 224)) for spec in [*_AT_224, *_LARGER]}
TORCHVISION = {spec: builder for spec, (builder, _) in MODELS.items()}
INPUT_SIZE = {spec: size for spec, (_, size) in MODELS.items()}
NO_SPEC = "no spec yet"

HEADERS = ("spec", "torchvision", "input", "params", "modules (shape, params)", "max|diff|/max|ref|", "argmax")
HEADERS += ("archspec ms", "torch ms", "ratio", "result")
ALIGN = ("left", "left", "right", "right", "right", "right", "left", "right", "right", "right", "left")
NO_TORCH = """error: {why}. Create a separate environment for it (torch is never a dependency of archspec):
  python -m venv /tmp/torchvenv && /tmp/torchvenv/bin/pip install torch==2.14.1 torchvision==0.29.1
then pass --torch-python /tmp/torchvenv/bin/python"""


def run_exporter(python: str, out: Path, builders: dict[str, int], force: bool, runs: int) -> dict[str, dict]:
    """Step 1: run the exporter under the torch Python (once per input size), echo its progress, return its
    RESULT lines by model."""
    results = {}
    for size in sorted(set(builders.values())):
        names = [b for b, s in builders.items() if s == size]
        cmd = [python, str(EXPORTER), "--out", str(out), "--runs", str(runs), "--size", str(size)]
        cmd += [*(["--force"] if force else []), *names]
        with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
            for line in proc.stdout:
                if line.startswith("RESULT "):
                    result = json.loads(line.removeprefix("RESULT "))
                    results[result["model"]] = result
                else:
                    print(line, end="", flush=True)
        if proc.returncode:
            print(f"error: {EXPORTER.name} exited with status {proc.returncode}; models without a result fail below")
    return results


def module_calls(meta: dict) -> list[dict]:
    """torchvision's leaf-module calls as archspec describes them. Permute modules (ConvNeXt's CNBlock moves
    the channels last and back around its LayerNorm and Linears) only reorder axes and are not layers in
    archspec; the modules called between them see H x W x C maps, whose shapes are given back in C x H x W
    order, archspec's. The direction of a Permute is read from its input and output shapes."""
    calls, channels_last = [], False
    for call in meta["leaf_calls"]:
        if call["type"] == "Permute":
            shape_in, shape_out = call["input_shape"], call["output_shape"]
            if shape_out == shape_in[1:] + shape_in[:1]:
                channels_last = True
            elif shape_out == shape_in[-1:] + shape_in[:-1]:
                channels_last = False
            continue
        shape = call["output_shape"]
        if channels_last and isinstance(shape, list) and len(shape) == 3:
            call = {**call, "output_shape": shape[-1:] + shape[:-1]}
        calls.append(call)
    return calls


def weighted_modules(meta: dict) -> dict[str, int]:
    """Trainable params per torchvision module: leaf modules, plus parameters held directly by a module that
    has children (ConvNeXt's CNBlock.layer_scale), named by their state_dict key as archspec names the layer
    that owns them. Exports made before `direct_params` was recorded have none (no model before ConvNeXt)."""
    weighted = {n: p["num_trainable_params"] for n, p in meta["leaf_params"].items() if p["num_trainable_params"]}
    weighted.update({n: count for n, count in meta.get("direct_params", {}).items() if count})
    return weighted


def compare(spec: str, builder: str, out: Path, runs: int) -> dict:
    """Step 2 for one spec: the figures of one table row, plus `problems` (empty when everything agrees)."""
    meta = json.loads((out / f"{builder}.json").read_text())
    model = archspec.load(str(ROOT / "specs" / f"{spec}.yaml"))
    analysis = model.analyze()
    layers = {layer.name: layer for layer in analysis.layers}
    problems = []

    # torch counts every trainable tensor, training-only heads (Inception-v3's AuxLogits) included.
    params = analysis.totals.params + (analysis.train_extra.params if analysis.train_extra else 0)
    if params != meta["num_params"]:
        problems.append(f"params {params:,} != torch {meta['num_params']:,}")

    # A module torchvision calls several times (ResNet's one `relu`) is several layers in archspec, each
    # named for its call, so only modules called once can be matched by name and shape.
    calls = module_calls(meta)
    counts = Counter(c["name"] for c in calls)
    once = [c for c in calls if counts[c["name"]] == 1]
    unknown = sorted({c["name"] for c in calls} - set(layers))
    bad_shape = [
        c["name"] for c in once if c["name"] in layers and list(layers[c["name"]].output_shape) != c["output_shape"]
    ]
    torch_weighted = weighted_modules(meta)
    ours_weighted = {n: layer.params for n, layer in layers.items() if layer.params}
    bad_params = sorted(
        {n for n in torch_weighted.keys() | ours_weighted.keys() if torch_weighted.get(n) != ours_weighted.get(n)}
    )
    for what, names in (("no such layer", unknown), ("output shape differs", bad_shape), ("params differ", bad_params)):
        if names:
            problems.append(f"{what}: {', '.join(names[:5])}{' ...' if len(names) > 5 else ''} ({len(names)})")

    x = np.load(out / meta["input"])
    if tuple(x.shape[1:]) != analysis.input_shape:
        problems.append(f"export input {list(x.shape[1:])} != spec input {list(analysis.input_shape)}")
    ref = np.load(out / f"{builder}_out.npy")
    with np.load(out / f"{builder}.npz") as npz:
        weights = dict(npz)
    y = model.forward(x, weights)  # also the warm-up for the timed runs
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        model.forward(x, weights)
        times.append(time.perf_counter() - start)
    rel = float(np.abs(y - ref).max() / np.abs(ref).max())
    same_argmax = bool(np.argmax(y) == np.argmax(ref))
    if not rel <= TOLERANCE:  # also catches NaN
        problems.append(f"logits differ: max|diff|/max|ref| = {rel:.2e} > {TOLERANCE:g}")
    if not same_argmax:
        problems.append(f"argmax {np.argmax(y)} != torch {np.argmax(ref)}")
    return {
        "params": params,
        "modules": f"{len(once)}, {len(torch_weighted)}",
        "rel": rel,
        "argmax": same_argmax,
        "seconds": statistics.median(times),
        "problems": problems,
    }


# ---- step 3: training memory (saved tensors) ------------------------------------------------------------


def saved_by_module(layer_bytes: dict[str, int], meta: dict) -> dict[str, int]:
    """Saved bytes (archspec's per layer, or torch's per module) summed per torchvision module called once:
    each name goes to the longest module path that is a prefix of it. A functional F.relu inside GoogLeNet's
    BasicConv2d `conv1` is archspec's layer `conv1.relu` and torch charges it to `conv1`; ResNet's one
    `relu` module, called twice per block, is archspec's `relu` and `relu2`: both sides go to the block.
    Zero entries are dropped."""
    calls = Counter(c["name"] for c in meta["leaf_calls"])
    names = {m for m in meta["training_saved"]["modules"] if calls.get(m, 1) == 1}
    grouped: dict[str, int] = {}
    for layer, nbytes in layer_bytes.items():
        parts = layer.split(".")
        owner = next((p for p in (".".join(parts[:k]) for k in range(len(parts), 0, -1)) if p in names), "")
        grouped[owner] = grouped.get(owner, 0) + nbytes
    return {k: v for k, v in grouped.items() if v}


def compare_training(spec: str, builder: str, out: Path) -> dict:
    """Step 3 for one spec: saved bytes at each exported batch, in total and per module; params and buffers."""
    meta = json.loads((out / f"{builder}.json").read_text())
    ref = meta.get("training_saved")
    if ref is None:
        return {"problems": ["export has no training_saved (re-export with --force)"]}
    model = archspec.load(str(ROOT / "specs" / f"{spec}.yaml"))
    problems, notes, totals, modules = [], [], {}, 0
    for batch, theirs in ref["batches"].items():
        if "total_bytes" not in theirs:  # torch could not run (or the exporter skipped) this batch
            # Nothing to compare at this batch: torch itself cannot train there (Inception-v3's auxiliary
            # head batch-normalizes a 1 x 1 map, one value per channel at batch 1) or it would not fit.
            notes.append(f"batch {batch}: no torch figure ({theirs.get('error') or theirs.get('skipped')})")
            continue
        training = model.analyze(batch=int(batch), optimizer="sgd").training
        ours = saved_by_module(training.layer_saved_bytes(), meta)
        theirs = {**theirs, "by_module": saved_by_module(theirs["by_module"], meta)}
        totals[batch] = (training.saved_activation_bytes, theirs["total_bytes"])
        if training.saved_activation_bytes != theirs["total_bytes"]:
            problems.append(
                f"batch {batch}: saved {training.saved_activation_bytes:,} != torch {theirs['total_bytes']:,}"
            )
        differ = sorted(
            k for k in ours.keys() | theirs["by_module"].keys() if ours.get(k) != theirs["by_module"].get(k)
        )
        if differ:
            shown = ", ".join(
                f"{k or '(model)'} {ours.get(k, 0):,}/{theirs['by_module'].get(k, 0):,}" for k in differ[:4]
            )
            problems.append(f"batch {batch}: {len(differ)} modules differ (archspec/torch): {shown}")
        modules = len(theirs["by_module"])
        for what, mine in (("param_bytes", training.param_bytes), ("buffer_bytes", training.buffer_bytes)):
            if mine != ref[what]:
                problems.append(f"{what} {mine:,} != torch {ref[what]:,}")
    if not totals:  # not one batch compared: that is no agreement
        problems.extend(notes)
        notes = []
    return {"totals": totals, "modules": modules, "problems": problems, "notes": notes}


TRAIN_HEADERS = ("spec", "saved B, batch 1", "torch", "saved B, batch 8", "torch", "modules", "result")


def training_row(spec: str, r: dict) -> list[str]:
    t = r.get("totals", {})
    cells = [f"{t[b][i]:,}" if b in t else "-" for b in ("1", "8") for i in (0, 1)]
    return [spec, *cells, str(r.get("modules", "-")), "FAIL" if r["problems"] else "ok"]


def row(spec: str, r: dict, torch_s: float | None) -> list[str]:
    """One table row; "-" for what could not be measured."""
    ours_s = r.get("seconds")
    return [
        spec,
        TORCHVISION[spec],
        str(INPUT_SIZE[spec]),
        f"{r['params']:,}" if "params" in r else "-",
        r.get("modules", "-"),
        f"{r['rel']:.1e}" if "rel" in r else "-",
        {True: "same", False: "DIFF"}.get(r.get("argmax"), "-"),
        f"{ours_s * 1e3:,.0f}" if ours_s else "-",
        f"{torch_s * 1e3:,.0f}" if torch_s else "-",
        f"{ours_s / torch_s:.1f}" if ours_s and torch_s else "-",
        NO_SPEC if r.get("no_spec") else "FAIL" if r["problems"] else "ok",
    ]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--torch-python",
        default=os.environ.get("ARCHSPEC_TORCH_PYTHON"),
        help="a Python with torch and torchvision (default: $ARCHSPEC_TORCH_PYTHON)",
    )
    p.add_argument(
        "--out",
        type=Path,
        default=os.environ.get("ARCHSPEC_TVREF") or None,
        help="directory for the exports (default: $ARCHSPEC_TVREF)",
    )
    p.add_argument("--force", action="store_true", help="re-export models already exported in --out")
    p.add_argument("--runs", type=int, default=3, help="timed forward passes per side (median reported)")
    p.add_argument("specs", nargs="*", metavar="SPEC", help=f"default: all {len(TORCHVISION)} torchvision CNNs")
    args = p.parse_args(argv)
    if args.out is None:
        p.error("--out DIR is required (or set ARCHSPEC_TVREF)")
    if unknown := [s for s in args.specs if s not in TORCHVISION]:
        p.error(f"not a torchvision-equivalent spec: {', '.join(unknown)}")
    specs = args.specs or list(TORCHVISION)
    # The table lists every torchvision CNN; one whose spec is not written yet is reported, not failed.
    missing = {s for s in specs if not (ROOT / "specs" / f"{s}.yaml").exists()}

    # torch is optional and lives in its own environment: say how to get it rather than fail obscurely.
    python = shutil.which(args.torch_python) if args.torch_python else None
    if not args.torch_python:
        why = "no --torch-python given (nor ARCHSPEC_TORCH_PYTHON)"
    elif not python:
        why = f"no Python at {args.torch_python}"
    elif subprocess.run([python, "-c", "import torch, torchvision"], capture_output=True).returncode:
        why = f"{python} cannot import torch and torchvision"
    else:
        why = None
    if why:
        print(NO_TORCH.format(why=why), file=sys.stderr)
        return 2

    # Both sides' times are very sensitive to other work on the machine (a busy core can slow torch's
    # OpenMP threads tenfold), so the load is printed with them.
    load_before = os.getloadavg()[0]
    print(f"step 1: torchvision exports in {args.out} ({python})", flush=True)
    builders = {TORCHVISION[s]: INPUT_SIZE[s] for s in specs if s not in missing}
    torch_results = run_exporter(python, args.out, builders, args.force, args.runs)

    print("step 2: archspec (NumPy) against the exports", flush=True)
    rows, failures = [], {}
    for spec in specs:
        if spec in missing:
            rows.append(row(spec, {"problems": [], "no_spec": True}, None))
            continue
        builder = TORCHVISION[spec]
        torch_s = torch_results[builder]["seconds"] if builder in torch_results else None
        try:
            if torch_s is None:
                raise FileNotFoundError(f"step 1 gave no result for torchvision.models.{builder}")
            r = compare(spec, builder, args.out, args.runs)
        except (ArchspecError, OSError) as e:  # one broken spec or export must not hide the others
            r = {"problems": [str(e).splitlines()[0]]}
        if r["problems"]:
            failures[spec] = r["problems"]
        rows.append(row(spec, r, torch_s))
    print("\n" + tabulate(rows, headers=HEADERS, colalign=ALIGN, disable_numparse=True))
    threads = sorted({r["threads"] for r in torch_results.values()})
    print(
        f"\nmodules: torchvision modules called once compared by name and output shape, and modules with "
        f"parameters compared by count. Tolerance on the logits {TOLERANCE:g}. Times: median of {args.runs} "
        f"forward passes, batch 1, 3 x input x input; torch with {'/'.join(map(str, threads)) or '?'} thread(s), "
        f"archspec with NumPy's default BLAS threads; load average {load_before:.2f} before, "
        f"{os.getloadavg()[0]:.2f} after."
    )

    print("\nstep 3: training memory (tensors saved for backward) against torch", flush=True)
    train_rows, notes = [], []
    for spec in (s for s in specs if s not in missing):
        try:
            r = compare_training(spec, TORCHVISION[spec], args.out)
        except (ArchspecError, OSError) as e:
            r = {"problems": [str(e).splitlines()[0]]}
        if r["problems"]:
            failures.setdefault(spec, []).extend(r["problems"])
        notes.extend(f"note {spec}: {note}" for note in r.get("notes", []))
        train_rows.append(training_row(spec, r))
    print(
        tabulate(
            train_rows, headers=TRAIN_HEADERS, disable_numparse=True, colalign=("left",) + ("right",) * 5 + ("left",)
        )
    )
    print(
        "\nsaved: unique storages autograd saves in a training-mode forward (float32, input x included), to the byte;"
        " modules: torchvision modules charged with saved bytes, each compared to the byte; also parameter and"
        " buffer bytes."
    )
    for note in notes:
        print(note)
    for spec, problems in failures.items():
        for problem in problems:
            print(f"FAIL {spec}: {problem}")
    checked = len(specs) - len(missing)
    print(f"{checked - len(failures)} of {checked} specs agree with torchvision", end="")
    print(f"; no spec yet for {len(missing)} ({NO_SPEC!r} above)" if missing else "")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
