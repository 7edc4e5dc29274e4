"""ONNX export and import: onnxruntime agrees with archspec, round trips are lossless, models made by
PyTorch's own exporters import with the right figures, and hostile files are refused."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import archspec
import archspec.verify
from archspec.cli import main
from archspec.errors import ArchspecError
from archspec.graph import INPUT, last_readers
from archspec.ops import MatMul, Weights
from archspec.reference.forward import group_weights
from archspec.report.table import to_json_dict

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from archspec.onnx import export as onnx_export  # noqa: E402
from archspec.onnx import importer  # noqa: E402
from archspec.onnx.export import export_model, write_model  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SPECS = sorted((ROOT / "specs").glob("*.yaml"))
FIXTURES = Path(__file__).resolve().parent / "onnx"
# CI checks every spec at its smallest exportable input except the heaviest: over 50 M params (ResNet-152,
# ResNeXt-101, Wide ResNets) or over 20 M params at 224 x 224 or more (AlexNet, ZFNet and VGG, whose fully
# connected sizes or adaptive 7 x 7 pool need the full input); every op family is among the others.
# ARCHSPEC_ONNX_ALL=1 checks them all.
MAX_CI_PARAMS, MAX_CI_PARAMS_FULL_SIZE = 50_000_000, 20_000_000
SMALL_SIDES = (32, 64, 96, 128)


def _small_input(model) -> tuple[int, int, int]:
    """The smallest square input the spec accepts and the exporter can map (else the spec's own)."""
    for side in SMALL_SIDES:
        shape = (model.input_shape[0], side, side)
        try:
            model.analyze(shape)
        except ArchspecError:
            continue
        if _exportable(model, shape):
            return shape
    return model.input_shape


def _exportable(model, shape) -> bool:
    """No node refuses (irregular adaptive pooling) at this input size."""
    shapes = model.graph.infer_shapes(shape)
    return all(
        model.graph.op(n).rf_rule([shapes[i] for i in model.graph.op(n).inputs]) != "irregular"
        for n in model.graph.order
    )


# Output scale every weighted layer is conditioned to (see _conditioned_weights).
CONDITIONED_RMS = 0.25


def _conditioned_weights(model, shape, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded random weights whose every layer keeps activations O(1), for comparing two float32 runtimes.

    With plain He-random weights and random BatchNorm statistics, deep nets with squeeze-excitation gates
    (EfficientNet-B5, B6, V2-S, V2-M) are chaotic: activations reach the hundreds, the sigmoid gates
    saturate, and perturbing every weight at float32 rounding level moves the logits by up to 57%, so no
    two runtimes can agree on them. Here, layer by layer on a separate calibration batch, each layer's
    `weight` (a conv's or linear's kernel, a norm's scale) is multiplied so that the layer's output has an
    RMS of CONDITIONED_RMS (a data-dependent init, as LSUV). Every op still computes with non-trivial
    random tensors (biases, running statistics, SE weights), so a wrong op in the exporter still gives
    a difference far above the tolerance (test_a_wrong_exported_op_fails_the_comparison)."""
    graph = model.graph
    weights = model.init_weights(seed=seed, input_shape=shape)
    grouped = group_weights(weights, graph)
    order = [n for n in graph.order if n in graph.inference_nodes]
    last = last_readers(graph, order)
    calibration = np.random.default_rng(seed + 100).normal(size=(4, *shape)).astype(np.float32)
    tensors = {INPUT: calibration}
    for name in order:
        op, tensor = graph.op(name), grouped.get(name, {})
        xs = [tensors[i] for i in op.inputs]
        out = op.forward(xs, Weights(tensor, name), MatMul())
        if "weight" in tensor:
            tensor["weight"] *= np.float32(CONDITIONED_RMS / np.sqrt(np.mean(np.square(out, dtype=np.float64))))
            out = op.forward(xs, Weights(tensor, name), MatMul())
        tensors[name] = out
        for i in set(op.inputs):
            if last.get(i) == name:
                del tensors[i]
    return weights


def _relative(got: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(got - ref).max() / np.abs(ref).max())


def _layers(analysis) -> list[dict]:
    return to_json_dict(analysis)["layers"]


@pytest.mark.parametrize("spec", SPECS, ids=lambda p: p.stem)
def test_export_runs_in_onnxruntime_and_imports_back_identically(spec, tmp_path):
    model = archspec.load(str(spec))
    shape = _small_input(model)
    params = model.analyze(shape).totals.params
    heavy = params > MAX_CI_PARAMS or (shape[1] >= 224 and params > MAX_CI_PARAMS_FULL_SIZE)
    if heavy and not os.environ.get("ARCHSPEC_ONNX_ALL"):
        pytest.skip(f"{spec.stem} needs {shape}: set ARCHSPEC_ONNX_ALL=1 to check it")
    weights = _conditioned_weights(model, shape)
    proto = export_model(model, weights, input_shape=shape)
    # initializers carry the spec's weight names (torchvision's for the torchvision specs); training-only
    # heads (GoogLeNet's auxiliary classifiers) are not part of the inference graph. A key is `<node>.weight`,
    # or the node's name itself for a tensor the node is (ConvNeXt's `layer_scale`).
    nodes = model.graph.inference_nodes
    inference = {k: v for k, v in weights.items() if k in nodes or k.rpartition(".")[0] in nodes}
    assert {t.name for t in proto.graph.initializer} == set(inference)
    # checked with onnx.checker (full check) and written; RegNetY-128GF's 2.6 GB of weights go to a file beside
    path = tmp_path / f"{spec.stem}.onnx"
    write_model(proto, path)
    del proto

    x = np.random.default_rng(1).normal(size=(2, *shape)).astype(np.float32)
    ref = model.forward(x, weights)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"input": x})[0]
    assert got.shape == ref.shape
    relative = _relative(got, ref)
    print(f"onnxruntime vs archspec: {spec.stem} at {shape}: max|diff| / max|ref| = {relative:.2e}")
    assert relative <= 1e-5
    del session

    imported = importer.import_onnx(str(path))
    back = importer.load_onnx(str(path))
    original, again = model.analyze(shape), back.analyze()
    # names, ops, shapes, params, MACs, RF, per layer, and every total (memory, peak live memory...)
    assert _layers(again) == [layer for layer in _layers(original) if not layer.get("train_only")]
    assert again.totals == original.totals
    assert (again.stochastic_depth is None) == (original.stochastic_depth is None)
    if original.stochastic_depth is not None:
        assert again.stochastic_depth == original.stochastic_depth
    assert set(imported.weights) == set(inference)
    np.testing.assert_array_equal(back.forward(x, imported.weights), ref)


def _mutated(proto, op_type: str, index: int, change) -> bytes:
    """The model with one node of `op_type` (the index-th) changed by `change(node)`."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    change([n for n in copy.graph.node if n.op_type == op_type][index])
    return copy.SerializeToString()


def _swap_inputs(i: int, j: int):
    def change(node):
        node.input[i], node.input[j] = node.input[j], node.input[i]

    return change


def test_a_wrong_exported_op_fails_the_comparison():
    """The conditioned weights keep the onnxruntime comparison a real check on a formerly chaotic net:
    exporter mistakes of the kind that could slip in move the output by far more than the 1e-5 tolerance."""
    model = archspec.load(str(ROOT / "specs" / "efficientnet_b5.yaml"))
    shape = _small_input(model)
    weights = _conditioned_weights(model, shape)
    proto = export_model(model, weights, input_shape=shape)
    x = np.random.default_rng(1).normal(size=(2, *shape)).astype(np.float32)
    ref = model.forward(x, weights)

    def run(model_bytes: bytes) -> np.ndarray:
        session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
        return session.run(None, {"input": x})[0]

    assert _relative(run(proto.SerializeToString()), ref) <= 1e-5
    mistakes = {
        # the last SE gate as a hard sigmoid (PyTorch's slope 1/6) instead of a sigmoid
        "HardSigmoid gate": _mutated(proto, "Sigmoid", -1, lambda n: setattr(n, "op_type", "HardSigmoid")),
        # one BatchNorm given its scale and shift in the wrong order
        "BatchNorm scale and shift swapped": _mutated(proto, "BatchNormalization", 20, _swap_inputs(1, 2)),
        # a depthwise convolution's output ReLU instead of SiLU: one Mul(x, sigmoid(x)) -> Relu(x)
        "ReLU for SiLU": _mutated(proto, "Mul", 30, lambda n: (setattr(n, "op_type", "Relu"), n.input.__delitem__(1))),
    }
    for what, model_bytes in mistakes.items():
        assert _relative(run(model_bytes), ref) > 1e-3, what


def _fixture(name: str):
    io = np.load(FIXTURES / f"{name}_io.npz")
    return FIXTURES / f"{name}.onnx", io["x"], io["y"]


# Hand arithmetic for tests/onnx/make_fixtures.py's Plain net (3 x 16 x 16 input):
#   conv1 3->4, 3x3, no bias: 4*3*9 = 108 weights; output 4 x 8 x 8; MACs 4*8*8 * 3*9 = 6,912
#   bn1: weight + bias = 8 (running statistics are buffers)
#   pool1 3/2 ceil: 8 -> ceil(5/2) + 1 = 4
#   conv2 4->6, (3, 1), groups 2, bias: 6*2*3 + 6 = 42; output 6 x 4 x 4; MACs 6*16 * 2*3 = 576
#   pool2 2/2 pad 1: 4 -> 3; flatten 54; fc 54*5 + 5 = 275, MACs 270
PLAIN_PARAMS_BN = 108 + 8 + 42 + 275
PLAIN_PARAMS_FOLDED = 108 + 4 + 42 + 275  # BN folded: conv1 gains a 4-element bias, BN's 8 are gone
PLAIN_MACS = 6912 + 576 + 270
# Branchy (3 x 8 x 8): stem 3->8 3x3 + bias = 224, body 8->8 3x3 + bias = 584, branch1 8->4 1x1 + bias = 36,
# branch2 8->4 3x3 dilation 2 + bias = 292, fc1 8*6 = 48 (no bias), w2 6*3 + b2 3 = 21
BRANCHY_PARAMS = 224 + 584 + 36 + 292 + 48 + 21
# MACs: stem 8*64*27 + body 8*64*72 + branch1 4*64*8 + branch2 4*64*72 + fc1 48 + 18
BRANCHY_MACS = 8 * 64 * 27 + 8 * 64 * 72 + 4 * 64 * 8 + 4 * 64 * 72 + 48 + 18


# Modern (3 x 8 x 8): conv 3->8 3x3 + bias 224 (MACs 8*64*27 = 13,824); SE conv 8->8 1x1 + bias 72 (MACs 64);
# LayerNorm(8) 16; per-pixel Linear(8, 16) 144 and Linear(16, 8) 136 (MACs 64 pixels * 128 each);
# layer scale 8; LayerNorm(8) on flat features 16; fc 8->3 27 (MACs 24)
MODERN_PARAMS = 224 + 72 + 16 + 144 + 136 + 8 + 16 + 27
MODERN_MACS = 13_824 + 64 + 2 * 64 * 128 + 24


@pytest.mark.parametrize(
    ("name", "params", "macs"),
    [
        ("plain_bn_folded", PLAIN_PARAMS_FOLDED, PLAIN_MACS),
        ("plain_bn_preserved", PLAIN_PARAMS_BN, PLAIN_MACS),
        ("plain_dynamo", PLAIN_PARAMS_FOLDED, PLAIN_MACS),
        ("branchy", BRANCHY_PARAMS, BRANCHY_MACS),
        ("branchy_dynamo", BRANCHY_PARAMS, BRANCHY_MACS),
        ("modern", MODERN_PARAMS, MODERN_MACS),
        ("modern_dynamo", MODERN_PARAMS, MODERN_MACS),
    ],
)
def test_models_exported_by_pytorch_import_with_their_figures_and_outputs(name, params, macs):
    path, x, y = _fixture(name)
    assert path.stat().st_size < 40_000  # kilobytes, not a real model
    imported = importer.import_onnx(str(path))
    model = importer.load_onnx(str(path))
    analysis = model.analyze()
    assert analysis.totals.params == params
    assert analysis.totals.macs == macs
    assert _relative(model.forward(x, imported.weights), y) <= 1e-5
    assert archspec.verify.verify_model(model, str(path)).passed


def _new_ops_spec(opset: int) -> dict:
    """Every op added for issue 7 in one small graph (GELU's tanh form only where ONNX has Gelu)."""
    nodes = [
        {"name": "c1", "op": "conv2d", "out_channels": 8, "kernel": 3, "padding": 1},
        {"name": "lni", "op": "layer_norm", "over": "image"},
        {"name": "r6", "op": "relu6"},
        {"name": "hs", "op": "hardswish"},
        {"name": "si", "op": "silu"},
        {"name": "ge", "op": "gelu"},
        *([{"name": "gt", "op": "gelu", "approximate": "tanh"}] if opset >= 20 else []),
        {"name": "ln", "op": "layer_norm", "eps": 1e-6},
        {"name": "pw", "op": "linear", "out_features": 8, "per_pixel": True},
        {"name": "ls", "op": "layer_scale"},
        {"name": "dp", "op": "drop_path", "p": 0.2},
        {"name": "sh", "op": "channel_shuffle", "groups": 2},
        {"name": "a", "op": "channel_chunk", "chunks": 3, "index": 0},
        {"name": "b", "op": "channel_chunk", "chunks": 3, "index": 2, "inputs": ["sh"]},
        {"name": "cat", "op": "concat", "inputs": ["a", "b"]},
        {"name": "pool", "op": "adaptive_avg_pool2d", "output_size": 1},
        {"name": "gate", "op": "conv2d", "out_channels": 5, "kernel": 1},
        {"name": "sg", "op": "sigmoid"},
        {"name": "hsg", "op": "hardsigmoid"},
        {"name": "se", "op": "mul", "inputs": ["cat", "hsg"]},
        {"name": "flat", "op": "flatten"},
        {"name": "ln2", "op": "layer_norm"},
        {"name": "fc", "op": "linear", "out_features": 4},
    ]
    return {"name": "new_ops", "input": [8, 6, 6], "metadata": {"source": "test"}, "nodes": nodes}


@pytest.mark.parametrize("opset", [17, 21])
def test_new_ops_export_run_and_import_back_identically(opset, tmp_path):
    model = archspec.load(_new_ops_spec(opset))
    weights = model.init_weights(seed=0)
    proto = export_model(model, weights, opset=opset)
    onnx.checker.check_model(proto, full_check=True)
    x = np.random.default_rng(1).normal(size=(2, 8, 6, 6)).astype(np.float32)
    ref = model.forward(x, weights)
    got = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    assert _relative(got, ref) <= 1e-5
    path = tmp_path / "new_ops.onnx"
    path.write_bytes(proto.SerializeToString())
    imported = importer.import_onnx(str(path))
    back = importer.load_onnx(str(path))
    assert _layers(back.analyze()) == _layers(model.analyze())
    assert back.analyze().totals == model.analyze().totals
    np.testing.assert_array_equal(back.forward(x, imported.weights), ref)


def _onnxruntime(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.parametrize("name", ["gelu_tanh", "gelu_tanh_dynamo"])
def test_gelu_tanh_written_out_below_opset_20_imports_as_one_gelu(name):
    """Both of PyTorch's exporters write GELU(approximate='tanh') out below opset 20, in different orders
    (x * x * x or Pow(x, 3); the factors 0.5 and x multiplied in either order)."""
    path, x, y = _fixture(name)
    proto = onnx.load(str(path))
    assert proto.opset_import[0].version < 20 and "Tanh" in {n.op_type for n in proto.graph.node}
    assert path.stat().st_size < 40_000
    imported = importer.import_onnx(str(path))
    assert [(n["op"], n.get("approximate")) for n in imported.spec["nodes"]][:2] == [
        ("conv2d", None),
        ("gelu", "tanh"),
    ]
    model = importer.load_onnx(str(path))
    # conv 3->4 3x3 + bias: 4*27 + 4 = 112, fc 4->3 + bias: 15; MACs 4*36*27 = 3,888 + 12
    assert (model.analyze().totals.params, model.analyze().totals.macs) == (112 + 15, 3_888 + 12)
    reference = _onnxruntime(path, x)
    assert _relative(model.forward(x, imported.weights), reference) <= 1e-5
    assert _relative(reference, y) <= 1e-5  # and onnxruntime agrees with PyTorch


@pytest.mark.parametrize("name", ["layer_norm_image", "layer_norm_image_dynamo"])
def test_layer_norm_over_a_whole_image_imports_with_its_per_element_affine(name, tmp_path):
    """nn.LayerNorm([C, H, W]): LayerNormalization with axis -3 on N x C x H x W and a weight and bias
    of shape (C, H, W) becomes layer_norm over the image, and exports back as LayerNormalization, axis 1."""
    path, x, y = _fixture(name)
    assert path.stat().st_size < 40_000
    imported = importer.import_onnx(str(path))
    norm = next(n for n in imported.spec["nodes"] if n["op"] == "layer_norm")
    assert norm["over"] == "image"
    model = importer.load_onnx(str(path))
    # conv 3->4 3x3 stride 2 + bias: 108 + 4; LayerNorm([4, 4, 4]): 2 * 64; fc 64->3 + bias: 195
    # MACs: conv 4*16*27 = 1,728, fc 192
    assert (model.analyze().totals.params, model.analyze().totals.macs) == (112 + 128 + 195, 1_728 + 192)
    reference = _onnxruntime(path, x)
    assert _relative(model.forward(x, imported.weights), reference) <= 1e-5
    assert _relative(reference, y) <= 1e-5
    assert archspec.verify.verify_model(model, str(path)).passed  # the global receptive field, measured too
    weights = model.init_weights(seed=0)
    proto = export_model(model, weights)
    again = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    assert _relative(again.run(None, {"input": x})[0], model.forward(x, weights)) <= 1e-5


def test_a_square_outside_gelu_still_imports_as_a_mul(tmp_path):
    helper = onnx.helper
    nodes = [
        helper.make_node("Mul", ["x", "x"], ["s"], name="square"),
        helper.make_node("Relu", ["s"], ["y"], name="r"),
    ]
    path = tmp_path / "square.onnx"
    onnx.save(_graph(nodes, [_value("x", ["N", 2, 3, 3])], [_value("y", ["N", 2, 3, 3])]), str(path))
    imported = importer.import_onnx(str(path))
    assert [(n["name"], n["op"]) for n in imported.spec["nodes"]] == [("square", "mul"), ("r", "relu")]
    x = np.random.default_rng(0).normal(size=(1, 2, 3, 3)).astype(np.float32)
    assert _relative(importer.load_onnx(str(path)).forward(x, {}), _onnxruntime(path, x)) <= 1e-6


def test_asymmetric_pads_are_refused_in_one_message_listing_every_node(capsys):
    """archspec's conv2d and pooling pad both sides alike; a file with pads [top, left, bottom, right],
    top != bottom or left != right (TensorFlow's SAME at stride 2, tests/onnx/make_asymmetric_pads.py),
    is refused, every such node listed, though the nodes after the first are fed by a refused node."""
    path, x, y = _fixture("asymmetric_pads")
    np.testing.assert_allclose(_onnxruntime(path, x), y, rtol=1e-6)  # a valid model that onnxruntime runs
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{path}: error: 3 ONNX node(s) have no archspec equivalent:")
    for op_type, name in (("Conv", "conv"), ("MaxPool", "max_pool"), ("AveragePool", "avg_pool")):
        assert f"  {op_type} (asymmetric padding, which archspec's conv2d and pooling cannot express) x1: {name}" in err
    assert "Traceback" not in err


def _archspec_run(spec, weights, x: np.ndarray, tmp_path) -> np.ndarray:
    """`archspec run SPEC --weights W --input x.npy --out y.npy`, as a user runs it; returns y."""
    np.save(tmp_path / "x.npy", x)
    args = ["run", str(spec), "--weights", str(weights), "--input", str(tmp_path / "x.npy")]
    assert main([*args, "--out", str(tmp_path / "y.npy")]) == 0
    return np.load(tmp_path / "y.npy")


def test_the_import_summary_says_batchnorm_was_folded(capsys, tmp_path):
    path, _, _ = _fixture("plain_bn_folded")
    assert main(["import", str(path), "--out", str(tmp_path / "p.yaml")]) == 0
    out = capsys.readouterr().out
    assert "folded them into the preceding convolutions" in out and "MACs are unchanged" in out
    path, _, _ = _fixture("plain_bn_preserved")
    assert main(["import", str(path), "--out", str(tmp_path / "q.yaml")]) == 0
    assert "folded them" not in capsys.readouterr().out


def test_import_writes_a_readable_spec_and_weights_that_run_accepts(tmp_path, capsys):
    path, x, y = _fixture("branchy")
    spec, weights = tmp_path / "b.yaml", tmp_path / "b.npz"
    assert main(["import", str(path), "--out", str(spec), "--weights-out", str(weights)]) == 0
    text = spec.read_text()
    nodes = text.split("nodes:\n")[1].splitlines()
    assert all(line.startswith("  - {name: ") and line.endswith("}") for line in nodes)  # one line per node
    assert "  - {name: stem, op: conv2d, out_channels: 8, kernel: 3, padding: 1}" in nodes
    assert _relative(_archspec_run(spec, weights, x, tmp_path), y) <= 1e-5


@pytest.mark.parametrize("command", ["analyze", "verify", "compare", "report"])
def test_commands_take_an_onnx_file_directly(command, tmp_path, capsys):
    path, _, _ = _fixture("plain_bn_preserved")
    args = [command, str(path)] + (["--out-dir", str(tmp_path)] if command == "report" else [])
    assert main(args) == 0
    out = capsys.readouterr().out
    assert ("433" in out) if command in ("analyze", "compare") else True
    if command == "verify":
        assert "PASS" in out


def test_cli_export_then_onnxruntime_equals_archspec_run(tmp_path, capsys):
    spec = ROOT / "specs" / "resnet18.yaml"
    model = archspec.load(str(spec))
    weights = model.init_weights(seed=3, input_shape=(3, 32, 32))
    np.savez(tmp_path / "w.npz", **weights)
    out = tmp_path / "r.onnx"
    code = main(
        [
            "export",
            str(spec),
            "--out",
            str(out),
            "--weights",
            str(tmp_path / "w.npz"),
            "--input",
            "3,32,32",
            "--opset",
            "18",
        ]
    )
    assert code == 0
    proto = onnx.load(str(out))
    assert proto.opset_import[0].version == 18
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    y = _archspec_run(spec, tmp_path / "w.npz", x, tmp_path)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert _relative(session.run(None, {"input": x})[0], y) <= 1e-5


def test_weights_over_one_protobuf_message_are_exported_beside_the_model(tmp_path, capsys, monkeypatch):
    """RegNetY-128GF's weights (2.6 GB) exceed protobuf's 2 GiB: the exporter writes them as ONNX external
    data in `<out>.data`, which onnxruntime and the importer read (shown here with the limit lowered)."""
    monkeypatch.setattr(onnx_export, "MAX_INLINE_WEIGHT_BYTES", 1000)
    out = tmp_path / "r.onnx"
    spec = str(ROOT / "specs" / "resnet18.yaml")
    assert main(["export", spec, "--out", str(out), "--input", "3,32,32", "--seed", "3"]) == 0
    assert f"wrote {out}.data: the weights" in capsys.readouterr().out
    assert out.stat().st_size < 100_000 < (tmp_path / "r.onnx.data").stat().st_size
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.onnx", "r.onnx.data"]  # no staging folder left
    model = archspec.load(spec)
    weights = model.init_weights(seed=3, input_shape=(3, 32, 32))
    x = np.random.default_rng(0).normal(size=(1, 3, 32, 32)).astype(np.float32)
    ref = model.forward(x, weights)
    assert _relative(_onnxruntime(out, x), ref) <= 1e-5
    # the one data file counts once against the importer's external-data limit (4 x MAX_ONNX_BYTES), not
    # once per tensor in it
    monkeypatch.setattr(importer, "MAX_ONNX_BYTES", (tmp_path / "r.onnx.data").stat().st_size // 2)
    imported = importer.import_onnx(str(out))
    assert importer.load_onnx(str(out)).analyze().totals == model.analyze((3, 32, 32)).totals
    np.testing.assert_array_equal(importer.load_onnx(str(out)).forward(x, imported.weights), ref)


def test_export_refuses_irregular_adaptive_pooling_at_its_spec_line(tmp_path, capsys):
    spec = ROOT / "specs" / "alexnet_torchvision.yaml"
    line = next(i for i, text in enumerate(spec.read_text().splitlines(), 1) if "name: avgpool" in text)
    code = main(["export", str(spec), "--out", str(tmp_path / "a.onnx"), "--input", "3,100,100"])
    err = capsys.readouterr().err
    assert code == 2
    assert f"alexnet_torchvision.yaml:{line}:" in err and "unequal" in err and "hint:" in err
    assert not (tmp_path / "a.onnx").exists()


def _graph(nodes, inputs, outputs, initializers=(), opset=18):
    helper = onnx.helper
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _value(name, dims):
    return onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, dims)


def test_unsupported_ops_are_listed_in_one_message_with_counts_and_names(tmp_path, capsys):
    helper = onnx.helper
    nodes = [
        helper.make_node("Cos", ["x"], ["a"], name="t1"),
        helper.make_node("Relu", ["a"], ["b"], name="r"),
        helper.make_node("Cos", ["b"], ["c"], name="t2"),
        helper.make_node("Sin", ["b"], ["y"], name="e"),
    ]
    path = tmp_path / "m.onnx"
    onnx.save(_graph(nodes, [_value("x", ["N", 3, 8, 8])], [_value("y", ["N", 3, 8, 8])]), str(path))
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "3 ONNX node(s) have no archspec equivalent" in err
    assert "Cos x2: t1, t2" in err and "Sin x1: e" in err
    assert "Traceback" not in err


def test_dynamic_spatial_sizes_need_input(tmp_path, capsys):
    helper = onnx.helper
    path = tmp_path / "d.onnx"
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="r")]
    onnx.save(_graph(nodes, [_value("x", ["N", 3, "H", "W"])], [_value("y", ["N", 3, "H", "W"])]), str(path))
    assert main(["analyze", str(path)]) == 2
    assert "give them with --input" in capsys.readouterr().err
    assert main(["analyze", str(path), "--input", "3,20,30"]) == 0
    assert "3 x 20 x 30" in capsys.readouterr().out


def test_declared_shapes_that_contradict_the_weights_are_refused(tmp_path, capsys):
    path, _, _ = _fixture("plain_bn_preserved")
    proto = onnx.load(str(path))
    proto.graph.output[0].type.tensor_type.shape.dim[1].dim_value = 7  # the fc layer has 5 outputs
    bad = tmp_path / "bad.onnx"
    onnx.save(proto, str(bad))
    assert main(["analyze", str(bad)]) == 2
    assert "declares 'y' as [N, 7], but its weights and ops give [N, 5]" in capsys.readouterr().err

    proto = onnx.load(str(path))
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    for attr in conv.attribute:
        if attr.name == "kernel_shape":
            attr.ints[:] = [5, 5]
    onnx.save(proto, str(bad))
    assert main(["analyze", str(bad)]) == 2
    assert "contradicts its weight's shape" in capsys.readouterr().err


def test_size_limit_is_checked_before_parsing(tmp_path, capsys, monkeypatch):
    path = tmp_path / "big.onnx"
    path.write_bytes(b"\xff" * 2048)  # not even protobuf: the size check must come first
    monkeypatch.setattr(importer, "MAX_ONNX_BYTES", 1024)
    assert main(["analyze", str(path)]) == 2
    assert "more than the limit of 1,024" in capsys.readouterr().err
    monkeypatch.undo()
    assert main(["analyze", str(path)]) == 2
    assert "not an ONNX model" in capsys.readouterr().err


@pytest.mark.parametrize("name", ["plain_bn_preserved", "branchy_dynamo", "modern"])
def test_weights_are_read_on_demand_exactly_as_onnx_reads_them(name, tmp_path):
    """The importer parses the graph without the tensors' data and reads each weight from the file when
    asked; the values must be onnx's own, also for weights stored as external data beside the model."""
    path, x, _ = _fixture(name)
    proto = onnx.load(str(path))
    expected = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    external = tmp_path / f"{name}.onnx"
    onnx.save_model(proto, str(external), save_as_external_data=True, location="w.bin", size_threshold=0)
    assert (tmp_path / "w.bin").stat().st_size > 0
    for model_path in (path, external):
        lean, loaders = importer.read_model(str(model_path))
        assert all(not t.raw_data and not t.float_data for t in lean.graph.initializer)
        got = {t.name: load() for t, load in zip(lean.graph.initializer, loaders, strict=True)}
        assert got.keys() == expected.keys()
        for key, array in expected.items():
            np.testing.assert_array_equal(got[key], array)
        imported = importer.import_onnx(str(model_path))
        model = importer.load_onnx(str(model_path))
        assert _relative(model.forward(x, imported.weights), _onnxruntime(path, x)) <= 1e-5


def test_a_file_of_countless_tiny_fields_is_refused_quickly(tmp_path, capsys, monkeypatch):
    """The importer walks the model's top-level protobuf fields in Python; a hostile file of millions of
    tiny fields is refused after MAX_WIRE_FIELDS of them (lowered here), not walked for minutes."""
    path = tmp_path / "many.onnx"
    path.write_bytes(bytes([0xA0, 0x01, 0x00]) * 1000)  # 1,000 fields: key 0xA0 0x01 (field 20, a varint), value 0
    monkeypatch.setattr(importer, "MAX_WIRE_FIELDS", 500)
    assert main(["analyze", str(path)]) == 2
    assert capsys.readouterr().err.strip() == f"{path}: error: more than 500 protobuf fields, which no model has"


def test_a_truncated_file_is_not_an_onnx_model(tmp_path, capsys):
    path, _, _ = _fixture("branchy")
    cut = tmp_path / "cut.onnx"
    cut.write_bytes(path.read_bytes()[:-100])
    assert main(["analyze", str(cut)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"{cut}: error: not an ONNX model") and "Traceback" not in err


def test_external_data_outside_the_model_folder_is_refused(tmp_path, capsys):
    helper = onnx.helper
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.zeros(3 * 3 * 9, dtype=np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    weight = onnx.TensorProto(name="w", data_type=onnx.TensorProto.FLOAT, dims=[3, 3, 3, 3])
    weight.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", "../secret.bin"), ("offset", "0"), ("length", str(secret.stat().st_size))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], name="c", kernel_shape=[3, 3])]
    path = folder / "m.onnx"
    path.write_bytes(
        _graph(nodes, [_value("x", ["N", 3, 8, 8])], [_value("y", ["N", 3, 6, 6])], [weight]).SerializeToString()
    )
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err
    assert "points at external data '../secret.bin' outside the model's folder" in err


def test_yaml_analysis_does_not_import_onnx():
    code = (
        "import sys; from archspec.cli import main; "
        "assert main(['analyze', 'specs/alexnet.yaml']) == 0; "
        "assert 'onnx' not in sys.modules and 'onnxruntime' not in sys.modules"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert result.returncode == 0, result.stderr


def test_without_onnx_a_one_line_error_says_what_to_install(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    path, _, _ = _fixture("branchy")
    assert main(["analyze", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: ONNX support needs the 'onnx' package: pip install 'archspec[onnx]'"
    assert main(["export", str(ROOT / "specs" / "resnet18.yaml"), "--out", str(tmp_path / "r.onnx")]) == 2
    assert "pip install 'archspec[onnx]'" in capsys.readouterr().err
