"""Stochastic depth: sampled drop masks, with the dropped branches really skipped."""

from __future__ import annotations

import math

import numpy as np

from archspec.analysis.analyze import Analysis
from archspec.model import Model
from archspec.reference import forward as reference
from archspec.verify.checks import Check


def check_stochastic_depth(model: Model, analysis: Analysis, seed: int, samples: int) -> Check | None:
    sd = analysis.stochastic_depth
    if sd is None:
        return None
    graph = model.graph
    check = Check(f"stochastic depth ({samples} sampled drop masks)")
    rng = np.random.default_rng(seed + 2)
    weights = model.init_weights(seed, analysis.input_shape)
    x = rng.normal(size=(1, *analysis.input_shape)).astype(np.float32)
    drops = [name for name, _, _ in sd.branches]
    shapes = {layer.name: layer.output_shape for layer in analysis.layers}
    survival = np.array([p for _, p, _ in sd.branches])
    macs_seen, active_seen = [], []
    macs: list[int] = []  # MACs of each node run in the current sample
    for _ in range(samples):
        kept = rng.random(len(drops)) < survival
        dropped = {d for d, k in zip(drops, kept, strict=True) if not k}
        needed = graph.needed_nodes(dropped)
        # The dropped branches are really skipped: only the nodes still needed run, and a dropped node yields zero.
        reference.run(
            graph,
            x,
            weights,
            nodes=[n for n in graph.order if n in needed],
            dropped={d: shapes[d] for d in dropped},
            on_output=lambda _name, _out, _w, mm: macs.append(mm.macs),
        )
        macs_seen.append(sum(macs))
        macs.clear()
        active_seen.append(int(kept.sum()))
    mean = float(np.mean(macs_seen))
    branch_macs = np.array([m for _, _, m in sd.branches], dtype=float)
    std_error = math.sqrt(float(np.sum(survival * (1 - survival) * branch_macs**2)) / samples)
    check.checked += 2
    if abs(mean - sd.expected_train_macs) > 4 * std_error:
        check.fail(
            f"mean measured MACs {mean:,.0f} vs expected {sd.expected_train_macs:,.0f} (> 4 standard errors = {4 * std_error:,.0f})"
        )
    active_error = math.sqrt(float(np.sum(survival * (1 - survival))) / samples)
    if abs(np.mean(active_seen) - sd.expected_active_blocks) > 4 * active_error:
        check.fail(f"mean active blocks {np.mean(active_seen):.3f} vs expected {sd.expected_active_blocks:.3f}")
    check.skipped.append(
        f"info: mean MACs {mean:,.0f} vs expected {sd.expected_train_macs:,.0f} "
        f"(tolerance 4 standard errors = {4 * std_error:,.0f}); mean active {np.mean(active_seen):.3f} vs {sd.expected_active_blocks:.3f}"
    )
    return check
