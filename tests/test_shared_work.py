"""Work shared between identical layers within one load: validation (a template line with the same block
arguments is validated once), expansion (a block instance with the same arguments replays an earlier
one), and analysis (figures per template and input shapes). Each result must be what the unshared path
gives, node by node, and two layers that differ in anything must never share one."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archspec
from archspec.analysis import receptive_field as rf
from archspec.analysis.analyze import LayerStats
from archspec.errors import SpecError
from archspec.graph import _topological_order, numel
from archspec.ops.base import Window
from archspec.spec import expand
from archspec.spec.expand import Expander, Scope
from archspec.spec.load import LoadedNode, _IncludeResolver, read_spec_bytes
from archspec.spec.yamlsafe import parse_yaml

SPECS_DIR = Path(__file__).resolve().parent.parent / "specs"

LIB = """blocks:
  unit:
    params: {width: null, stride: 1, project: false, bias: false}
    nodes:
      - {name: conv, op: conv2d, out_channels: $width, kernel: 3, stride: $stride, padding: 1, bias: $bias}
      - {name: bn, op: batch_norm}
      - {name: relu, op: relu}
      - {name: proj, op: conv2d, inputs: input, out_channels: $width, kernel: 1, stride: $stride, when: $project}
      - {name: add, op: add, inputs: [relu, proj]}
"""


def spec(nodes: str) -> str:
    return f"name: t\ninput: [4, 16, 16]\nmetadata: {{source: test}}\ninclude: [lib.yaml]\nnodes:\n{nodes}"


def load(write_spec, nodes: str):
    write_spec(LIB, "lib.yaml")
    return archspec.load(write_spec(spec(nodes)))


# Instances that differ from their neighbours in one argument each: the width, the stride, the bias
# (false / true), and 8 against 8.0 (equal in Python, but the strict validation refuses the float).
STAGES = (
    "  - {name: a, block: unit, repeat: 3, args: {width: 8}, first: {stride: 2, project: true}}\n"
    "  - {name: b, block: unit, repeat: 2, args: {width: 8, bias: true}}\n"
    "  - {name: c, block: unit, repeat: 2, args: {width: 16}, first: {project: true}}\n"
    "  - {name: d, block: unit, repeat: 2, args: {width: 16}}\n"
)


def test_every_node_is_what_validating_its_own_data_gives(write_spec):
    model = load(write_spec, STAGES)
    for node in model.graph.nodes.values():
        assert node.op == type(node.op).model_validate(node.raw.data), node.op.name
        assert node.op.model_fields_set == type(node.op).model_validate(node.raw.data).model_fields_set


def test_nodes_differing_in_one_field_never_share_a_template(write_spec):
    model = load(write_spec, STAGES)
    nodes = model.graph.nodes
    by_template: dict[int, list[LoadedNode]] = {}
    for node in nodes.values():
        if node.template is not None:
            by_template.setdefault(node.template, []).append(node)
    for group in by_template.values():
        first = group[0].op.model_dump(exclude={"name", "inputs"})
        for node in group[1:]:
            assert node.op.model_dump(exclude={"name", "inputs"}) == first
            assert type(node.op) is type(group[0].op)
    # One argument apart: stride (a.0 against a.1), bias (a.1 against b.0), width (b.1 against c.1).
    for one, other in (("a.0.conv", "a.1.conv"), ("a.1.conv", "b.0.conv"), ("b.1.conv", "d.1.conv")):
        assert nodes[one].template != nodes[other].template
    # ... while identical instances do share (that is the point).
    assert nodes["a.1.conv"].template == nodes["a.2.conv"].template
    assert nodes["d.0.conv"].template == nodes["d.1.conv"].template


def test_equal_data_from_different_lines_share_one_template(write_spec):
    # Every batch norm and ReLU of STAGES is written `{op: batch_norm}` / `{op: relu}`: equal data from
    # different template lines and block arguments, validated once; the convs differ in width, stride or
    # bias, and top-level nodes join the groups of equal block nodes.
    model = load(write_spec, STAGES + "  - {name: top_bn, op: batch_norm}\n  - {name: top_relu, op: relu}\n")
    nodes = model.graph.nodes
    assert len({nodes[n].template for n in nodes if n.endswith(".bn") or n == "top_bn"}) == 1
    assert len({nodes[n].template for n in nodes if n.endswith(".relu") or n == "top_relu"}) == 1
    assert nodes["a.0.bn"].template != nodes["a.0.relu"].template
    assert nodes["a.0.conv"].template != nodes["a.1.conv"].template  # stride 2 against 1
    assert nodes["c.0.conv"].template == nodes["c.1.conv"].template  # first: only changes `project`


@pytest.mark.parametrize("spec_path", sorted(SPECS_DIR.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_spec_node_is_its_own_validation(spec_path):
    # Each node's op is what validating its own data gives (fields and which were given), and nodes
    # with one LoadedNode.template have ops equal in every field but 'name' and 'inputs'.
    graph = archspec.load(str(spec_path)).graph
    groups: dict[int, dict] = {}
    for node in graph.spec.nodes:
        if node.op.stochastic and graph.spec.spec.stochastic_depth is not None:
            continue  # its probability comes from the spec's schedule, not its data
        own = type(node.op).model_validate(node.raw.data)
        assert node.op == own, node.op.name
        assert node.op.model_fields_set == own.model_fields_set
        if node.template is not None:
            dump = node.op.model_dump(exclude={"name", "inputs"})
            assert groups.setdefault(node.template, dump) == dump, node.op.name
            assert type(node.op) is type(own)


def _strictly_equal(a, b) -> bool:
    """Equal values of equal types, lists item by item and mappings in the same key order."""
    if type(a) is not type(b):
        return False
    if isinstance(a, list):
        return len(a) == len(b) and all(_strictly_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_strictly_equal(a[k], b[k]) for k in a)
    return a == b


_scalar = st.one_of(
    st.none(), st.booleans(), st.integers(-2, 2), st.floats(-2, 2, allow_nan=False), st.sampled_from("ab")
)
_value = st.recursive(
    _scalar,
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.sampled_from("xy"), inner, max_size=2),
    max_leaves=4,
)
_data = st.dictionaries(st.sampled_from(["op", "kernel", "stride", "name", "inputs"]), _scalar | _value, max_size=4)


def _lookalike(value):
    """A value equal to `value` in Python but of another type somewhere (1 -> True -> 1.0 -> 1)."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value) if value not in (0, 1) else bool(value)
    if isinstance(value, list) and value:
        return [_lookalike(value[0]), *value[1:]]
    if isinstance(value, dict) and value:
        first = next(iter(value))
        return {**value, first: _lookalike(value[first])}
    return value


