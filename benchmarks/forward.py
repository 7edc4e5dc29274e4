"""Benchmark archspec's NumPy reference forward pass against the machine's own matrix-product speed.

    python benchmarks/forward.py [--runs N] [--warmup N] [--rounds N] [--profile] [--torch] [--blas-threads N] [SPEC ...]

For each spec (default: the five of DEFAULT_SPECS, batch 1) it loads the model with archspec.load, makes
weights with model.init_weights(0), runs model.forward a few times to warm up, then times --runs forward
passes and reports the median; then the same in an inference session (model.session(weights), then
session(x)), which keeps what kernels derive from the weights alone from one call to the next, as a torch
module keeps its weights. Achieved GFLOP/s is 2 * MACs / the session's time, MACs from
model.analyze().totals.macs. The baseline is a plain float32 2048x2048 @ 2048x2048 product
(median of several) measured in the same process right before and right after the model, so the
ratio achieved / baseline compares like with like even when the machine is shared.

Each model runs in its own child process so that its RSS high-water mark (resource.getrusage) is
its own; archspec's static peak_activation_bytes is printed beside it for context.

With --torch, or whenever ARCHSPEC_TORCH_PYTHON names a Python that has torch and torchvision, the
same torchvision model (weights=None, eval, no_grad, torch.set_num_threads = NumPy's BLAS threads)
is timed in a subprocess and archspec-time / torch-time is printed for both (a spec named X or X_torchvision
is matched to torchvision.models.X; a parameter-count mismatch is flagged).

--rounds N alternates the archspec and torch children N times per model and pools their runs: on a
shared machine a burst of load then falls on both sides. The table gives the ratio of medians and the
ratio of best runs (archspec's best / torch's best), with the 1-minute load average over the rounds.

Model.forward limits BLAS to one thread while the CPU pressure says other processes keep the cores busy
(reference.forward.blas_threads_for_load); torch has no such rule. So that both sides run on the same
thread count, the children here switch that rule off, unless --adaptive-threads is given.

--profile adds a per-layer and per-op time table. --blas-threads N limits NumPy's BLAS (and torch)
to N threads inside the child processes (threadpoolctl, else openblas_set_num_threads via ctypes):
on a 2-core machine whose other core is busy, one thread is often both faster and steadier.

This is a measurement, not a test: nothing here asserts on a time. The environment is only read
(OPENBLAS_CORETYPE etc. are reported, never changed).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import resource
import statistics
import subprocess
import sys
import textwrap
import time
from functools import partial
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# By default: the five networks whose forward pass should run at or under torch's time (batch 1, 224 x 224).
DEFAULT_SPECS = (
    "specs/vgg16.yaml",
    "specs/resnet50.yaml",
    "specs/densenet121.yaml",
    "specs/mobilenet_v2.yaml",
    "specs/efficientnet_b0.yaml",
)
TARGET_RATIO = {"vgg16": 0.5}  # informational only
BASELINE_SIZE = 2048
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


# ---------------------------------------------------------------- BLAS identification


def _openblas_ctypes_info(set_threads: int | None = None) -> dict | None:
    """Ask the OpenBLAS that NumPy loaded for its threads and kernel (what threadpoolctl does);
    with set_threads, first set its thread count (openblas_set_num_threads)."""
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:
            lib = ctypes.CDLL(path, mode=os.RTLD_NOLOAD | ctypes.RTLD_GLOBAL)
        except OSError:
            continue
        for prefix in ("openblas_", "scipy_openblas_"):
            for suffix in ("", "64_"):
                threads = getattr(lib, f"{prefix}get_num_threads{suffix}", None)
                if threads is None:
                    continue
                if set_threads is not None:
                    getattr(lib, f"{prefix}set_num_threads{suffix}")(ctypes.c_int(set_threads))
                info = {"library": path, "num_threads": int(threads())}
                for key, name in (("architecture", "get_corename"), ("config", "get_config")):
                    fn = getattr(lib, f"{prefix}{name}{suffix}", None)
                    if fn is not None:
                        fn.restype = ctypes.c_char_p
                        info[key] = fn().decode(errors="replace").strip()
                return info
    return None


def blas_info() -> dict:
    """Which BLAS NumPy uses: threadpoolctl if installed, else OpenBLAS via ctypes, else numpy.show_config."""
    info: dict = {"numpy": np.__version__}
    try:
        import threadpoolctl

        pools = [p for p in threadpoolctl.threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            pool = pools[0]
            info.update(
                source="threadpoolctl",
                library=f"{pool.get('internal_api')} {pool.get('version')} ({Path(pool.get('filepath', '')).name})",
                num_threads=pool.get("num_threads"),
                architecture=pool.get("architecture"),
            )
            return info
    except ImportError:
        pass
    probed = _openblas_ctypes_info()
    if probed:
        info.update(
            source="OpenBLAS via ctypes (threadpoolctl not installed)",
            library=f"{probed.get('config', 'OpenBLAS')} ({Path(probed['library']).name})",
            num_threads=probed["num_threads"],
            architecture=probed.get("architecture"),
        )
        return info
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info.update(source="numpy.show_config", library=f"{blas.get('name')} {blas.get('version')}")
    except Exception:  # older NumPy: no dict mode
        info.update(source="numpy.show_config", library="unknown (see numpy.show_config())")
    info["num_threads"] = None
    return info


def set_blas_threads(count: int) -> str:
    """Limit NumPy's BLAS to `count` threads in this process (threadpoolctl, else OpenBLAS via ctypes);
    environment variables are left alone. Returns how it was done."""
    try:
        import threadpoolctl

        threadpoolctl.threadpool_limits(count, user_api="blas")
        return "threadpoolctl"
    except ImportError:
        pass
    if _openblas_ctypes_info(set_threads=count) is None:
        raise SystemExit("error: --blas-threads needs threadpoolctl or an OpenBLAS-backed NumPy")
    return "openblas_set_num_threads"


# ---------------------------------------------------------------- measurements


def matmul_baseline(repeats: int = 7) -> list[float]:
    """GFLOP/s samples of a float32 BASELINE_SIZE^2 @ BASELINE_SIZE^2 product (one warm-up first)."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((BASELINE_SIZE, BASELINE_SIZE), dtype=np.float32)
    b = rng.standard_normal((BASELINE_SIZE, BASELINE_SIZE), dtype=np.float32)
    out = np.empty_like(a)
    np.matmul(a, b, out=out)
    flops = 2.0 * BASELINE_SIZE**3
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.matmul(a, b, out=out)
        samples.append(flops / (time.perf_counter() - start) / 1e9)
    return samples


