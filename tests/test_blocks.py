"""Blocks: expansion, names, repeat/first, bypassed nodes, and errors at the use site and template."""

from __future__ import annotations

import pytest

import archspec
from archspec.errors import SpecError

LIB = """blocks:
  unit:
    params: {width: null, stride: 1, project: false}
    nodes:
      - {name: conv, op: conv2d, out_channels: $width, kernel: 3, stride: $stride, padding: 1}
      - {name: proj, op: conv2d, inputs: input, out_channels: $width, kernel: 1, stride: $stride, when: $project}
      - {name: add, op: add, inputs: [conv, proj]}
"""


def spec(nodes: str) -> str:
    return f"""name: t
input: [4, 16, 16]
metadata: {{source: test}}
include: [lib.yaml]
nodes:
{nodes}"""


def load(write_spec, nodes):
    write_spec(LIB, "lib.yaml")
    return archspec.load(write_spec(spec(nodes)))


def test_repeat_first_and_bypass(write_spec):
    model = load(
        write_spec,
        "  - {name: stage, block: unit, repeat: 3, args: {width: 8}, first: {stride: 2, project: true}}\n"
        "  - {name: stage2, block: unit, repeat: 2, args: {width: 8}}\n",
    )
    names = list(model.graph.order)
    # instance 0 has the projection; instances 1 and 2 bypass it (their add takes the block input).
    assert "stage.0.proj" in names and "stage.1.proj" not in names
    assert model.graph.op("stage.1.add").inputs == ["stage.1.conv", "stage.0.add"]
    shapes = model.analyze()
    layers = {layer.name: layer for layer in shapes.layers}
    # first instance: 3x3 stride 2 pad 1 on 16 -> (16 + 2 - 3) // 2 + 1 = 8; 8 channels.
    assert layers["stage.0.add"].output_shape == (8, 8, 8)
    assert layers["stage2.1.add"].output_shape == (8, 8, 8)
    # params: stage.0.conv 8*4*3*3 + 8 = 296; stage.0.proj 8*4*1*1 + 8 = 40; later convs 8*8*9 + 8 = 584.
    assert layers["stage.0.conv"].params == 296 and layers["stage.0.proj"].params == 40
    assert layers["stage.2.conv"].params == 584


def test_merge_shape_error_names_both_inputs(write_spec):
    with pytest.raises(SpecError) as err:
        load(
            write_spec,
            "  - {name: stage, block: unit, repeat: 2, args: {width: 4}, first: {width: 8, stride: 2, project: true}}\n",
        ).analyze()
    text = err.value.render()
    # 'stage.1.conv' gives 4 channels and the block input 'stage.0.add' has 8: both named with shapes.
    assert "'stage.1.conv' [4, 8, 8], 'stage.0.add' [8, 8, 8]" in text
    assert "lib.yaml:7:" in text  # the template's add node
    assert "spec.yaml:6:" in text  # the block use


def test_unknown_block_argument_points_at_use_and_template(write_spec):
    with pytest.raises(SpecError) as err:
        load(write_spec, "  - {name: s, block: unit, args: {width: 4, strid: 2}}\n")
    text = err.value.render()
    assert "spec.yaml:6:" in text and "block 'unit' has no parameter 'strid'" in text
    assert "did you mean 'stride'?" in text
    assert "lib.yaml:2:" in text  # "block 'unit' is defined here"


def test_missing_block_argument(write_spec):
    with pytest.raises(SpecError) as err:
        load(write_spec, "  - {name: s, block: unit, args: {stride: 2}}\n")
    text = err.value.render()
    assert "block 'unit' needs argument 'width'" in text and "spec.yaml:6:" in text and "lib.yaml:2:" in text


def test_unknown_block(write_spec):
    with pytest.raises(SpecError) as err:
        load(write_spec, "  - {name: s, block: unt, args: {width: 4}}\n")
    assert "unknown block 'unt'" in err.value.render() and "did you mean 'unit'?" in err.value.render()


def test_errors_inside_a_template_show_both_locations(write_spec):
    write_spec(LIB.replace("kernel: 3", "kernel: 0"), "lib.yaml")
    with pytest.raises(SpecError) as err:
        archspec.load(write_spec(spec("  - {name: s, block: unit, args: {width: 4}}\n")))
    text = err.value.render()
    assert "lib.yaml:5:" in text and "spec.yaml:6:" in text and "'kernel'" in text


