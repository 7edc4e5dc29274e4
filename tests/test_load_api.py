"""archspec.load takes a path, a mapping or YAML text; errors stay located (line:col or key path)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import archspec
from archspec.errors import SpecError, UsageError
from conftest import ROOT, SPECS

TINY = {
    "name": "tiny",
    "input": [3, 32, 32],
    "include": ["archspec:resnet"],
    "nodes": [
        {"name": "conv1", "op": "conv2d", "out_channels": 64, "kernel": 3, "padding": 1, "bias": False},
        {"name": "layer1", "block": "basic", "repeat": 2, "args": {"planes": 64}},
    ],
}
# conv1: 64 * 3 * 3 * 3 = 1,728 (no bias); each BasicBlock(64): two 3x3 convs 64 * 64 * 9 = 36,864 and
# two BatchNorms 2 * 64 = 128: 73,984; two of them: 147,968. Total 149,696.
TINY_PARAMS = 1_728 + 2 * 73_984


def test_mapping_text_and_file_give_the_same_model(tmp_path):
    import yaml

    text = yaml.safe_dump(TINY, sort_keys=False)
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    for model in (archspec.load(TINY), archspec.load(text=text), archspec.loads(text), archspec.load(path)):
        assert model.analyze().totals.params == TINY_PARAMS


def test_the_mapping_is_not_modified():
    import copy

    before = copy.deepcopy(TINY)
    archspec.load(TINY)
    assert before == TINY


def test_mapping_errors_are_located_by_key_path():
    bad = {**TINY, "nodes": [{**TINY["nodes"][0], "kernel": 0}, {"name": "x", "op": "reluu"}]}
    with pytest.raises(SpecError) as info:
        archspec.load(bad)
    lines = [d.render().splitlines()[0] for d in info.value.diagnostics]
    assert lines == [
        "<mapping>:nodes[0].kernel: error: node 'conv1': invalid value 0 for 'kernel': should be at least 1",
        "<mapping>:nodes[1].op: error: node 'x': unknown op 'reluu'",
    ]


def test_mapping_expression_errors_point_into_the_string():
    bad = {**TINY, "nodes": [{**TINY["nodes"][0], "out_channels": "=64 // (2 - 2)"}]}
    with pytest.raises(SpecError) as info:
        archspec.load(bad)
    # '=64 // (2 - 2)': the divisor's first token, the '2' after '(', is character 9 (1-based).
    assert (
        info.value.diagnostics[0]
        .render()
        .startswith("<mapping>:nodes[0].out_channels:9: error: expression '=64 // (2 - 2)': division by zero")
    )


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (float("nan"), "'nan' is not a finite number"),
        (10**19, "number is too large (the limit is 10**18)"),
        (object(), "unsupported value of type object"),
    ],
)
def test_mapping_values_follow_the_file_rules(value, message):
    with pytest.raises(SpecError) as info:
        archspec.load({**TINY, "input": [3, value, 32]})
    assert info.value.diagnostics[0].message == message
    assert str(info.value.diagnostics[0].location) == "<mapping>:input[1]"


def test_text_errors_have_line_and_column():
    text = "name: t\ninput: [3, 8, 8]\nnodes:\n  - {name: c, op: conv2d, out_channels: 8, kernel: 0}\n"
    with pytest.raises(SpecError) as info:
        archspec.load(text=text)
    col = text.splitlines()[3].index("0}") + 1
    assert info.value.render().startswith(f"<string>:4:{col}: error: node 'c': invalid value 0 for 'kernel'")


def test_text_includes_resolve_in_base_dir_and_stay_confined(tmp_path):
    (tmp_path / "lib.yaml").write_text("blocks:\n  unit:\n    nodes: [{name: r, op: relu}]\n")
    text = "name: t\ninput: [3, 8, 8]\ninclude: [lib.yaml]\nnodes:\n  - {name: u, block: unit}\n"
    assert archspec.load(text=text, base_dir=tmp_path).analyze().totals.params == 0
    escape = text.replace("[lib.yaml]", "[../lib.yaml]")
    with pytest.raises(SpecError, match="points outside the spec folder"):
        archspec.load(text=escape, base_dir=tmp_path / "sub")


@pytest.mark.parametrize(
    "call", [lambda: archspec.load(), lambda: archspec.load(TINY, text="x"), lambda: archspec.load(42)]
)
def test_wrong_arguments_are_usage_errors(call):
    with pytest.raises(UsageError):
        call()


def test_readme_load_examples_run(monkeypatch, capsys):
    """The second Python block of the README's API section, as written."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Python API") :]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    monkeypatch.chdir(ROOT)
    exec(compile(blocks[1], "README.md (load examples)", "exec"), {})
    assert capsys.readouterr().out.split() == [str(TINY_PARAMS), "t"]


def test_a_path_object_works():
    assert archspec.load(Path(SPECS / "alexnet.yaml")).name == "alexnet"


def test_an_edited_block_library_is_read_again(tmp_path):
    """Parsed libraries are kept between loads, keyed by their bytes: an edit is seen at the next load."""
    lib = tmp_path / "lib.yaml"
    spec = tmp_path / "net.yaml"
    spec.write_text("name: n\ninput: [3, 8, 8]\ninclude: [lib.yaml]\nnodes:\n  - {name: u, block: unit}\n")
    lib.write_text("blocks:\n  unit:\n    nodes: [{name: c, op: conv2d, out_channels: 4, kernel: 1}]\n")
    # 1x1 conv, 3 -> 4 channels: 3*4 weights + 4 biases = 16 params.
    assert archspec.load(spec).analyze().totals.params == 16
    lib.write_text("blocks:\n  unit:\n    nodes: [{name: c, op: conv2d, out_channels: 5, kernel: 1}]\n")
    assert archspec.load(spec).analyze().totals.params == 3 * 5 + 5
    lib.write_text("blocks:\n  unit:\n    nodes: [{name: c, op: conv2d, out_channels: 5, kernel: 1, typo: 1}]\n")
    for _ in range(2):  # a library's errors are reported at every load, not only the first
        with pytest.raises(archspec.SpecError, match="typo"):
            archspec.load(spec)


def test_loading_leaves_the_garbage_collector_as_it_was(tmp_path):
    """load/analyze pause the cyclic collector and hand what they built to its oldest generation
    (graph.paused_gc): the collector's state, a program's frozen objects and its cycles are unaffected."""
    import gc
    import weakref

    class Node:
        pass

    spec = {"name": "t", "input": [3, 8, 8], "nodes": [{"name": "r", "op": "relu"}]}
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        archspec.load(spec).analyze()
        assert gc.isenabled() == enabled
    gc.enable()
    cycle = Node()
    cycle.self = cycle  # garbage only the cyclic collector can free
    alive = weakref.ref(cycle)
    del cycle
    gc.freeze()  # a program that freezes its objects (before forking, say) keeps them frozen
    try:
        frozen = gc.get_freeze_count()
        archspec.load(spec).analyze()
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()
    archspec.load(spec).analyze()
    gc.collect()
    assert alive() is None
