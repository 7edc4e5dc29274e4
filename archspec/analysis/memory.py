"""Activation memory at inference: every output summed (what tables print), and the peak of what is
actually alive when tensors are freed after their last use (what a runtime needs).

The peak is computed over *buffers*, not tensors: ops marked `view` (flatten, dropout at inference,
identity) return their input's buffer, as in PyTorch, and ops marked `in_place` (ReLU) overwrite
their input when nothing else still needs it (PyTorch's ReLU(inplace=True)). The reference forward
pass follows the same rules, and `verify` compares its live buffers with this schedule after every node.
"""

from __future__ import annotations

import math

from archspec.graph import INPUT, Graph, last_readers
from archspec.ops import Shape

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


def live_curve(
    graph: Graph,
    shapes: dict[str, Shape],
    nodes: list[str],
    *,
    in_place: bool = True,
) -> dict[str, int]:
    """Live activation elements (per image) just after each node ran, before its inputs are released.

    A buffer is live while any tensor using it has a reader still to run, or is a graph output.
    The live total is kept as a running sum (a buffer is added when created, removed when its last
    tensor dies), so the curve costs O(nodes + edges), not O(nodes x buffers). Analysis steps the same
    curve inside its walk over the whole graph (analyze._layers); both are held to the definition by
    tests/test_analysis_walk.py.
    """
    keep = set(graph.outputs) | set(graph.train_outputs)
    last = last_readers(graph, nodes)
    ops = graph.nodes
    prod = math.prod
    # Tensor -> its buffer, as [live tensors in it, elements]. The tensors in a buffer are counted: each
    # dies once (after its last reader, or after itself when nobody reads it), and only graph outputs are
    # never released. The caller's input is a buffer of its own.
    live = prod(shapes[INPUT])
    input_buffer = [1, live]
    buffer_of = {INPUT: input_buffer}
    curve = {INPUT: live}
    for name in nodes:
        op = ops[name].op
        inputs = op.inputs
        if len(inputs) == 1:
            source = inputs[0]
            buffer = buffer_of[source]
            dies = last[source] == name and source not in keep
            shares = op.view or (
                in_place
                and dies
                and op.in_place
                and buffer is not input_buffer  # the caller's input is never overwritten
                and buffer[0] == 1  # no live view shares the buffer (source is in it)
            )
            released = (source,) if dies else ()
        else:
            shares = False
            released = [i for i in set(inputs) if last[i] == name and i not in keep]
        if shares:
            buffer_of[name] = buffer
            buffer[0] += 1
        else:
            elements = prod(shapes[name])
            buffer_of[name] = [1, elements]
            live += elements
        curve[name] = live
        if name not in last and name not in keep:  # read by nobody
            released = (*released, name)
        for i in released:
            buffer = buffer_of[i]
            buffer[0] -= 1
            if not buffer[0]:
                live -= buffer[1]
    return curve


def peak_live_elements(
    graph: Graph, shapes: dict[str, Shape], nodes: list[str], *, in_place: bool = True
) -> tuple[int, str]:
    """Peak number of live activation elements (per image) and the first node where it happens."""
    curve = live_curve(graph, shapes, nodes, in_place=in_place)
    where = max(curve, key=curve.get)
    return curve[where], where