@settings(max_examples=300)
@given(_data, st.data())
def test_data_key_is_strict_equality_but_name_and_inputs(a, draw):
    from archspec.spec.load import _data_key

    # b: other data, the same data, or the same with one value swapped for an equal one of another type.
    how = draw.draw(st.sampled_from(["other", "same", "lookalike"]))
    b = draw.draw(_data) if how == "other" else dict(a)
    if how == "lookalike" and b:
        key = draw.draw(st.sampled_from(sorted(b)))
        b[key] = _lookalike(b[key])
    same = _strictly_equal(
        {k: v for k, v in a.items() if k not in ("name", "inputs")},
        {k: v for k, v in b.items() if k not in ("name", "inputs")},
    )
    assert (_data_key(a) == _data_key(b)) == same
    assert _data_key({**a, "s": (1, 2)}) is None  # a tuple is not data a spec gives: never shared


def test_an_integer_and_a_float_argument_are_not_shared(write_spec):
    with pytest.raises(SpecError) as err:
        load(
            write_spec,
            "  - {name: a, block: unit, repeat: 2, args: {width: 8}}\n"
            "  - {name: b, block: unit, repeat: 2, args: {width: 8.0}}\n",
        )
    text = err.value.render()
    assert "b.0.conv" in text and "a.0.conv" not in text and "a.1.conv" not in text


