"""Activation memory at inference: every output summed (what tables print), and the peak of what is
actually alive when tensors are freed after their last use (what a runtime needs)."""

from __future__ import annotations

from archspec.graph import INPUT, Graph, numel
from archspec.ops import Shape

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}

# Element-wise ops that a runtime can run in place when their input dies at that node
# (PyTorch's ReLU(inplace=True), dropout at inference, and no-ops).
IN_PLACE_OPS = {"relu", "dropout", "identity"}


def last_uses(graph: Graph, nodes: list[str]) -> dict[str, str]:
    """Tensor -> the node at which it is read for the last time (in execution order)."""
    last: dict[str, str] = {}
    for name in nodes:
        for i in graph.op(name).inputs:
            last[i] = name
    return last


def peak_live_elements(graph: Graph, shapes: dict[str, Shape], nodes: list[str]) -> tuple[int, str]:
    """Peak number of live activation elements (per image) and the node where it happens.

    Tensors are freed after their last reader; graph outputs stay alive to the end; in-place ops
    reuse their input's buffer when that input dies at them.
    """
    keep = set(graph.outputs) | set(graph.train_outputs)
    last = last_uses(graph, nodes)
    live = {INPUT: numel(shapes[INPUT])}
    peak, where = live[INPUT], INPUT
    for name in nodes:
        op = graph.op(name)
        reuse = (
            op.op in IN_PLACE_OPS
            and len(op.inputs) == 1
            and last.get(op.inputs[0]) == name
            and op.inputs[0] not in keep
            and op.inputs[0] != INPUT
        )
        if reuse:
            live[name] = live.pop(op.inputs[0])
        else:
            live[name] = numel(shapes[name])
        total = sum(live.values())
        if total > peak:
            peak, where = total, name
        for i in set(op.inputs):
            if i in live and last.get(i) == name and i not in keep:
                del live[i]
    return peak, where
