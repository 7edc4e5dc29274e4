"""The model as a checked DAG (plain dicts, no graph library on the hot path): name checks, cycle
detection, order and static shape inference. Every walk here is linear in nodes + edges."""

from __future__ import annotations

import gc
import heapq
import math
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property

from archspec.errors import Diagnostic, SpecError, did_you_mean
from archspec.ops import OpBase, Shape, ShapeError
from archspec.spec import INPUT
from archspec.spec.load import LoadedNode, LoadedSpec

__all__ = ["INPUT", "Graph", "build_graph", "last_readers", "numel", "paused_gc", "upstream"]


@contextmanager
def paused_gc() -> Iterator[None]:
    """Python's cyclic garbage collector paused for a load or an analysis (restored after, also on error).

    Loading builds hundreds of thousands of small acyclic objects; every collection the allocations
    trigger walks the objects already alive, which made time per node grow with the graph (20k nodes:
    about +50%). Nothing built here forms reference cycles, so pausing frees no less memory."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        # What was built is the result, kept by the caller: move it straight to the oldest generation
        # (freeze + unfreeze splices the collector's lists; it examines nothing). Re-enabled as is, the
        # collector would first walk all of it in the young generations, to find nothing to free: a
        # tenth of loading and analyzing a 20,000-node chain. The program's own young objects go along:
        # a reference cycle among them is freed by the next full collection instead of a young one.
        # Skipped when the program uses gc.freeze() itself (unfreeze would release what it froze).
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        if enabled:
            gc.enable()


@dataclass(frozen=True)
class Graph:
    """A checked DAG. `order` is a topological order that keeps the spec's own order where it can."""

    spec: LoadedSpec
    order: tuple[str, ...]
    nodes: dict[str, LoadedNode]  # inputs resolved (bypassed nodes and block names -> their tensor)
    outputs: tuple[str, ...]
    train_outputs: tuple[str, ...]

    def op(self, name: str) -> OpBase:
        return self.nodes[name].op

    @cached_property
    def readers(self) -> dict[str, tuple[str, ...]]:
        """Tensor (a node or INPUT) -> the nodes that read it, in order."""
        readers: dict[str, list[str]] = {INPUT: []}
        for name in self.order:
            readers[name] = []
        for name in self.order:
            for i in dict.fromkeys(self.op(name).inputs):
                readers[i].append(name)
        return {k: tuple(v) for k, v in readers.items()}

    @cached_property
    def last_reader(self) -> dict[str, str]:
        """Tensor (a node or INPUT) -> the last node in `order` that reads it (where it can be freed);
        tensors nobody reads are absent. `last_readers(self, self.order)`, for the memory curve that
        analysis steps over the whole graph (build_graph finds it in its own pass)."""
        return last_readers(self, self.order)

    @cached_property
    def inference_nodes(self) -> frozenset[str]:
        """Nodes needed for the inference outputs (training-only heads excluded)."""
        return self.needed_nodes()

    def needed_nodes(self, dropped: frozenset[str] | set[str] = frozenset()) -> frozenset[str]:
        """Nodes the inference outputs need when the `dropped` nodes do not read their inputs
        (a dropped stochastic-depth branch: the node yields zero and its branch is never run)."""
        return frozenset(upstream(self.nodes, self.outputs, dropped))

    def descendants(self, *names: str) -> set[str]:
        """Every node that reads one of `names`' tensors, directly or through other nodes (one walk)."""
        seen: set[str] = set()
        stack = list(names)
        readers = self.readers
        while stack:
            for r in readers[stack.pop()]:
                if r not in seen:
                    seen.add(r)
                    stack.append(r)
        return seen

    def infer_shapes(self, input_shape: Shape, nodes: list[str] | None = None) -> dict[str, Shape]:
        """Static shape of every tensor (or of `nodes`, a subgraph closed under inputs);
        raises SpecError naming every node whose shapes fail. (Analysis infers the shapes in its own walk,
        analyze._layers, and calls this to report when one fails.)"""
        shapes: dict[str, Shape] = {INPUT: tuple(input_shape)}
        errors: list[Diagnostic] = []
        # (template, input shapes) -> output shape: identical layers (LoadedNode.template) are computed
        # once. Only shapes that passed every check are kept, so each failing node reports for itself.
        known: dict[tuple, Shape] = {}
        for name in self.order if nodes is None else nodes:
            node = self.nodes[name]
            try:
                in_shapes = [shapes[i] for i in node.op.inputs]
            except KeyError:
                continue  # an upstream node already failed
            if node.template is None:
                key = None
            else:
                key = (node.template, *in_shapes)
                shape = known.get(key)
                if shape is not None:
                    shapes[name] = shape
                    continue
            try:
                shape = node.op.output_shape(in_shapes)
            except ShapeError as exc:
                hint = getattr(exc, "hint", None)
                errors.append(Diagnostic(node.location, f"node '{name}': {exc}", hint, node.trail))
                continue
            if min(shape) < 1:
                errors.append(
                    Diagnostic(
                        node.location,
                        f"node '{name}': output shape {list(shape)} has a zero-size axis",
                        "the input is too small for this many downsampling steps; use a larger --input",
                        node.trail,
                    )
                )
                continue
            shapes[name] = shape = tuple(map(int, shape))
            if key is not None:
                known[key] = shape
        if errors:
            raise SpecError(errors)
        return shapes