def test_layer_figures_are_each_ops_own(write_spec):
    # The figures shared per (template, input shapes) must equal each op's rules asked directly.
    model = load(write_spec, STAGES)
    analysis = model.analyze()
    shapes = model.graph.infer_shapes(model.input_shape)
    for layer in analysis.layers:
        op = model.graph.op(layer.name)
        in_shapes = [shapes[i] for i in op.inputs]
        out = op.output_shape(in_shapes)
        tensors = op.param_shapes(in_shapes)
        assert layer.output_shape == tuple(out)
        assert layer.params == sum(numel(s) for s in tensors.values())
        assert layer.param_tensors == tuple((k, numel(s)) for k, s in tensors.items())
        assert layer.buffers == sum(numel(s) for s in op.buffer_shapes(in_shapes).values())
        assert layer.macs == op.macs(in_shapes, out)
        rule = op.rf_rule(in_shapes)
        assert layer.window == (rule if isinstance(rule, Window) else None)
        assert layer.inputs == tuple(op.inputs) and layer.op == op.op


def test_one_template_at_two_input_sizes(write_spec):
    # The same unit with the same arguments after a stride-2 stem and after a stride-1 stem: one template,
    # two input sizes, so two sets of figures. 3x3 pad 1 stride 1 keeps the size: 16 -> 16 and 8 -> 8.
    model = load(
        write_spec,
        "  - {name: x, block: unit, args: {width: 4}}\n"
        "  - {name: down, op: max_pool2d, kernel: 2, stride: 2}\n"
        "  - {name: y, block: unit, args: {width: 4}}\n",
    )
    layers = {layer.name: layer for layer in model.analyze().layers}
    assert model.graph.nodes["x.conv"].template == model.graph.nodes["y.conv"].template
    assert layers["x.conv"].output_shape == (4, 16, 16) and layers["y.conv"].output_shape == (4, 8, 8)
    # MACs = out elements x in channels x 3 x 3: 4*16*16*4*9 = 36,864 and 4*8*8*4*9 = 9,216.
    assert layers["x.conv"].macs == 36_864 and layers["y.conv"].macs == 9_216


def test_shape_errors_of_a_shared_template_name_every_instance(write_spec):
    # in_channels 5 is wrong for the 4-channel input that each of three uses reads: each use's node is
    # reported under its own name (errors are never shared, only results).
    write_spec(
        "blocks:\n  bad:\n    nodes:\n      - {name: conv, op: conv2d, in_channels: 5, out_channels: 4, kernel: 1}\n",
        "lib.yaml",
    )
    uses = "".join(f"  - {{name: s{k}, block: bad, inputs: input}}\n" for k in range(3))
    path = write_spec(spec(uses + "  - {name: cat, op: concat, inputs: [s0, s1, s2]}\n"))
    model = archspec.load(path)
    assert len({node.template for name, node in model.graph.nodes.items() if name.endswith(".conv")}) == 1
    with pytest.raises(SpecError) as err:
        model.analyze()
    text = err.value.render()
    for k in range(3):
        assert f"node 's{k}.conv': in_channels is 5 but the input has 4 channels" in text
    assert text.count("in_channels is 5") == 3


def test_a_bad_argument_in_a_later_instance_is_reported_there(write_spec):
    # Two good instances (validated once, then replayed), then one whose width is 0.
    with pytest.raises(SpecError) as err:
        load(
            write_spec,
            "  - {name: s, block: unit, repeat: 3, args: {width: 8}}\n  - {name: t, block: unit, args: {width: 0}}\n",
        )
    text = err.value.render()
    assert "node 't.conv'" in text and "out_channels" in text
    assert "'s." not in text


def test_repeated_instance_names_are_still_duplicates(write_spec):
    with pytest.raises(SpecError) as err:
        load(write_spec, "  - {name: s, block: unit, repeat: {count: 3, name: same}, args: {width: 4}}\n")
    assert "duplicate node name 's.same.conv': two instances of a repeated block get the same name" in str(
        err.value.render()
    )


