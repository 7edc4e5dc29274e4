"""How analysis time grows with the number of nodes: load + build the graph + analyze, per node.

    python benchmarks/scale.py [--sizes 1000,2000,5000,10000,20000] [--repeats 3] [--profile N]

Generates three families of specs as YAML text (written to a temporary folder, then loaded with
archspec.load like any spec) at each size:

- chain:    conv 3x3 -> relu, repeated (the simplest long graph);
- residual: bottleneck-free residual units (conv, bn, relu, conv, bn, add, relu) written as one block
            used with `repeat:` (exercises block expansion and merges);
- densenet: DenseNet-like concat fan-in (bn, relu, conv, concat of the running features and the new
            ones), with a 1x1 transition every 8 layers so channels stay small (nested blocks).

For every spec it prints the median wall and CPU time of load+analyze (CPU time of this process is
the steadier figure on a shared machine), the CPU time per node, and at the end the slope: time per
node at the largest size over time per node at the smallest (1.0 = linear). The
issue's target is <= 1 s at 20,000 nodes and a flat slope. A measurement, not a test.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import archspec

HEADER = "name: {name}\ninput: [4, 8, 8]\nmetadata: {{source: benchmarks/scale.py}}\n"


def chain(nodes: int) -> str:
    lines = [HEADER.format(name=f"chain{nodes}"), "nodes:"]
    for i in range(nodes // 2):
        lines.append(f"  - {{name: c{i}, op: conv2d, out_channels: 4, kernel: 3, padding: 1}}")
        lines.append(f"  - {{name: r{i}, op: relu}}")
    return "\n".join(lines) + "\n"


def residual(nodes: int) -> str:
    units = nodes // 8  # the node limit counts each block use too: 8 per unit
    text = HEADER.format(name=f"residual{nodes}")
    text += """blocks:
  unit:
    nodes:
      - {name: conv1, op: conv2d, out_channels: 4, kernel: 3, padding: 1, bias: false}
      - {name: bn1, op: batch_norm}
      - {name: relu1, op: relu}
      - {name: conv2, op: conv2d, out_channels: 4, kernel: 3, padding: 1, bias: false}
      - {name: bn2, op: batch_norm}
      - {name: add, op: add, inputs: [bn2, input]}
      - {name: relu, op: relu}
nodes:
"""
    # repeat is limited to 1,000 per use: several uses in a row.
    for i, start in enumerate(range(0, units, 1000)):
        text += f"  - {{name: stage{i}, block: unit, repeat: {min(1000, units - start)}}}\n"
    return text


def densenet(nodes: int) -> str:
    # Blocks keep the file under the 1 MiB limit: a stage is 8 dense layers and a 1x1 transition
    # (33 op nodes, 43 counting block uses against the node limit).
    stages = max(1, nodes // 43)
    text = HEADER.format(name=f"densenet{nodes}")
    text += """blocks:
  dense:
    nodes:
      - {name: norm, op: batch_norm}
      - {name: relu, op: relu}
      - {name: conv, op: conv2d, out_channels: 2, kernel: 3, padding: 1, bias: false}
      - {name: cat, op: concat, inputs: [input, conv]}
  stage:
    nodes:
      - {name: layers, block: dense, repeat: 8}
      - {name: transition, op: conv2d, out_channels: 4, kernel: 1}
nodes:
"""
    for i, start in enumerate(range(0, stages, 1000)):
        text += f"  - {{name: part{i}, block: stage, repeat: {min(1000, stages - start)}}}\n"
    return text


FAMILIES = {"chain": chain, "residual": residual, "densenet": densenet}


def time_spec(path: Path, repeats: int) -> tuple[float, float, int]:
    """Median wall time and median CPU time of this process (the latter is steadier on a shared machine)."""
    walls, cpus, count = [], [], 0
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        analysis = archspec.load(str(path)).analyze()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
        count = len(analysis.layers)
    return statistics.median(walls), statistics.median(cpus), count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="1000,2000,5000,10000,20000", help="node counts, comma-separated")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per spec (median reported)")
    parser.add_argument("--families", default=",".join(FAMILIES), help="which generators to run")
    parser.add_argument("--profile", type=int, metavar="N", help="profile load+analyze of each family at N nodes")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    families = args.families.split(",")
    with tempfile.TemporaryDirectory() as tmp:
        if args.profile:
            import cProfile
            import pstats

            for family in families:
                path = Path(tmp) / f"{family}.yaml"
                path.write_text(FAMILIES[family](args.profile))
                profiler = cProfile.Profile()
                profiler.runcall(lambda p=path: archspec.load(str(p)).analyze())
                print(f"--- {family}, {args.profile} nodes")
                pstats.Stats(profiler).sort_stats("tottime").print_stats(12)
            return 0
        print(f"{'family':<10} {'nodes':>7} {'wall':>10} {'CPU':>10} {'CPU per node':>13}")
        slopes = {}
        for family in families:
            per_node = []
            for size in sizes:
                path = Path(tmp) / f"{family}{size}.yaml"
                path.write_text(FAMILIES[family](size))
                wall, cpu, count = time_spec(path, args.repeats)
                per_node.append(cpu / count)
                print(f"{family:<10} {count:>7,} {wall:>8.3f} s {cpu:>8.3f} s {cpu / count * 1e6:>10.1f} us")
            slopes[family] = per_node[-1] / per_node[0]
        print()
        for family, slope in slopes.items():
            print(f"{family}: CPU time per node at {sizes[-1]:,} / at {sizes[0]:,} nodes = {slope:.2f} (1.00 = linear)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