def current_rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def reset_peak_rss() -> bool:
    """Reset this process's RSS high-water mark (Linux >= 4.0: '5' to /proc/self/clear_refs), so that
    ru_maxrss afterwards covers only what follows; False where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as clear_refs:
            clear_refs.write("5")
    except OSError:
        return False
    return maxrss_bytes() <= current_rss_bytes() + (1 << 20)


def layer_profile(model, x, weights, repeats: int) -> list[dict]:
    """Per-node wall time (min over repeats) through the reference runner's per-node callback."""
    from archspec.reference import forward as reference

    times: dict[str, list[float]] = {}
    macs: dict[str, int] = {}
    for _ in range(repeats):
        last = [time.perf_counter()]

        def record(name, out, w, mm, last=last):
            now = time.perf_counter()
            times.setdefault(name, []).append(now - last[0])
            macs[name] = mm.macs
            last[0] = now

        with reference.inference():  # the path model.forward takes (fused, fast kernels, BLAS threads for the load)
            reference.run(model.graph, x, weights, on_output=record, fuse=True)
    return [
        {"name": name, "op": model.graph.op(name).op, "seconds": min(ts), "macs": macs[name]}
        for name, ts in times.items()
    ]


def timed_calls(call, warmup: int, runs: int) -> list[float]:
    """Seconds of each of `runs` calls, after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def child_main(
    spec: str, runs: int, warmup: int, profile: bool, baseline_repeats: int, threads: int | None, adaptive: bool
) -> None:
    """Measure one model in this (fresh) process; print one JSON line."""
    sys.path.insert(0, str(ROOT))
    import archspec
    from archspec.reference import forward as reference

    if not adaptive:  # the same thread count as torch's, whatever the load
        reference.BUSY_CPU_PRESSURE = float("inf")

    result: dict = {"spec": spec}
    if threads:
        set_blas_threads(threads)
    result["blas_threads"] = blas_info().get("num_threads")
    result["baseline_before"] = matmul_baseline(baseline_repeats)
    model = archspec.load(str(ROOT / spec))
    analysis = model.analyze()
    weights = model.init_weights(0)
    x = np.random.default_rng(0).standard_normal((1, *model.input_shape), dtype=np.float32)
    result.update(
        name=model.name,
        input_shape=list(model.input_shape),
        macs=int(analysis.totals.macs),
        params=int(analysis.totals.params),
        peak_activation_bytes=int(analysis.totals.peak_activation_bytes),
        peak_at=analysis.totals.peak_at,
    )
    # init_weights draws float64 and casts, so setup peaks well above the resident float32 weights:
    # record that peak, then restart the high-water mark so the forward pass's own peak is visible.
    result["setup_maxrss_bytes"] = maxrss_bytes()
    result["peak_reset"] = reset_peak_rss()
    result["rss_before_forward"] = current_rss_bytes()
    result["times"] = timed_calls(partial(model.forward, x, weights), warmup, runs)
    result["maxrss_bytes"] = maxrss_bytes()
    # The same passes in an inference session, which keeps what kernels derive from the weights alone
    # (Winograd's transformed kernels, batch norms' scale and shift), as torch's module keeps its weights.
    session = model.session(weights)
    result["session_times"] = timed_calls(partial(session.forward, x), warmup, runs)
    result["session_maxrss_bytes"] = maxrss_bytes()
    del session
    if profile:
        result["layers"] = layer_profile(model, x, weights, repeats=3)
    del weights, x
    result["baseline_after"] = matmul_baseline(baseline_repeats)
    print("RESULT " + json.dumps(result), flush=True)


TORCH_CHILD = textwrap.dedent(
    """
    import json, resource, sys, time
    import torch, torchvision
    name, channels, height, width, threads, runs, warmup = sys.argv[1:8]
    torch.set_num_threads(int(threads))
    builder = getattr(torchvision.models, name, None) or getattr(torchvision.models, name.removesuffix("_torchvision"), None)
    if builder is None:
        print("RESULT " + json.dumps({"error": f"torchvision.models has no {name}"}))
        sys.exit(0)
    torch.manual_seed(0)
    model = builder(weights=None).eval()
    x = torch.randn(1, int(channels), int(height), int(width))
    times = []
    with torch.no_grad():
        for _ in range(int(warmup)):
            model(x)
        for _ in range(int(runs)):
            start = time.perf_counter()
            model(x)
            times.append(time.perf_counter() - start)
    print("RESULT " + json.dumps({
        "times": times,
        "threads": torch.get_num_threads(),
        "model": builder.__name__,
        "params": sum(p.numel() for p in model.parameters()),
        "version": f"torch {torch.__version__}, torchvision {torchvision.__version__}",
        "maxrss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }))
    """
)


def run_child(cmd: list[str], what: str) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT ") :])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {"error": f"{what} failed (exit {proc.returncode}): " + " | ".join(tail)}


def torch_python(args) -> str | None:
    env = os.environ.get("ARCHSPEC_TORCH_PYTHON")
    if env:
        return env
    return sys.executable if args.torch else None


# ---------------------------------------------------------------- report


def fmt_table(headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    line = "  ".join("-" * w for w in widths)

    def fmt(row):
        return "  ".join(
            str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    return "\n".join([fmt(headers), line, *(fmt(r) for r in rows)])


def mib(n: float | None) -> str:
    return "n/a" if n is None else f"{n / 2**20:,.0f}"


def resolve_specs(requested: list[str], wait: float) -> tuple[list[str], list[str]]:
    """Specs that exist (polling up to `wait` seconds for missing ones), plus notes on any dropped."""
    deadline = time.monotonic() + wait
    missing = [s for s in requested if not (ROOT / s).exists()]
    while missing and time.monotonic() < deadline:
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
        missing = [s for s in requested if not (ROOT / s).exists()]
    notes = [f"note: {s} does not exist; benchmarked without it" for s in missing]
    return [s for s in requested if s not in missing], notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("specs", nargs="*", default=list(DEFAULT_SPECS), help="spec paths relative to the repo")
    parser.add_argument("--runs", type=int, default=5, help="timed forward passes per model (median reported)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed forward passes first")
    parser.add_argument("--baseline-repeats", type=int, default=7, help="matmul samples before and after each model")
    parser.add_argument("--profile", action="store_true", help="also time every layer and print the slowest")
    parser.add_argument(
        "--torch", action="store_true", help="also time torchvision (ARCHSPEC_TORCH_PYTHON or this python)"
    )
    parser.add_argument(
        "--blas-threads",
        type=int,
        help="limit NumPy's BLAS (and torch) to this many threads "
        "via threadpoolctl/openblas_set_num_threads; default: leave NumPy's own setting",
    )
    parser.add_argument(
        "--rounds", type=int, default=1, help="alternate archspec and torch children this many times (runs pooled)"
    )
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to poll for a missing spec file")
    parser.add_argument(
        "--adaptive-threads",
        action="store_true",
        help="leave on Model.forward's rule that drops BLAS to one thread under CPU pressure "
        "(default: off, so archspec and torch run on the same thread count)",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        child_main(
            args.child,
            args.runs,
            args.warmup,
            args.profile,
            args.baseline_repeats,
            args.blas_threads,
            args.adaptive_threads,
        )
        return 0

    specs, notes = resolve_specs(args.specs, args.wait)
    blas = blas_info()
    threads = args.blas_threads or blas.get("num_threads") or os.cpu_count() or 1
    print("archspec forward-pass benchmark (batch 1, float32)")
    print(f"  numpy {blas['numpy']}, BLAS: {blas['library']}")
    limited = f" (limited to {args.blas_threads} by --blas-threads)" if args.blas_threads else ""
    print(
        f"  BLAS threads: {blas.get('num_threads', 'unknown')}{limited}, kernel: {blas.get('architecture') or 'unknown'} "
        f"[{blas['source']}]; cpu_count {os.cpu_count()}"
    )
    env = ", ".join(f"{k}={os.environ[k]}" for k in BLAS_ENV if k in os.environ) or "none set"
    print(f"  BLAS environment: {env}")
    rule = "on (--adaptive-threads)" if args.adaptive_threads else "off: archspec keeps its threads, as torch does"
    print(f"  archspec's one-thread-under-load rule: {rule}")
    print(f"  load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for note in notes:
        print(note)
    if not specs:
        print("nothing to benchmark")
        return 1

    tpy = torch_python(args)
    results = []
    for spec in specs:
        print(f"  running {spec} ...", flush=True)
        cmd = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            spec,
            "--runs",
            str(args.runs),
            "--warmup",
            str(args.warmup),
            "--baseline-repeats",
            str(args.baseline_repeats),
        ]
        cmd += ["--blas-threads", str(args.blas_threads)] if args.blas_threads else []
        cmd += ["--adaptive-threads"] if args.adaptive_threads else []
        res = run_child(cmd + (["--profile"] if args.profile else []), f"archspec child for {spec}")
        loads = [os.getloadavg()[0]]
        # Rounds alternate archspec and torch children, so a burst of load on a shared machine falls on
        # both sides; every run of every round is pooled (min and median below).
        for round_ in range(args.rounds):
            if round_ and "error" not in res:
                again = run_child(cmd, f"archspec child for {spec}")
                if "error" not in again:
                    res["times"] += again["times"]
                    res["session_times"] += again["session_times"]
            if tpy and "error" not in res:
                c, h, w = res["input_shape"]
                torch_res = run_child(
                    [
                        tpy,
                        "-c",
                        TORCH_CHILD,
                        res["name"],
                        str(c),
                        str(h),
                        str(w),
                        str(threads),
                        str(args.runs),
                        str(args.warmup),
                    ],
                    f"torch ({tpy})",
                )
                if "torch" in res and "error" not in torch_res and "error" not in res["torch"]:
                    res["torch"]["times"] += torch_res["times"]
                else:
                    res.setdefault("torch", torch_res)
            loads.append(os.getloadavg()[0])
        res["load"] = (min(loads), max(loads))
        results.append(res)
    print(f"  load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")

    perf_rows, mem_rows, problems, problems_note = [], [], [], []
    for res in results:
        if "error" in res:
            problems.append(f"{res['spec']}: {res['error']}")
            continue
        t, ts = statistics.median(res["times"]), statistics.median(res["session_times"])
        achieved = 2 * res["macs"] / ts / 1e9
        samples = res["baseline_before"] + res["baseline_after"]
        base = statistics.median(samples)
        row = [
            res["name"],
            "x".join(map(str, res["input_shape"])),
            str(res["blas_threads"] or "?"),
            f"{res['macs'] / 1e9:.3f}",
            f"{t * 1e3:,.0f}",
            f"{ts * 1e3:,.0f}",
            f"{min(res['session_times']) * 1e3:,.0f}",
            f"{achieved:.1f}",
            f"{base:.1f} ({statistics.median(res['baseline_before']):.0f}/{statistics.median(res['baseline_after']):.0f})",
            f"{achieved / base:.2f}"
            + (f" (target >= {TARGET_RATIO[res['name']]})" if res["name"] in TARGET_RATIO else ""),
        ]
        torch_res = res.get("torch")
        if torch_res is None:
            row += ["-"] * 5
        elif "error" in torch_res:
            row += ["n/a"] * 5
            problems.append(f"{res['name']} torch: {torch_res['error']}")
        else:
            tt = statistics.median(torch_res["times"])
            same = torch_res["params"] == res["params"]
            best = min(res["session_times"]) / min(torch_res["times"])
            row += [
                f"{tt * 1e3:,.0f}",
                f"{min(torch_res['times']) * 1e3:,.0f}",
                f"{t / tt:.2f}" + ("" if same else " *"),
                f"{ts / tt:.2f}" + ("" if same else " *"),
                f"{best:.2f}" + ("" if same else " *"),
            ]
            if not same:
                problems_note.append(
                    f"* {res['name']}: torchvision.models.{torch_res['model']} is not the same network "
                    f"({torch_res['params']:,} parameters vs the spec's {res['params']:,}); compare with care"
                )
        row.append("{:.1f}-{:.1f}".format(*res["load"]))
        perf_rows.append(row)
        mem_rows.append(
            [
                res["name"],
                mib(res["maxrss_bytes"]) + ("" if res["peak_reset"] else " (incl. setup)"),
                mib(res["rss_before_forward"]),
                mib(res["maxrss_bytes"] - res["rss_before_forward"]),
                mib(res["session_maxrss_bytes"]),
                mib(res["peak_activation_bytes"]),
                res["peak_at"],
                mib(4 * res["params"]),
                mib(res["setup_maxrss_bytes"]),
                mib(torch_res["maxrss_bytes"]) if torch_res and "maxrss_bytes" in torch_res else "-",
            ]
        )

    print()
    print(
        fmt_table(
            [
                "model",
                "input",
                "BLAS thr",
                "GMACs",
                "forward ms",
                "session ms",
                "session min",
                "GFLOP/s",
                "matmul GFLOP/s (before/after)",
                "ratio",
                "torch ms",
                "torch min ms",
                "forward/torch",
                "session/torch",
                "ratio of mins",
                "load (1 min)",
            ],
            perf_rows,
        )
    )
    print()
    print(
        fmt_table(
            [
                "model",
                "fwd peak RSS MiB",
                "RSS before fwd",
                "fwd growth",
                "with session",
                "static peak act.",
                "peak at",
                "weights",
                "setup peak RSS",
                "torch peak RSS",
            ],
            mem_rows,
        )
    )
    print()
    print(
        f"forward ms = median of {args.runs} model.forward(x, weights) calls after {args.warmup} warm-up; "
        "session ms = the same with session = model.session(weights), session(x), which keeps what kernels "
        "derive from the weights alone (as torch's module keeps its weights); GFLOP/s = 2 * MACs / session "
        f"ms; baseline = median float32 {BASELINE_SIZE}x{BASELINE_SIZE} matmul GFLOP/s measured in the same "
        "child right before and after the model; ratio = GFLOP/s / baseline. forward/torch and session/torch "
        "= ratios of median times; ratio of mins = the session's best run / torch's best run (all rounds pooled)."
    )
    print(
        "memory in MiB. fwd peak RSS = ru_maxrss (getrusage) of the model's own child process over the "
        "warm-up and timed forward passes (high-water mark reset after setup): interpreter, weights, "
        "activations and kernel temporaries; fwd growth = that minus the RSS just before; with session = "
        "ru_maxrss after the session's passes too (its copy of the weights and its kept tensors); static peak act. "
        "= archspec's peak_activation_bytes (live activations only, batch 1); setup peak RSS = ru_maxrss "
        "over load + init_weights (float64 draws cast to float32)."
    )
    for res in results:
        torch_res = res.get("torch") or {}
        if "version" in torch_res:
            print(
                f"torch: {torch_res['version']}, {torch_res['threads']} threads, weights=None, eval, no_grad, "
                "same input shape; torch peak RSS is that whole process's ru_maxrss (model construction included)"
            )
            break
    for note in problems_note:
        print(note)

    for res in results:
        if "layers" not in res:
            continue
        layers = res["layers"]
        total = sum(layer["seconds"] for layer in layers)
        print(f"\nper-layer profile of {res['name']} (min of 3 runs; sum {total * 1e3:,.0f} ms)")
        by_op: dict[str, list[float]] = {}
        for layer in layers:
            entry = by_op.setdefault(layer["op"], [0.0, 0])
            entry[0] += layer["seconds"]
            entry[1] += layer["macs"]
        print(
            fmt_table(
                ["op", "ms", "share", "GFLOP/s"],
                [
                    [op, f"{s * 1e3:,.1f}", f"{s / total:.0%}", f"{2 * m / s / 1e9:.1f}" if m else "-"]
                    for op, (s, m) in sorted(by_op.items(), key=lambda kv: -kv[1][0])
                ],
            )
        )
        print()
        print(
            fmt_table(
                ["layer", "op", "ms", "share", "GFLOP/s"],
                [
                    [
                        layer["name"],
                        layer["op"],
                        f"{layer['seconds'] * 1e3:,.1f}",
                        f"{layer['seconds'] / total:.0%}",
                        f"{2 * layer['macs'] / layer['seconds'] / 1e9:.1f}" if layer["macs"] else "-",
                    ]
                    for layer in sorted(layers, key=lambda la: -la["seconds"])[:12]
                ],
            )
        )

    for problem in problems:
        print(f"error: {problem}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