def _expansion(path: str, replay: bool):
    from pathlib import Path

    doc = parse_yaml(read_spec_bytes(path), path)
    resolver = _IncludeResolver(Path(path).resolve().parent)
    resolver.include(doc, doc.data.get("include", []), (Path(path).resolve(),))
    resolver.add_valid_blocks(doc)
    expander = Expander(resolver.blocks)
    if not replay:
        expander._is_leaf = lambda source: False  # every instance expanded afresh
    output = expander.expand(doc.data["nodes"], Scope.top(doc))
    out = expander.out
    return output, out.nodes, out.aliases, out.known_names, out.errors, expander._visited, expander._work


@pytest.mark.parametrize(
    "spec_name", ["resnet152.yaml", "densenet121.yaml", "mobilenet_v2.yaml", "efficientnet_b0.yaml"]
)
def test_replayed_instances_equal_expanded_ones(spec_name):
    from conftest import SPECS

    with_replay = _expansion(str(SPECS / spec_name), replay=True)
    without = _expansion(str(SPECS / spec_name), replay=False)
    assert with_replay == without
    assert len(with_replay[1]) > 50


@pytest.mark.parametrize(
    "spec_name", ["resnet152.yaml", "densenet121.yaml", "efficientnet_b0.yaml", "inception_v3.yaml"]
)
def test_substitutions_kept_for_any_arguments_equal_fresh_ones(spec_name, monkeypatch):
    # A template node that reads none of its block's parameters is substituted once for all arguments;
    # without the substitution cache every node is substituted afresh: the same nodes, names and errors.
    from conftest import SPECS

    def without_template(nodes):
        return [(n.data, n.path, n.trail) for n in nodes]

    kept = _expansion(str(SPECS / spec_name), replay=False)
    fresh_once = Expander._substitute_once
    monkeypatch.setattr(
        Expander, "_substitute_once", lambda self, raw, env_key, scope, path: fresh_once(self, raw, None, scope, path)
    )
    fresh = _expansion(str(SPECS / spec_name), replay=False)
    assert without_template(kept[1]) == without_template(fresh[1])
    assert kept[0] == fresh[0] and kept[2:] == fresh[2:]
    # Nodes given one template by a substitution kept for any arguments do have equal data.
    by_template = {}
    for node in kept[1]:
        if node.template is not None:
            data = {k: v for k, v in node.data.items() if k not in ("name", "inputs")}
            assert by_template.setdefault(node.template, data) == data


def test_a_node_reading_a_parameter_is_not_kept_for_other_arguments(write_spec):
    # conv reads $width (and $stride, $bias), bn reads none: bn is substituted once for both widths, conv
    # once per width; each conv has its own width.
    model = load(
        write_spec, "  - {name: a, block: unit, args: {width: 4}}\n  - {name: b, block: unit, args: {width: 8}}\n"
    )
    nodes = model.graph.nodes
    assert nodes["a.conv"].op.out_channels == 4 and nodes["b.conv"].op.out_channels == 8
    assert nodes["a.conv"].raw.template != nodes["b.conv"].raw.template
    assert nodes["a.bn"].raw.template == nodes["b.bn"].raw.template


def test_replay_with_bypassed_nodes_and_outputs_equals_expansion(write_spec):
    write_spec(
        LIB + "  wrap:\n    params: {w: 4}\n    output: mid\n    nodes:\n"
        "      - {name: mid, op: conv2d, out_channels: $w, kernel: 1}\n"
        "      - {name: skip, op: relu, when: false}\n"
        "      - {name: tail, op: relu, inputs: input}\n",
        "lib.yaml",
    )
    path = write_spec(
        spec(
            STAGES + "  - {name: w, block: wrap, repeat: 3}\n"
            "  - {name: w2, block: wrap, repeat: 2, args: {w: 8}}\n"
            "  - {name: head, op: relu, inputs: w2}\n"
        )
    )
    assert _expansion(path, replay=True) == _expansion(path, replay=False)


def test_layer_record_from_fields_is_the_dataclass():
    values = {f.name: object() for f in dataclasses.fields(LayerStats)}
    made = LayerStats._from_fields(dict(values))
    assert made == LayerStats(**values)
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.name = "x"


def test_instance_scope_is_the_dataclass():
    values = [object() for _ in dataclasses.fields(Scope)]
    made = expand._scope(*values)
    assert made == Scope(*values) and made.__dict__ == Scope(*values).__dict__
    assert list(made.__dict__) == [f.name for f in dataclasses.fields(Scope)]


