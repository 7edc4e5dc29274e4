"""Shapes, params, buffers, MACs, activations and live memory, measured by the forward pass."""

from __future__ import annotations

import numpy as np

from archspec.analysis.analyze import Analysis
from archspec.analysis.memory import live_curve
from archspec.model import Model
from archspec.reference import forward as reference
from archspec.verify.checks import Check


def check_forward(model: Model, analysis: Analysis, seed: int) -> list[Check]:
    # Check the memory before allocating anything: weights (drawn in float64, kept in float32) and
    # a batch-2 forward pass.
    batch2 = model.analyze(analysis.input_shape, batch=2)
    estimate = 3 * analysis.totals.param_bytes + reference.forward_memory_bytes(batch2)
    reference.guard_memory(estimate, f"verifying {analysis.name}")
    rng = np.random.default_rng(seed + 1)
    weights = model.init_weights(seed, analysis.input_shape)
    x = rng.normal(size=(2, *analysis.input_shape)).astype(np.float32)  # batch 2: per-image counts
    live: dict[str, int] = {}
    measured = reference.measure(model.graph, x, weights, live)
    checks = {k: Check(k) for k in ("output shapes", "params", "buffers", "MACs", "activations")}
    for layer in analysis.layers:
        m = measured[layer.name]
        pairs = {
            "output shapes": (layer.output_shape, m.shape),
            "params": (layer.params, m.params),
            "buffers": (layer.buffers, m.buffers),
            "MACs": (layer.macs, m.macs),
            "activations": (layer.activations, m.activations),
        }
        for key, (static, real) in pairs.items():
            checks[key].checked += 1
            if static != real:
                checks[key].fail(f"{layer.name}: static {static}, measured {real}")
    totals = Check("totals")
    main = [layer.name for layer in analysis.layers if not layer.train_only]
    for key, static in (("params", analysis.totals.params), ("macs", analysis.totals.macs)):
        real = sum(getattr(measured[n], key) for n in main)
        totals.checked += 1
        if real != static:
            totals.fail(f"total {key}: static {static}, measured {real}")
    return [*checks.values(), totals, _check_peak_memory(model, analysis, live, batch=x.shape[0])]


def _check_peak_memory(model: Model, analysis: Analysis, live: dict[str, int], batch: int) -> Check:
    """The static liveness schedule (buffers freed after their last reader, views sharing their
    input's buffer) against the bytes of real arrays alive after every node of the forward pass.
    The forward pass runs in-place ops (ReLU) in place under the same rule, so this is the reported peak."""
    check = Check("live memory (every step)")
    shapes = model.graph.infer_shapes(analysis.input_shape)
    curve = live_curve(model.graph, shapes, list(model.graph.order))
    for name, real in live.items():
        check.checked += 1
        static = curve[name] * batch * reference.ITEM_BYTES
        if static != real:
            check.fail(f"after {name}: static {static:,} B live, measured {real:,} B")
    return check
