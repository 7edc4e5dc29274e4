"""The analysis walk (archspec/analysis/analyze.py `_layers`) and the memory curve, held to plain
statements of what they compute: shapes as `Graph.infer_shapes` gives them, each tensor's last reader,
and the live activation curve written from its definition (which tensors are alive after each node,
which buffer each lives in), on random graphs with views, in-place ops, merges and training-only heads."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archspec
from archspec import graph as graph_module
from archspec.analysis import receptive_field as rf
from archspec.analysis.memory import live_curve, peak_live_elements
from archspec.errors import SpecError
from archspec.graph import INPUT, last_readers

# One channel count throughout, so any node can read any earlier one (1x1 convs keep the map size).
SINGLE = [
    {"op": "conv2d", "out_channels": 2, "kernel": 1},  # a new buffer
    {"op": "relu"},  # in place when its input dies here
    {"op": "silu"},  # in place too
    {"op": "identity"},  # a view of its input
    {"op": "dropout", "p": 0.5},  # a view at inference
    {"op": "batch_norm"},  # a new buffer
]
MERGE = [{"op": "add"}, {"op": "mul"}]


def random_spec(rnd: random.Random, count: int, heads: bool) -> dict:
    """`count` nodes, each reading earlier ones (or the input); every node nobody reads is an output,
    and with `heads` some of those become training-only outputs."""
    nodes = []
    names = [INPUT]
    for i in range(count):
        if i > 0 and rnd.random() < 0.3:
            op = dict(rnd.choice(MERGE))
            arity = 2 if op["op"] == "mul" else rnd.randint(2, 3)
            inputs = [rnd.choice(names) for _ in range(arity)]  # repeats allowed: add(a, a)
        else:
            op = dict(rnd.choice(SINGLE))
            inputs = [rnd.choice(names[-3:])]  # mostly recent tensors: chains of views and in-place ops
        nodes.append({"name": f"n{i}", **op, "inputs": inputs})
        names.append(f"n{i}")
    read = {i for node in nodes for i in node["inputs"]}
    unread = [n["name"] for n in nodes if n["name"] not in read]
    outputs = [unread[-1]]
    train_outputs = []
    for name in unread[:-1]:
        (train_outputs if heads and rnd.random() < 0.5 else outputs).append(name)
    if rnd.random() < 0.3:  # a node that is read and also an output: it is never released
        outputs.append(rnd.choice(nodes)["name"])
    spec = {"name": "walk", "input": [2, 3, 3], "metadata": {"source": "test"}, "nodes": nodes}
    spec["outputs"] = list(dict.fromkeys(outputs))
    if train_outputs:
        spec["train_outputs"] = train_outputs
    return spec


def reference_curve(graph, shapes, nodes: list[str], in_place: bool = True) -> dict[str, int]:
    """The live curve by its definition, node by node, without running totals or counters.

    Tensor t is alive just after node k ran (its inputs not yet released) when t is an output, or t is
    node k itself, or some node at k or later reads t; after node k's releases, when t is an output or
    some node after k reads it. Each tensor lives in a buffer: a view's is its input's; an in-place op
    (ReLU) takes its input's buffer when the input dies at this node, is not an output, is not the
    caller's input, and no other tensor alive before this node shares that buffer; any other op makes
    a buffer of its own. The curve is the size of the buffers holding an alive tensor."""
    keep = set(graph.outputs) | set(graph.train_outputs)
    position = {name: k for k, name in enumerate(nodes)}
    position[INPUT] = -1
    readers = {t: [position[n] for n in nodes if t in graph.nodes[n].op.inputs] for t in [INPUT, *nodes]}

    def alive(t: str, k: int, released: bool) -> bool:
        if t in keep:
            return True
        if not released and position[t] == k:
            return True
        return any(r > k or (r == k and not released) for r in readers[t])

    buffer = {INPUT: INPUT}
    curve = {INPUT: math.prod(shapes[INPUT])}
    for k, name in enumerate(nodes):
        op = graph.nodes[name].op
        before = [t for t in [INPUT, *nodes[:k]] if alive(t, k - 1, released=True)]
        buffer[name] = name
        if len(op.inputs) == 1:
            source = op.inputs[0]
            sharing = {t for t in before if buffer[t] == buffer[source]}
            if op.view:
                buffer[name] = buffer[source]
            elif (
                in_place
                and op.in_place
                and buffer[source] != INPUT
                and max(readers[source]) == k
                and source not in keep
                and sharing == {source}
            ):
                buffer[name] = buffer[source]
        held = {buffer[t] for t in [INPUT, *nodes[: k + 1]] if alive(t, k, released=False)}
        curve[name] = sum(math.prod(shapes[b]) for b in held)
    return curve


# Graphs from a seeded generator (hypothesis's own random draws favour the first choice of every list,
# which seldom builds the cases that matter: a view beside an in-place op, a tensor read again later).
@settings(max_examples=150, deadline=None)
@given(st.integers(1, 14), st.integers(0, 2**32), st.booleans(), st.booleans())
def test_live_curve_matches_its_definition(count, seed, heads, in_place):
    model = archspec.load(random_spec(random.Random(seed), count, heads))
    graph = model.graph
    shapes = graph.infer_shapes(model.input_shape)
    main = [n for n in graph.order if n in graph.inference_nodes]
    for nodes in (list(graph.order), main):
        expected = reference_curve(graph, shapes, nodes, in_place)
        assert live_curve(graph, shapes, nodes, in_place=in_place) == expected


@settings(max_examples=150, deadline=None)
@given(st.integers(1, 14), st.integers(0, 2**32), st.booleans())
def test_analysis_walk_matches_the_separate_passes(count, seed, heads):
    # The one walk gives what the separate passes give: shapes (infer_shapes), receptive fields
    # (receptive_fields), and the peak of the memory curve (its definition, over the inference nodes
    # for the totals and over every node for the training-only heads).
    model = archspec.load(random_spec(random.Random(seed), count, heads))
    graph = model.graph
    analysis = model.analyze()
    shapes = graph.infer_shapes(model.input_shape)
    fields, _ = rf.receptive_fields(graph, shapes)
    assert [layer.name for layer in analysis.layers] == list(graph.order)
    for layer in analysis.layers:
        assert layer.output_shape == shapes[layer.name]
        assert layer.inputs == tuple(graph.nodes[layer.name].op.inputs)
        assert layer.receptive_field == fields[layer.name]
        assert layer.train_only == (layer.name not in graph.inference_nodes)
    main = [n for n in graph.order if n in graph.inference_nodes]
    curve = reference_curve(graph, shapes, main)
    peak = max(curve.values())
    assert analysis.totals.peak_activation_bytes == 4 * peak
    assert analysis.totals.peak_at == next(n for n, v in curve.items() if v == peak)
    assert (analysis.train_extra is not None) == (len(main) < len(graph.order))
    if analysis.train_extra is not None:
        whole = reference_curve(graph, shapes, list(graph.order))
        assert analysis.train_extra.peak_activation_bytes == 4 * max(whole.values())
        assert analysis.train_extra.peak_at == next(n for n, v in whole.items() if v == max(whole.values()))


def test_a_window_field_is_the_dataclass():
    axes = (((2, -1, 3),), ((1, 0, 4),))
    made = rf._local_field(axes, True, False)
    assert made == rf.ReceptiveField("local", axes, True, False)
    assert hash(made) == hash(rf.ReceptiveField("local", axes, True, False))
    assert made.size() == (5, 5)  # [-1, 3] and [0, 4]: five pixels each


def test_shape_errors_in_analysis_are_those_of_infer_shapes(write_spec):
    # Three failing nodes, two of them one template line (a block used twice): the walk stops at the
    # first, and the error lists all three under their own names, as infer_shapes does.
    spec = """name: t
