"""Receptive fields measured by propagating band images through the real kernels.

Each op runs its own NumPy kernel (one channel in, one out) on 0/1 images; a unit is reached when its
output differs from the output on an all-zero input. See `probe_spans` and `_check_enlarged`.
"""

from __future__ import annotations

import numpy as np

from archspec.analysis.analyze import Analysis
from archspec.analysis.receptive_field import EMPTY, ReceptiveField, exact_spans
from archspec.errors import SpecError
from archspec.graph import INPUT, Graph, last_readers, upstream
from archspec.ops import MatMul, Weights
from archspec.ops.base import broadcast_inputs
from archspec.verify.checks import Check

PROBE_CHUNK_ELEMENTS = 4_000_000  # input elements per probe batch: bounds the probe's memory


def _probe_weights(op, in_shapes) -> dict[str, np.ndarray]:
    """Positive weights (varying along the output axis), zero-mean unit-variance BN statistics."""
    tensors = {}
    for key, shape in op.param_shapes(in_shapes).items():
        ramp = 1.0 + np.arange(shape[0], dtype=np.float32) / shape[0]
        tensors[key] = np.broadcast_to(ramp.reshape(-1, *([1] * (len(shape) - 1))), shape).astype(np.float32)
    for key, shape in op.buffer_shapes(in_shapes).items():
        tensors[key] = (np.zeros if key == "running_mean" else np.ones)(shape, dtype=np.float32)
    return tensors


def _channels(mask: np.ndarray, count: int) -> np.ndarray:
    """A (N, 1, ...) mask repeated over `count` channels, channel j scaled by 1 + j / count."""
    if count == 1:
        return mask
    scale = (1.0 + np.arange(count, dtype=np.float32) / count).reshape(1, count, *([1] * (mask.ndim - 2)))
    return mask * scale


def probe_masks(graph: Graph, images: np.ndarray, nodes: list[str], *, context: bool = True) -> dict[str, np.ndarray]:
    """Which units each image reaches: for every node, a boolean (N, H, W) map (flat: (N, 1, 1)).

    Each op runs its real kernel (as `OpBase.probe` describes) on 0/1 masks; a unit is reached when
    its output differs from the op's output on all-zero input. Channels are merged after every op,
    since a tensor's receptive field is the union over its channels. With context=False a broadcast
    gate is fed zeros in both runs, so only the local field is measured.
    """
    masks: dict[str, np.ndarray] = {INPUT: images[:, None].astype(np.float32)}
    last = last_readers(graph, nodes)
    out: dict[str, np.ndarray] = {}
    for name in nodes:
        node_op = graph.op(name)
        op, count = node_op.probe()
        xs = [_channels(masks[i], count) for i in node_op.inputs]
        bases = [np.zeros_like(x[:1]) for x in xs]
        if not context:
            gates = broadcast_inputs([tuple(x.shape[1:]) for x in xs])
            xs = [np.zeros_like(x) if gate else x for x, gate in zip(xs, gates, strict=True)]
        tensors = _probe_weights(op, [tuple(x.shape[1:]) for x in xs])
        y = op.forward(xs, Weights(tensors, name), MatMul())
        base = op.forward(bases, Weights(tensors, name), MatMul())
        reached = y != base
        if reached.ndim == 2:  # flat features: keep them apart, with unequal values (for softmax)
            ramp = 1.0 + np.arange(reached.shape[1], dtype=np.float32) / reached.shape[1]
            masks[name] = reached * ramp
            if reached.shape[1] == 1:  # a lone feature: pad one, or a softmax could not show a change
                masks[name] = np.concatenate([masks[name], np.zeros_like(masks[name])], axis=1)
            out[name] = reached.any(axis=1)[:, None, None]
        else:
            masks[name] = reached.any(axis=1, keepdims=True).astype(np.float32)
            out[name] = masks[name][:, 0] > 0
        for i in set(node_op.inputs):
            if last.get(i) == name and i != INPUT:
                masks.pop(i, None)
    return out


def probe_spans(
    graph: Graph, size: tuple[int, int], axis: int, nodes: list[str], *, context: bool = True
) -> dict[str, np.ndarray]:
    """Measured span [lo, hi] of every unit along `axis`, for each node: array (units, 2), -1 = none.

    Band images: 'low t' lights every pixel with coordinate <= t along `axis`, 'high t' those >= t.
    A unit's lowest input pixel is the first t whose low band reaches it; its highest, the last t
    whose high band does. Monotone in t, so holes (e.g. 1x1 stride-2 convs) do not matter.
    """
    length = size[axis]
    coords = np.arange(length)
    bands = np.concatenate([coords[None, :] <= coords[:, None], coords[None, :] >= coords[:, None]])  # (2L, L)
    reached = _probe_bands(graph, (1, *size), axis, bands, nodes, nodes, context=context)
    spans = {}
    for name, hits in reached.items():  # hits: (2L, units)
        low, high = hits[:length], hits[length:]
        lo = np.where(low.any(axis=0), low.argmax(axis=0), -1)
        hi = np.where(high.any(axis=0), length - 1 - high[::-1].argmax(axis=0), -1)
        spans[name] = np.stack([lo, hi], axis=1)
    return spans