def _merge_reference(fields):
    """The receptive-field merge as the module documents it, written plainly: spans of one stride fold
    into one envelope (misaligned when their centres differ), several strides stay apart (misaligned)."""
    if len(fields) == 1:
        return fields[0]
    if any(f.kind == "global" for f in fields):
        return rf.GLOBAL_RF
    if any(f.kind == "irregular" for f in fields):
        return rf.IRREGULAR_RF
    misaligned = any(f.misaligned for f in fields)
    axes = []
    for a in range(2):
        strides = sorted({p[0] for f in fields for p in f.axes[a]})
        folded = []
        for s in strides:
            pieces = [p for f in fields for p in f.axes[a] if p[0] == s]
            misaligned |= len({lo + hi for _, lo, hi in pieces}) > 1
            folded.append((s, min(p[1] for p in pieces), max(p[2] for p in pieces)))
        misaligned |= len(folded) > 1
        axes.append(tuple(folded))
    return rf.ReceptiveField("local", tuple(axes), misaligned, any(f.context for f in fields))


_piece = st.tuples(st.sampled_from([1, 2, 4]), st.integers(-9, 0), st.integers(0, 9))
_field = st.builds(
    lambda rows, cols, misaligned, context: rf.ReceptiveField("local", (tuple(rows), tuple(cols)), misaligned, context),
    st.lists(_piece, min_size=1, max_size=3),
    st.lists(_piece, min_size=1, max_size=3),
    st.booleans(),
    st.booleans(),
)


@given(st.lists(st.one_of(_field, st.sampled_from([rf.GLOBAL_RF, rf.IRREGULAR_RF])), min_size=1, max_size=4))
def test_merge_matches_its_definition(fields):
    assert rf.merge(fields) == _merge_reference(fields)


def _kahn_reference(nodes):
    """Kahn's algorithm taking the ready node that comes first in the file, written plainly."""
    order, done = [], set()
    while len(order) < len(nodes):
        ready = [n for n, inputs in nodes.items() if n not in done and all(i == "input" or i in done for i in inputs)]
        order.append(ready[0])
        done.add(ready[0])
    return tuple(order)


@given(st.integers(2, 30), st.randoms(use_true_random=False), st.booleans())
def test_topological_order_matches_its_definition(count, rnd: random.Random, shuffle):
    names = [f"n{i}" for i in range(count)]
    inputs = {
        n: (["input"] if i == 0 else rnd.sample(names[:i], rnd.randint(1, min(i, 3)))) for i, n in enumerate(names)
    }
    if shuffle:  # a file order that is not topological: the heap's path
        rnd.shuffle(names)
    fake = {n: LoadedNode(_Op(inputs[n]), (), None) for n in names}
    assert _topological_order(fake) == _kahn_reference({n: inputs[n] for n in names})


@dataclasses.dataclass
class _Op:
    inputs: list[str]


def test_size_limits_still_apply_to_replayed_instances(write_spec, monkeypatch):
    # With the node limit at 20: the block use counts 1 and each instance 5 (its bypassed 'proj' too), so
    # the last node of instance 3 is the 21st: expansion must stop there, though instance 3 could replay.
    monkeypatch.setattr(expand, "MAX_NODES", 20)
    with pytest.raises(SpecError) as err:
        load(write_spec, "  - {name: s, block: unit, repeat: 8, args: {width: 4}}\n")
    assert "the spec expands to more than 20 nodes" in err.value.render()


def test_receptive_fields_pass_equals_the_layer_records(write_spec):
    # analyze() steps the receptive fields inside its layer loop; receptive_fields() is the same walk alone.
    model = load(write_spec, STAGES)
    analysis = model.analyze()
    fields, rules = rf.receptive_fields(model.graph, model.graph.infer_shapes(model.input_shape))
    for layer in analysis.layers:
        assert layer.receptive_field == fields[layer.name]
        assert layer.window == (rules[layer.name] if isinstance(rules[layer.name], Window) else None)
