"""Stochastic depth: sampled drop masks, with the dropped branches really skipped."""

from __future__ import annotations

import math

import numpy as np

from archspec.analysis.analyze import Analysis
from archspec.graph import INPUT
from archspec.model import Model
from archspec.ops import MatMul
from archspec.reference import forward as reference
from archspec.verify.checks import Check


def check_stochastic_depth(model: Model, analysis: Analysis, seed: int, samples: int) -> Check | None:
    sd = analysis.stochastic_depth
    if sd is None:
        return None
    graph = model.graph
    check = Check(f"stochastic depth ({samples} sampled drop masks)")
    rng = np.random.default_rng(seed + 2)
    weights = model.init_weights(seed)
    x = rng.normal(size=(1, *analysis.input_shape)).astype(np.float32)
    grouped = reference.group_weights(weights, graph)
    drops = [name for name, _, _ in sd.branches]
    survival = np.array([p for _, p, _ in sd.branches])
    macs_seen, active_seen = [], []
    for _ in range(samples):
        kept = rng.random(len(drops)) < survival
        dropped = {d for d, k in zip(drops, kept, strict=True) if not k}
        needed = graph.needed_nodes(dropped)
        tensors = {INPUT: x}
        total = 0
        for name in graph.order:
            if name not in needed:
                continue
            if name in dropped:
                tensors[name] = np.float32(0.0)  # the branch is skipped; the add sees zero
                continue
            op = graph.op(name)
            mm = MatMul()
            tensors[name] = op.forward(
                [tensors[i] for i in op.inputs], reference.Weights(grouped.get(name, {}), name), mm
            )
            total += mm.macs
        macs_seen.append(total)
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