def last_readers(graph: Graph, nodes: list[str], dropped: frozenset[str] | set[str] = frozenset()) -> dict[str, str]:
    """Tensor -> the node of `nodes` (in execution order) that reads it last: where it can be freed.
    Nodes in `dropped` read nothing (a skipped stochastic-depth branch)."""
    last: dict[str, str] = {}
    ops = graph.nodes
    for name in nodes:
        if name not in dropped:
            for i in ops[name].op.inputs:
                last[i] = name
    return last


def upstream(nodes: dict[str, LoadedNode], targets, dropped=frozenset()) -> set[str]:
    """`targets` and every node they read from, directly or not (INPUT excluded); a node in `dropped`
    does not read its inputs. One walk over the edges."""
    seen: set[str] = set()
    stack = [t for t in targets if t != INPUT]
    seen.update(stack)
    while stack:
        name = stack.pop()
        if name in dropped:
            continue
        for i in nodes[name].op.inputs:
            if i not in seen and i != INPUT:
                seen.add(i)
                stack.append(i)
    return seen


def build_graph(spec: LoadedSpec) -> Graph:
    """Check a loaded spec's graph and order it. Each stage reports every error it finds; a later
    stage runs only when the earlier ones are clean."""
    errors: list[Diagnostic] = []
    resolve = _alias_resolver(spec.aliases)
    last: dict[str, str] | None = {}  # Graph.last_reader
    resolved = _in_file_order_checked(spec, resolve, last)
    if resolved is not None:  # the common case, checked in one pass (see _in_file_order_checked)
        nodes = resolved
        order = tuple(resolved)
    else:
        last = None
        nodes = _unique_nodes(spec, errors)
        resolved = _resolve_inputs(nodes, resolve, spec.aliases, errors)
        order = None
    outputs, train_outputs = _resolve_outputs(spec, nodes, resolve, errors)
    if errors:
        raise SpecError(errors)
    if order is None:
        order = _topological_order(resolved)
    used = _check_dead(resolved, (*outputs, *train_outputs), None if last is None else last.keys())
    graph = Graph(spec, order, resolved, outputs, train_outputs)
    if last is not None:
        graph.__dict__["last_reader"] = last
    if not train_outputs:  # then `used` is what Graph.inference_nodes would compute again: keep it
        graph.__dict__["inference_nodes"] = frozenset(used)
    return graph