def test_repeat_name_pattern(write_spec):
    model = load(
        write_spec, "  - {name: blk, block: unit, repeat: {count: 2, name: 'layer{i}', start: 1}, args: {width: 4}}\n"
    )
    assert "blk.layer1.conv" in model.graph.order and "blk.layer2.add" in model.graph.order


def test_block_use_accepts_a_single_input_name(write_spec):
    model = load(write_spec, "  - {name: r, op: relu}\n  - {name: s, block: unit, inputs: r, args: {width: 4}}\n")
    assert model.graph.op("s.conv").inputs == ["r"]


def test_param_in_a_node_name_is_interpolated(write_spec):
    write_spec(
        "blocks:\n  branch:\n    params: {k: null}\n    nodes:\n"
        '      - {name: "conv${k}x$k", op: conv2d, out_channels: 4, kernel: $k, padding: $k // 2}\n'
        '      - {name: relu_$k, op: relu, inputs: ["conv${k}x$k"]}\n',
        "lib.yaml",
    )
    model = archspec.load(
        write_spec(spec("  - {name: a, block: branch, args: {k: 3}}\n  - {name: b, block: branch, args: {k: 5}}\n"))
    )
    assert list(model.graph.order) == ["a.conv3x3", "a.relu_3", "b.conv5x5", "b.relu_5"]
    # padding 5 // 2 = 2 keeps 16 x 16: (16 + 4 - 5) + 1 = 16
    assert model.analyze().layers[-1].output_shape == (4, 16, 16)


def test_a_flag_cannot_be_part_of_a_name(write_spec):
    write_spec("blocks:\n  unit:\n    params: {on: true}\n    nodes: [{name: r_$on, op: relu}]\n", "lib.yaml")
    with pytest.raises(SpecError) as err:
        archspec.load(write_spec(spec("  - {name: u, block: unit}\n")))
    assert "parameter '$on' is true; only a number or text can be part of a name" in err.value.render()


def test_include_limit_is_reported_once(tmp_path):
    from archspec.spec.load import MAX_INCLUDES

    names = []
    for i in range(MAX_INCLUDES + 6):
        (tmp_path / f"lib{i}.yaml").write_text(f"blocks:\n  b{i}:\n    nodes: [{{name: r, op: relu}}]\n")
        names.append(f"lib{i}.yaml")
    path = tmp_path / "spec.yaml"
    path.write_text(spec("  - {name: r, op: relu}\n").replace("[lib.yaml]", f"[{', '.join(names)}]"))
    with pytest.raises(SpecError) as err:
        archspec.load(str(path))
    assert [d.message for d in err.value.diagnostics] == [f"more than {MAX_INCLUDES} included files"]


def test_metadata_is_optional(write_spec):
    model = archspec.load(write_spec("name: mine\ninput: [3, 8, 8]\nnodes:\n  - {name: r, op: relu}\n"))
    assert model.analyze().totals.params == 0


def test_every_shipped_spec_cites_its_source():
    from archspec.spec.load import load_spec
    from conftest import SPECS

    for path in sorted(SPECS.glob("*.yaml")):
        source = load_spec(str(path)).spec.metadata.source
        assert source and len(source.strip()) >= 10, f"{path.name}: metadata.source must cite a paper or code"


def test_shipped_library_is_included_by_name_from_any_folder(tmp_path, monkeypatch):
    """A user's spec outside the specs/ folder uses torchvision's BasicBlock from the package."""
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "mine.yaml"
    path.write_text(
        "name: mine\ninput: [64, 56, 56]\ninclude: [archspec:resnet]\nnodes:\n"
        "  - {name: layer1, block: basic, repeat: 2, args: {planes: 64}}\n"
    )
    analysis = archspec.load(str(path)).analyze()
    # Two BasicBlocks of 64 channels: per block two 3x3 convs (64*64*9 = 36,864 each, no bias) and two
    # BatchNorms (2*64 = 128 each): 2 * (2 * 36,864 + 2 * 128) = 147,968 (torchvision's layer1 of resnet18).
    assert analysis.totals.params == 147_968


def test_unknown_shipped_library_suggests_a_name(write_spec):
    with pytest.raises(SpecError) as err:
        archspec.load(
            write_spec("name: t\ninput: [3, 8, 8]\ninclude: [archspec:densnet]\nnodes: [{name: r, op: relu}]\n")
        )
    text = err.value.render()
    assert "unknown block library 'archspec:densnet'" in text and "did you mean 'archspec:densenet'?" in text


def test_shipped_libraries_are_package_data():
    from archspec.spec.load import shipped_libraries

    assert {"resnet", "densenet", "squeezenet", "inception_tv"} <= set(shipped_libraries())
