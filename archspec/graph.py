"""The model as a networkx DAG: name checks, cycle detection, order and static shape inference."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import networkx as nx

from archspec.errors import Diagnostic, SpecError, did_you_mean
from archspec.ops import OpBase, Shape, ShapeError
from archspec.spec.load import LoadedNode, LoadedSpec

INPUT = "input"


@dataclass(frozen=True)
class Graph:
    """A checked DAG. `order` is a topological order that keeps the spec's own order where it can."""

    spec: LoadedSpec
    nx_graph: nx.DiGraph
    order: tuple[str, ...]
    nodes: dict[str, LoadedNode]
    outputs: tuple[str, ...]
    train_outputs: tuple[str, ...]

    def op(self, name: str) -> OpBase:
        return self.nodes[name].op

    @cached_property
    def inference_nodes(self) -> frozenset[str]:
        """Nodes needed for the inference outputs (training-only heads excluded)."""
        return self.needed_nodes()

    def needed_nodes(self, dropped: frozenset[str] | set[str] = frozenset()) -> frozenset[str]:
        """Nodes the inference outputs need when the `dropped` nodes do not read their inputs
        (a dropped stochastic-depth branch: the node yields zero and its branch is never run)."""
        graph = self.nx_graph
        if dropped:
            graph = graph.copy()
            graph.remove_edges_from([edge for d in dropped for edge in list(graph.in_edges(d))])
        needed: set[str] = set()
        for out in self.outputs:
            needed |= nx.ancestors(graph, out) | {out}
        return frozenset(needed - {INPUT})

    def infer_shapes(self, input_shape: Shape, nodes: list[str] | None = None) -> dict[str, Shape]:
        """Static shape of every tensor (or of `nodes`, a subgraph closed under inputs);
        raises SpecError naming every node whose shapes fail."""
        shapes: dict[str, Shape] = {INPUT: tuple(input_shape)}
        errors: list[Diagnostic] = []
        for name in self.order if nodes is None else nodes:
            node = self.nodes[name]
            ins = node.op.inputs
            if any(i not in shapes for i in ins):
                continue  # an upstream node already failed
            try:
                shape = node.op.output_shape([shapes[i] for i in ins])
            except ShapeError as exc:
                hint = getattr(exc, "hint", None)
                errors.append(Diagnostic(node.location, f"node '{name}': {exc}", hint, node.trail))
                continue
            if any(d < 1 for d in shape):
                errors.append(
                    Diagnostic(
                        node.location,
                        f"node '{name}': output shape {list(shape)} has a zero-size axis",
                        "the input is too small for this many downsampling steps; use a larger --input",
                        node.trail,
                    )
                )
                continue
            shapes[name] = tuple(int(d) for d in shape)
        if errors:
            raise SpecError(errors)
        return shapes


def build_graph(spec: LoadedSpec) -> Graph:
    errors: list[Diagnostic] = []
    nodes: dict[str, LoadedNode] = {}
    for node in spec.nodes:
        name = node.op.name
        if name in nodes:
            if node.location == nodes[name].location:  # one template line, two block instances
                message = f"duplicate node name '{name}': two instances of a repeated block get the same name"
                hint = "put '{i}' (the instance index) in the repeat's 'name'"
            else:
                message = f"duplicate node name '{name}' (first defined at {nodes[name].location})"
                hint = "node names must be unique"
            errors.append(Diagnostic(node.location, message, hint, node.trail))
            continue
        nodes[name] = node
    aliases = spec.aliases

    def resolve(ref: str) -> str:
        seen = set()
        while ref in aliases and ref not in seen:
            seen.add(ref)
            ref = aliases[ref]
        return ref

    graph = nx.DiGraph()
    graph.add_node(INPUT)
    resolved_nodes: dict[str, LoadedNode] = {}
    known = set(nodes) | set(aliases) | {INPUT}
    for name, node in nodes.items():
        graph.add_node(name)
        inputs = [resolve(i) for i in node.op.inputs]
        for index, (ref, original) in enumerate(zip(inputs, node.op.inputs, strict=True)):
            if ref != INPUT and ref not in nodes:
                errors.append(
                    Diagnostic(
                        node.locate(("inputs", index)),
                        f"node '{name}' takes input '{original}', which is not defined",
                        did_you_mean(original, known) or "inputs name earlier nodes, or 'input'",
                        node.trail,
                    )
                )
        arity = type(node.op).arity
        low, high = (arity, arity) if isinstance(arity, int) else arity
        if len(inputs) < low or (high is not None and len(inputs) > high):
            want = f"{low}" if low == high else f"at least {low}"
            errors.append(
                Diagnostic(
                    node.locate(("inputs",)),
                    f"node '{name}' ({node.op.op}) takes {want} input{'s' if low != 1 else ''}, got {len(inputs)}",
                    "list exactly the tensors it combines under 'inputs:'"
                    if high is None
                    else "remove the extra inputs",
                    node.trail,
                )
            )
        for ref in inputs:
            graph.add_edge(ref, name)
        if inputs != node.op.inputs:  # a bypassed node or block name resolved to its tensor
            node = LoadedNode(node.op.model_copy(update={"inputs": inputs}), node.location, node.trail, node.raw)
        resolved_nodes[name] = node

    outputs = tuple(resolve(o) for o in spec.outputs)
    train_outputs = tuple(resolve(o) for o in spec.train_outputs)
    for key, names in (("outputs", outputs), ("train_outputs", train_outputs)):
        for index, out in enumerate(names):
            if out not in nodes:
                errors.append(
                    Diagnostic(
                        spec.document.locate((key, index)),
                        f"output '{out}' is not a node" if out != INPUT else "the graph input cannot be an output",
                        did_you_mean(out, known - {INPUT}) or f"'{key}' lists node names",
                    )
                )
    if errors:
        raise SpecError(errors)

    cycle = None
    if not nx.is_directed_acyclic_graph(graph):  # fast; find_cycle only when there is one to show
        cycle = nx.find_cycle(graph)
    if cycle:
        # Point at the node that takes an input from later in the file: the edge that closes the loop.
        position = {name: i for i, name in enumerate(nodes)}
        back = [k for k, (u, v) in enumerate(cycle) if position.get(u, -1) >= position.get(v, -1)]
        start = min(back or [0], key=lambda k: position.get(cycle[k][1], 0))
        cycle = cycle[start + 1 :] + cycle[: start + 1]  # rotate so the path starts at that node
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        first = resolved_nodes[cycle[0][0]]
        raise SpecError(
            Diagnostic(
                first.locate(("inputs",)),
                f"the graph has a cycle: {path}",
                "a node's inputs must not depend on its own output",
                first.trail,
            )
        )

    used = set()
    for out in (*outputs, *train_outputs):
        used |= nx.ancestors(graph, out) | {out}
    dead = [n for n in nodes if n not in used]
    if dead:
        raise SpecError(
            [
                Diagnostic(
                    resolved_nodes[n].location,
                    f"node '{n}' does not lead to any output",
                    "remove it, or list it under 'outputs:'",
                    resolved_nodes[n].trail,
                )
                for n in dead
            ]
        )

    position = {name: i for i, name in enumerate(nodes)}
    position[INPUT] = -1
    order = tuple(n for n in nx.lexicographical_topological_sort(graph, key=lambda n: position[n]) if n != INPUT)
    return Graph(spec, graph, order, resolved_nodes, outputs, train_outputs)


def numel(shape: Shape) -> int:
    return math.prod(shape)