def _in_file_order_checked(spec: LoadedSpec, resolve, last: dict[str, str]) -> dict[str, LoadedNode] | None:
    """What `_unique_nodes` and `_resolve_inputs` give when they find nothing to report and every node's
    inputs come before it in the file (then that is the topological order: see `_in_file_order`); None
    otherwise, and the caller takes the general path, which finds and reports every problem. One pass:
    an input that is an earlier node is defined. Fills `last` with each tensor's last reader (the file
    order being the graph's order: Graph.last_reader)."""
    nodes: dict[str, LoadedNode] = {}
    aliases = spec.aliases.keys()
    bounds: dict[type, tuple[int, int | None]] = {}  # op class -> (fewest, most) inputs
    for node in spec.nodes:
        op = node.op
        name = op.name
        if name in nodes:
            return None
        given = op.inputs
        inputs = given if aliases.isdisjoint(given) else [resolve(i) for i in given]
        for ref in inputs:
            if ref not in nodes and ref != INPUT:
                return None
            last[ref] = name
        kind = op.__class__
        limits = bounds.get(kind)
        if limits is None:
            arity = kind.arity
            limits = bounds[kind] = (arity, arity) if isinstance(arity, int) else arity
        low, high = limits
        count = len(inputs)
        if count < low or (high is not None and count > high):
            return None
        if inputs is not given and inputs != given:  # a bypassed node or block name resolved to its tensor
            node = LoadedNode(op.model_copy(update={"inputs": inputs}), node.trail, node.raw, node.template)
        nodes[name] = node
    return nodes


def _unique_nodes(spec: LoadedSpec, errors: list[Diagnostic]) -> dict[str, LoadedNode]:
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
    return nodes


def _alias_resolver(aliases: dict[str, str]):
    """ref -> the tensor it names, following bypassed nodes and block names (memoized: chains of
    bypassed nodes are followed once, not once per reader)."""
    done: dict[str, str] = {}

    def resolve(ref: str) -> str:
        chain, seen = [], set()
        while ref in aliases and ref not in seen and ref not in done:
            seen.add(ref)
            chain.append(ref)
            ref = aliases[ref]
        ref = done.get(ref, ref)
        for name in chain:
            done[name] = ref
        return ref

    return resolve


def _resolve_inputs(nodes, resolve, aliases: dict[str, str], errors: list[Diagnostic]) -> dict[str, LoadedNode]:
    """Inputs resolved to tensors; undefined inputs and wrong input counts reported."""
    resolved_nodes: dict[str, LoadedNode] = {}
    bounds: dict[type, tuple[int, int | None]] = {}  # op class -> (fewest, most) inputs
    for name, node in nodes.items():
        given = node.op.inputs
        inputs = given if aliases.keys().isdisjoint(given) else [resolve(i) for i in given]
        defined = True
        for ref in inputs:
            if ref not in nodes and ref != INPUT:
                defined = False
        if not defined:
            known = set(nodes) | set(aliases) | {INPUT}
            for index, (ref, original) in enumerate(zip(inputs, given, strict=True)):
                if ref != INPUT and ref not in nodes:
                    errors.append(
                        Diagnostic(
                            node.locate(("inputs", index)),
                            f"node '{name}' takes input '{original}', which is not defined",
                            did_you_mean(original, known) or "inputs name earlier nodes, or 'input'",
                            node.trail,
                        )
                    )
        kind = type(node.op)
        if kind not in bounds:
            arity = kind.arity
            bounds[kind] = (arity, arity) if isinstance(arity, int) else arity
        low, high = bounds[kind]
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
        if inputs is not given and inputs != given:  # a bypassed node or block name resolved to its tensor
            op = node.op.model_copy(update={"inputs": inputs})
            node = LoadedNode(op, node.trail, node.raw, node.template)
        resolved_nodes[name] = node
    return resolved_nodes


