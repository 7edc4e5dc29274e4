"""The issue's start-up and in-process targets, as CPU time (the steady figure on a shared machine).

    python benchmarks/startup.py [SPEC] [--runs N]

For SPEC (default specs/resnet152.yaml) it prints, each the best of --runs:

- `archspec analyze SPEC` as a whole process (CPU time of the child: user + system), target 0.3 s;
- the floor under it: a Python that only imports archspec's dependencies (NumPy, pydantic with the
  modules archspec uses, PyYAML), and a bare `python -c pass`;
- `archspec.load(SPEC).analyze()` in a warm process, split into load and analyze, target 5 ms (best of
  3 x --runs, at least 60: a few milliseconds each, and the best of few is noisy on a shared machine).

Wall times and the load average are printed beside them: on a loaded machine wall time is several
times CPU time. A measurement, not a test. Note that start-up includes compiling archspec's sources
when Python may not write bytecode caches (PYTHONDONTWRITEBYTECODE): the children run with the
environment as it is, which the output says.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEPENDENCIES = "import pydantic, pydantic.fields, pydantic.types, yaml"


def child_cpu(args: list[str], runs: int) -> tuple[float, float]:
    """Best CPU time (user + system) and best wall time of `runs` runs of a child process."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    cpu, wall = [], []
    for _ in range(runs):
        before, start = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
        subprocess.run(args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
        wall.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return min(cpu), min(wall)


def in_process(spec: str, runs: int) -> tuple[float, float, float]:
    """Best CPU times (load + analyze, load alone, analyze alone) in this warm process."""
    sys.path.insert(0, str(ROOT))
    import archspec

    archspec.load(spec).analyze()  # warm: op validators built, shipped libraries read once
    total, load, analyze = [], [], []
    for _ in range(runs):
        start = time.process_time()
        model = archspec.load(spec)
        loaded = time.process_time()
        model.analyze()
        end = time.process_time()
        total.append(end - start)
        load.append(loaded - start)
        analyze.append(end - loaded)
    return min(total), min(load), min(analyze)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default="specs/resnet152.yaml")
    parser.add_argument("--runs", type=int, default=8)
    args = parser.parse_args()
    spec = str((ROOT / args.spec) if not Path(args.spec).is_absolute() else args.spec)
    python = sys.executable
    bytecode = "not written (PYTHONDONTWRITEBYTECODE)" if os.environ.get("PYTHONDONTWRITEBYTECODE") else "cached"
    print(f"load average before: {os.getloadavg()[0]:.1f}; bytecode {bytecode}; best of {args.runs}")
    rows = [
        ("archspec analyze (whole process)", child_cpu([python, "-m", "archspec", "analyze", spec], args.runs), 0.3),
        ("  floor: import the dependencies", child_cpu([python, "-c", DEPENDENCIES], args.runs), None),
        ("  floor: bare interpreter", child_cpu([python, "-c", "pass"], args.runs), None),
    ]
    for label, (cpu, wall), target in rows:
        goal = f"  (target {target} s: {'met' if cpu <= target else 'not met'})" if target else ""
        print(f"{label:<36} CPU {cpu:6.3f} s  wall {wall:6.3f} s{goal}")
    repeats = max(60, 3 * args.runs)
    total, load, analyze = in_process(spec, repeats)
    verdict = "met" if total <= 0.005 else "not met"
    print(
        f"{'load + analyze (in process)':<36} CPU {total * 1e3:6.1f} ms (load {load * 1e3:.1f}, analyze"
        f" {analyze * 1e3:.1f}; best of {repeats}) (target 5 ms: {verdict})"
    )
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
