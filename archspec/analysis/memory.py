"""Activation memory at inference: every output summed (what tables print), and the peak of what is
actually alive when tensors are freed after their last use (what a runtime needs).

The peak is computed over *buffers*, not tensors: ops marked `view` (flatten, dropout at inference,
identity) return their input's buffer, as in PyTorch, and ops marked `in_place` (ReLU) overwrite
their input when nothing else still needs it (PyTorch's ReLU(inplace=True)). The reference forward
pass follows the same rules, and `verify` compares its live buffers with this schedule after every node.
"""

from __future__ import annotations

from archspec.graph import INPUT, Graph, last_readers, numel
from archspec.ops import Shape

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2, "int8": 1}


def live_curve(graph: Graph, shapes: dict[str, Shape], nodes: list[str], *, in_place: bool = True) -> dict[str, int]:
    """Live activation elements (per image) just after each node ran, before its inputs are released.

    A buffer is live while any tensor using it has a reader still to run, or is a graph output.
    The live total is kept as a running sum (a buffer is added when created, removed when its last
    tensor dies), so the curve costs O(nodes + edges), not O(nodes x buffers).
    """
    keep = set(graph.outputs) | set(graph.train_outputs)
    last = last_readers(graph, nodes)
    buffer_of = {INPUT: INPUT}
    size = {INPUT: numel(shapes[INPUT])}
    users = {INPUT: {INPUT}}  # buffer -> live tensors in it
    curve = {INPUT: size[INPUT]}
    live = size[INPUT]

    def release(tensor: str) -> None:
        nonlocal live
        buffer = users[buffer_of[tensor]]
        if tensor in buffer:
            buffer.discard(tensor)
            if not buffer:
                live -= size[buffer_of[tensor]]

    ops = graph.nodes
    for name in nodes:
        op = ops[name].op
        inputs = op.inputs
        if len(inputs) == 1:
            source = inputs[0]
            buffer = buffer_of[source]
            alias = op.view or (
                in_place
                and op.in_place
                and buffer != INPUT  # the caller's input is never overwritten
                and last.get(source) == name
                and source not in keep
                and len(users[buffer]) == 1  # no live view shares the buffer (source is in it)
            )
        else:
            alias = False
        if alias:
            buffer_of[name] = buffer
            users[buffer].add(name)
        else:
            buffer_of[name] = name
            size[name] = elements = numel(shapes[name])
            live += elements
            users[name] = {name}
        curve[name] = live
        for i in inputs if len(inputs) == 1 else set(inputs):
            if last.get(i) == name and i not in keep:
                release(i)
        if name not in keep and name not in last:  # read by nobody
            release(name)
    return curve


def peak_live_elements(
    graph: Graph, shapes: dict[str, Shape], nodes: list[str], *, in_place: bool = True
) -> tuple[int, str]:
    """Peak number of live activation elements (per image) and the first node where it happens."""
    curve = live_curve(graph, shapes, nodes, in_place=in_place)
    where = max(curve, key=curve.get)
    return curve[where], where