input: [3, 8, 8]
metadata: {source: test}
blocks:
  shrink:
    nodes:
      - {name: pool, op: max_pool2d, kernel: 9}
nodes:
  - {name: a, block: shrink}
  - {name: b, op: conv2d, out_channels: 4, kernel: 1, inputs: input}
  - {name: c, block: shrink, inputs: b}
  - {name: d, op: conv2d, out_channels: 4, kernel: 20, inputs: input}
  - {name: e, op: add, inputs: [a, c, d]}
"""
    model = archspec.load(write_spec(spec))
    with pytest.raises(SpecError) as direct:
        model.graph.infer_shapes(model.input_shape)
    with pytest.raises(SpecError) as analysed:
        model.analyze()
    assert analysed.value.render() == direct.value.render()
    assert all(f"'{n}" in direct.value.render() for n in ("a.pool", "c.pool", "d"))


def _general_path(monkeypatch):
    """build_graph without its one-pass check of specs in file order: every node through the general
    checks (_unique_nodes, _resolve_inputs, _topological_order, the upstream walk for dead nodes)."""
    monkeypatch.setattr(graph_module, "_in_file_order_checked", lambda spec, resolve, read: None)


def _outcome(spec: dict):
    try:
        graph = archspec.load(spec).graph
    except SpecError as exc:
        return exc.render()
    return (
        graph.order,
        {name: (node.op, node.template) for name, node in graph.nodes.items()},
        graph.outputs,
        graph.train_outputs,
        graph.inference_nodes,
        graph.last_reader,
    )


@settings(max_examples=150, deadline=None)
@given(
    st.integers(1, 12),
    st.integers(0, 2**32),
    st.booleans(),
    st.sampled_from(["none", "shuffle", "dead", "duplicate", "undefined", "arity", "bypass", "alias"]),
)
def test_one_pass_graph_check_equals_the_general_path(count, seed, heads, change):
    rnd = random.Random(seed)
    spec = random_spec(rnd, count, heads)
    nodes = spec["nodes"]
    if change == "shuffle":  # inputs later in the file: Kahn's heap orders them
        rnd.shuffle(nodes)
    elif change == "dead":
        nodes.insert(rnd.randrange(len(nodes) + 1), {"name": "dead", "op": "relu", "inputs": [INPUT]})
    elif change == "duplicate":
        nodes.append({**rnd.choice(nodes), "inputs": [nodes[-1]["name"]]})
    elif change == "undefined":
        rnd.choice(nodes)["inputs"][0] = "nowhere"
    elif change == "arity":
        nodes.append({"name": "sum", "op": "add", "inputs": [nodes[-1]["name"]]})
        spec["outputs"] = [*spec["outputs"], "sum"]
    elif change == "alias":  # an input naming a switched-off node inside a block: the graph resolves it
        spec["blocks"] = {
            "unit": {
                "nodes": [
                    {"name": "c", "op": "conv2d", "out_channels": 2, "kernel": 1},
                    {"name": "skip", "op": "relu", "when": False},
                ]
            }
        }
        nodes.append({"name": "blk", "block": "unit", "repeat": 2, "inputs": [nodes[-1]["name"]]})
        nodes.append({"name": "tap", "op": "add", "inputs": ["blk.0.skip", "blk"]})
        spec["outputs"] = [*spec["outputs"], "tap"]
    elif change == "bypass":  # a switched-off node: readers of it read its input (an alias)
        k = rnd.randrange(len(nodes))
        nodes[k]["when"] = False
        nodes[k]["inputs"] = nodes[k]["inputs"][:1]
    fast = _outcome(spec)
    with pytest.MonkeyPatch.context() as monkeypatch:
        _general_path(monkeypatch)
        general = _outcome(spec)
    assert fast == general
    if not isinstance(fast, str):  # Graph.last_reader is what it says: the last reader in graph order
        graph = archspec.load(spec).graph
        assert graph.last_reader == last_readers(graph, list(graph.order))


@pytest.mark.parametrize(
    "name", ["efficientnet_b0", "mobilenet_v3_small", "regnet_y_400mf", "googlenet", "inception_v3", "convnext_tiny"]
)
def test_shipped_walk_matches_the_separate_passes(name):
    # Broadcast gates (squeeze-and-excitation), concats, training-only heads (GoogLeNet) and stochastic
    # depth: the walk's shapes, receptive fields and peaks equal the separate passes'.
    from conftest import SPECS

    model = archspec.load(str(SPECS / f"{name}.yaml"))
    graph = model.graph
    analysis = model.analyze()
    shapes = graph.infer_shapes(model.input_shape)
    fields, _ = rf.receptive_fields(graph, shapes)
    for layer in analysis.layers:
        assert layer.output_shape == shapes[layer.name]
        assert layer.receptive_field == fields[layer.name], layer.name
    main = [n for n in graph.order if n in graph.inference_nodes]
    peak, where = peak_live_elements(graph, shapes, main)
    assert (analysis.totals.peak_activation_bytes, analysis.totals.peak_at) == (4 * peak, where)
    if analysis.train_extra is not None:
        peak, where = peak_live_elements(graph, shapes, list(graph.order))
        assert (analysis.train_extra.peak_activation_bytes, analysis.train_extra.peak_at) == (4 * peak, where)


def test_group_figures_are_every_record_field_in_order():
    # _figures writes the record's fields as a literal: the same names, in the dataclass's order.
    from archspec.analysis.analyze import _LAYER_FIELDS, _figures

    graph = archspec.load(random_spec(random.Random(3), 6, False)).graph
    shapes = graph.infer_shapes((2, 3, 3))
    for name in graph.order:
        op = graph.op(name)
        _, values = _figures(op, [shapes[i] for i in op.inputs], shapes[name])
        assert tuple(values) == _LAYER_FIELDS