def _compare_theoretical(rf: ReceptiveField, spans: np.ndarray, axis: int, length: int) -> tuple[int, list[str]]:
    """(interior units checked, problems): where the textbook field lies inside the image, the
    measured field must equal it exactly."""
    interior, problems = 0, []
    for unit, (lo, hi) in enumerate(spans):
        s_lo, s_hi = rf.span(axis, unit)
        if 0 <= s_lo and s_hi <= length - 1:
            interior += 1
            if (lo, hi) != (s_lo, s_hi):
                problems.append(f"unit {unit}: static [{s_lo}, {s_hi}], measured [{lo}, {hi}]")
    return interior, problems


def _expected_measurement(along: dict[str, np.ndarray], across: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A band probe sees a unit row only if some unit across the other axis sees the image at all
    (a 1x1 convolution whose window lies in the padding sees nothing): fields are separable."""
    return {
        name: spans if (across[name][:, 0] != EMPTY).any() else np.full_like(spans, EMPTY)
        for name, spans in along.items()
    }


def _compare_exact(static: np.ndarray, measured: np.ndarray) -> list[str]:
    """Every unit, border units included, against the exact (clipped) static span."""
    if static.shape != measured.shape:
        return [f"{len(static)} static units, {len(measured)} measured"]
    bad = np.nonzero((static != measured).any(axis=1))[0]
    return [f"unit {u}: exact static {static[u].tolist()}, measured {measured[u].tolist()}" for u in bad[:3]]


def _agnostic_nodes(graph: Graph) -> list[str]:
    """Nodes whose receptive field does not depend on the input size (nothing size-dependent upstream)."""
    bad = {n for n in graph.order if graph.op(n).size_dependent}
    bad |= graph.descendants(*bad)
    return [n for n in graph.order if n not in bad]


def _thin_size(graph: Graph, nodes: list[str], axis: int, length: int, actual: tuple[int, int, int]) -> tuple | None:
    """The smallest extent of the other axis that the nodes accept with `length` along `axis`."""
    for other in range(1, actual[2 - axis] + 1):
        shape = [actual[0], 0, 0]
        shape[1 + axis], shape[2 - axis] = length, other
        try:
            shapes = graph.infer_shapes(tuple(shape), nodes)
        except SpecError:  # too small for some node: try a larger extent
            continue
        # Locally (gates fed zeros, as the probes measure the local field): a gate's global context
        # must not count as seeing the thin axis when the node's own window lies in the padding.
        across = exact_spans(graph, shapes, 1 - axis, nodes, context=False)
        if all((across[n][:, 0] != EMPTY).any() for n in nodes):  # every node sees the thin axis
            return tuple(shape)
    return None


def check_receptive_fields(graph: Graph, analysis: Analysis) -> Check:
    """Measured spans of every unit against (a) the exact clipped static spans, for every node and
    unit, and (b) the textbook field on units where it lies inside the image. Nodes with no such
    unit at the spec's size are probed again on an input enlarged along that axis.

    A graph with broadcast gates (squeeze-and-excitation) is probed twice: with the gates fed zeros
    (the local field, which (a) and (b) check) and with them live (every unit then also depends on
    what the gate pooled: checked against the exact spans with context, which proves the flag)."""
    check = Check("receptive fields")
    shape = analysis.input_shape
    size = (shape[1], shape[2])
    fields = {layer.name: layer.receptive_field for layer in analysis.layers}
    nodes = list(graph.order)
    gated = any(layer.receptive_field.context for layer in analysis.layers)
    pending: dict[int, list[str]] = {0: [], 1: []}
    for axis in range(2):
        # Only the measured axis needs its real length; the other is cut to the least that works.
        probe_shape = _thin_size(graph, nodes, axis, size[axis], shape) or shape
        shapes = graph.infer_shapes(probe_shape)
        probe_size = (probe_shape[1], probe_shape[2])
        measured = probe_spans(graph, probe_size, axis, nodes, context=False)
        exact = _expected_measurement(
            exact_spans(graph, shapes, axis, nodes, context=False),
            exact_spans(graph, shapes, 1 - axis, nodes, context=False),
        )
        if gated:
            live = probe_spans(graph, probe_size, axis, nodes, context=True)
            exact_live = _expected_measurement(
                exact_spans(graph, shapes, axis, nodes), exact_spans(graph, shapes, 1 - axis, nodes)
            )
            for name in nodes:
                check.checked += 1
                for problem in _compare_exact(exact_live[name], live[name]):
                    check.fail(f"{name} axis {axis} (gates live): {problem}")
        for name in nodes:
            check.checked += 1
            for problem in _compare_exact(exact[name], measured[name]):
                check.fail(f"{name} axis {axis}: {problem}")
            rf = fields[name]
            if rf.kind != "local":
                continue
            interior, problems = _compare_theoretical(rf, measured[name], axis, size[axis])
            for problem in problems:
                check.fail(f"{name} axis {axis}: {problem}")
            if not interior:
                pending[axis].append(name)
    agnostic = set(_agnostic_nodes(graph))
    for axis, names in pending.items():
        enlarge = [n for n in names if n in agnostic]
        for n in names:
            if n not in agnostic:
                check.skipped.append(f"{n} axis {axis}: textbook field exceeds the input after a size-dependent op")
        if enlarge:
            _check_enlarged(graph, analysis, fields, enlarge, axis, check)
    return check


MAX_ENLARGED_NODES = 8  # nodes whose textbook field is certified on an enlarged input, per axis


def _spread(names: list[str], count: int) -> list[str]:
    """Up to `count` names spread along the list, always including the last (the deepest field)."""
    if len(names) <= count:
        return names
    picks = {round(i * (len(names) - 1) / (count - 1)) for i in range(count)}
    return [names[i] for i in sorted(picks)]


def _check_enlarged(graph: Graph, analysis: Analysis, fields, names: list[str], axis: int, check: Check) -> None:
    """Certify the textbook field of nodes whose field exceeds the spec's input, on an input
    enlarged along `axis`: for two neighbouring units u, the band ending just before the predicted
    lowest pixel must not reach u and the band ending at it must (likewise for the highest pixel).
    By monotonicity that proves lo and hi exactly, and two units prove the stride."""
    chosen = _spread(names, MAX_ENLARGED_NODES)
    length = max(fields[n].padding()[axis] + fields[n].size()[axis] + 2 * fields[n].stride()[axis] for n in chosen)
    wanted = set(chosen)
    needed = upstream(graph.nodes, wanted)  # the chosen nodes and everything they read from
    prefix = [n for n in graph.order if n in needed]
    probe_shape = _thin_size(graph, prefix, axis, length, analysis.input_shape)
    if probe_shape is None:
        check.skipped.extend(f"{n} axis {axis}: no valid enlarged probe" for n in chosen)
        return
    tests = []  # (node, unit, band kind, t, expected reach)
    for n in chosen:
        rf = fields[n]
        interior = [u for u in range(length) if rf.span(axis, u)[0] >= 0 and rf.span(axis, u)[1] <= length - 1]
        for u in interior[:2]:
            lo, hi = rf.span(axis, u)
            tests += [(n, u, "low", lo, True), (n, u, "high", hi, True)]
            if lo > 0:
                tests.append((n, u, "low", lo - 1, False))
            if hi < length - 1:
                tests.append((n, u, "high", hi + 1, False))
        if len(interior) < 2:
            check.skipped.append(f"{n} axis {axis}: fewer than two whole units at {length} px")
    bands = sorted({(kind, t) for _, _, kind, t, _ in tests})
    index = {band: i for i, band in enumerate(bands)}
    coords = np.arange(length)
    rows = np.array([coords <= t if kind == "low" else coords >= t for kind, t in bands])
    reached = _probe_bands(graph, probe_shape, axis, rows, prefix, chosen, context=False)
    failed = set()
    for n, u, kind, t, expect in tests:
        if bool(reached[n][index[(kind, t)], u]) != expect:
            failed.add(n)
            check.fail(
                f"{n} axis {axis} (probe {length} px): unit {u}: band {kind} {t} "
                f"{'did not reach' if expect else 'reached'} it; textbook field {list(fields[n].span(axis, u))}"
            )
    check.checked += len({n for n, *_ in tests})
    check.skipped.append(
        f"info: axis {axis}: {len(names)} fields are larger than the {analysis.input_shape[1 + axis]}-px input; "
        f"all were checked exactly as clipped there, and {len(chosen)} (down to {chosen[-1]}) were certified "
        f"unclipped on a {length}-px input"
    )


def _probe_bands(
    graph: Graph, shape, axis: int, rows: np.ndarray, nodes: list[str], keep: list[str], *, context: bool = True
):
    """Reach of each band (rows: (bands, length) booleans along `axis`) at every unit of `keep`."""
    other = shape[2 - axis]
    per_chunk = max(1, PROBE_CHUNK_ELEMENTS // (shape[1] * shape[2]))
    parts: dict[str, list[np.ndarray]] = {n: [] for n in keep}
    for start in range(0, len(rows), per_chunk):
        chunk = rows[start : start + per_chunk]
        if axis == 0:
            images = np.repeat(chunk[:, :, None], other, axis=2)
        else:
            images = np.repeat(chunk[:, None, :], other, axis=1)
        masks = probe_masks(graph, images, nodes, context=context)
        for n in keep:
            parts[n].append(masks[n].any(axis=2 - axis))
    return {n: np.concatenate(p) for n, p in parts.items()}