def _resolve_outputs(spec, nodes, resolve, errors: list[Diagnostic]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    outputs = tuple(resolve(o) for o in spec.outputs)
    train_outputs = tuple(resolve(o) for o in spec.train_outputs)
    known = set(nodes) | set(spec.aliases)
    for key, names in (("outputs", outputs), ("train_outputs", train_outputs)):
        for index, out in enumerate(names):
            if out not in nodes:
                errors.append(
                    Diagnostic(
                        spec.document.locate((key, index)),
                        f"output '{out}' is not a node" if out != INPUT else "the graph input cannot be an output",
                        did_you_mean(out, known) or f"'{key}' lists node names",
                    )
                )
    return outputs, train_outputs


def _topological_order(nodes: dict[str, LoadedNode]) -> tuple[str, ...]:
    """Kahn's algorithm, always taking the ready node that comes first in the file (so the spec's own
    order is kept where it can be); raises SpecError with the cycle's path when there is one."""
    if _in_file_order(nodes):
        return tuple(nodes)  # what Kahn's algorithm below gives then, without its heap
    position = {name: i for i, name in enumerate(nodes)}
    waiting = {}  # node -> inputs not yet computed
    readers: dict[str, list[str]] = {name: [] for name in nodes}
    ready: list[int] = []
    names = list(nodes)
    for name, node in nodes.items():
        inputs = {i for i in node.op.inputs if i != INPUT}
        waiting[name] = len(inputs)
        for i in inputs:
            readers[i].append(name)
        if not inputs:
            ready.append(position[name])
    heapq.heapify(ready)
    order = []
    while ready:
        name = names[heapq.heappop(ready)]
        order.append(name)
        for r in readers[name]:
            waiting[r] -= 1
            if waiting[r] == 0:
                heapq.heappush(ready, position[r])
    if len(order) < len(nodes):
        _raise_cycle(nodes, position)
    return tuple(order)


def _in_file_order(nodes: dict[str, LoadedNode]) -> bool:
    """Every node's inputs come before it in the file (as in most specs). Then the file order is the
    order `_topological_order` takes: by induction, once the first k nodes are taken the (k+1)th is
    ready, and it comes first in the file among the ready nodes."""
    done = {INPUT}
    for name, node in nodes.items():
        for i in node.op.inputs:
            if i not in done:
                return False
        done.add(name)
    return True


def _raise_cycle(nodes: dict[str, LoadedNode], position: dict[str, int]) -> None:
    import networkx as nx  # only to show a cycle's path: not worth its import time on valid specs

    graph = nx.DiGraph()
    graph.add_nodes_from([INPUT, *nodes])  # the search starts in file order, as it always has
    graph.add_edges_from((i, name) for name, node in nodes.items() for i in node.op.inputs)
    cycle = nx.find_cycle(graph)
    # Point at the node that takes an input from later in the file: the edge that closes the loop.
    back = [k for k, (u, v) in enumerate(cycle) if position.get(u, -1) >= position.get(v, -1)]
    start = min(back or [0], key=lambda k: position.get(cycle[k][1], 0))
    cycle = cycle[start + 1 :] + cycle[: start + 1]  # rotate so the path starts at that node
    path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
    first = nodes[cycle[0][0]]
    raise SpecError(
        Diagnostic(
            first.locate(("inputs",)),
            f"the graph has a cycle: {path}",
            "a node's inputs must not depend on its own output",
            first.trail,
        )
    )


def _check_dead(
    nodes: dict[str, LoadedNode], outputs: tuple[str, ...], read: AbstractSet[str] | None = None
) -> AbstractSet[str]:
    """The nodes `outputs` need; raises SpecError naming every other node. `read`: the tensors some node
    reads, when known; if every node nobody reads is an output, no node is dead (follow any node's
    readers: in a finite DAG the walk ends at a node nobody reads, an output) and no walk is needed."""
    if read is not None and nodes.keys() - read <= set(outputs):
        return nodes.keys()
    used = upstream(nodes, outputs)
    dead = [n for n in nodes if n not in used]
    if dead:
        raise SpecError(
            [
                Diagnostic(
                    nodes[n].location,
                    f"node '{n}' does not lead to any output",
                    "remove it, or list it under 'outputs:'",
                    nodes[n].trail,
                )
                for n in dead
            ]
        )
    return used


def numel(shape: Shape) -> int:
    return math.prod(shape)
