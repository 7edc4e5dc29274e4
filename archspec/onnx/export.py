"""Spec -> ONNX model. Each op emits its own nodes (`OpBase.to_onnx`); this module owns onnx.

Tensor names: the graph input is 'input', every layer's output tensor and last node carry the layer's
name, and initializers are named like the weights ('<layer>.<tensor>', torchvision's names for the
torchvision-equivalent specs). Constants that are not weights (a dropout ratio, pads) are Constant nodes.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from archspec.errors import Diagnostic, SpecError, UsageError
from archspec.graph import INPUT
from archspec.model import Model
from archspec.onnx import require_onnx
from archspec.ops.base import NoOnnxEquivalent, tensor_key
from archspec.reference import forward as reference

# Above this many bytes of weights the initializers go to a file beside the model: one protobuf message
# holds at most 2 GiB (RegNetY-128GF's 644 M float32 weights are 2.6 GB).
MAX_INLINE_WEIGHT_BYTES = 2**31 - 2**26
DEFAULT_OPSET = 21  # recent, and run by every onnxruntime since 1.18
MIN_OPSET = 13  # Softmax over one axis, Dropout's ratio as an input, Pad's pads as an input
# Metadata key mapping the nodes whose ONNX form does not identify them to their archspec parameters:
# stochastic ones (ONNX has no droppable branch: at inference they are an Identity or a Mul by their
# float32 survival) and size-dependent ones (an adaptive pool is a fixed AveragePool at one input size).
# archspec's importer restores them when the ONNX node computes the same shapes and tensors.
NODES_KEY = "archspec.nodes"


class _Builder:
    """Collects the nodes and initializers of one export; the `g` that ops' `to_onnx` write to."""

    def __init__(self, onnx, weights: dict[str, np.ndarray], opset: int):
        self._onnx = onnx
        self.opset = opset
        self._weights = weights
        self.nodes: list = []
        self.initializers: dict[str, object] = {}
        self.layer = ""
        self._layer_nodes: list = []

    def start(self, layer: str) -> None:
        self.layer = layer
        self._layer_nodes = []

    def _fresh(self, what: str) -> str:
        return f"{self.layer}/{what}_{len(self._layer_nodes)}"

    def node(self, op_type: str, inputs: list[str], **attributes) -> str:
        out = self._fresh(op_type)
        made = self._onnx.helper.make_node(op_type, list(inputs), [out], name=out, **attributes)
        self.nodes.append(made)
        self._layer_nodes.append(made)
        return out

    def tensor(self, key: str) -> str:
        name = tensor_key(self.layer, key)
        if name not in self.initializers:
            array = np.ascontiguousarray(self._weights[name], dtype=np.float32)
            self.initializers[name] = self._onnx.numpy_helper.from_array(array, name)
        return name

    def const(self, values, dtype: str = "int64") -> str:
        out = self._fresh("Constant")
        value = self._onnx.numpy_helper.from_array(np.asarray(values, dtype=dtype), out)
        self.nodes.append(self._onnx.helper.make_node("Constant", [], [out], name=out, value=value))
        self._layer_nodes.append(self.nodes[-1])
        return out

    def finish(self) -> str:
        """The layer's last node is named after the layer and so is its output tensor, unless an
        initializer has that name (a layer_scale's tensor is keyed by the node name); returns it."""
        last = self._layer_nodes[-1]
        if last.op_type == "Constant":
            raise AssertionError(f"{self.layer}: to_onnx must end with a computing node")
        out = self.layer if self.layer not in self.initializers else f"{self.layer}/output"
        last.output[0] = out
        last.name = self.layer
        return out


def export_model(
    model: Model,
    weights: dict[str, np.ndarray],
    opset: int = DEFAULT_OPSET,
    input_shape: tuple[int, int, int] | None = None,
):
    """The inference graph of `model` as an onnx.ModelProto with `weights` as initializers.

    The batch axis is dynamic ('N'); C, H, W are the spec's input (or `input_shape`). Raises SpecError
    at the spec line of every node that has no ONNX equivalent."""
    onnx = require_onnx()
    graph = model.graph
    shape = tuple(input_shape or model.input_shape)
    shapes = graph.infer_shapes(shape)
    reference.check_weights(graph, shapes, weights, "weights")
    builder = _Builder(onnx, weights, opset)
    errors: list[Diagnostic] = []
    recorded: dict[str, dict] = {}
    needed = graph.inference_nodes
    tensor_of = {INPUT: INPUT}  # layer -> the ONNX tensor holding its output
    for name in graph.order:
        if name not in needed:
            continue  # training-only heads are not part of the inference graph
        node = graph.nodes[name]
        op = node.op
        if any(i not in tensor_of for i in op.inputs):
            continue  # after a node that has no ONNX equivalent (reported)
        builder.start(name)
        try:
            op.to_onnx(builder, [tensor_of[i] for i in op.inputs], [shapes[i] for i in op.inputs])
        except NoOnnxEquivalent as exc:
            errors.append(Diagnostic(node.location, f"node '{name}': {exc}", exc.hint, node.trail))
            continue
        tensor_of[name] = builder.finish()
        if op.stochastic or op.size_dependent:
            recorded[name] = op.model_dump(mode="json", exclude={"name", "inputs"})
    if errors:
        raise SpecError(errors)

    helper = onnx.helper
    inputs = [helper.make_tensor_value_info(INPUT, onnx.TensorProto.FLOAT, ["N", *shape])]
    outputs = [
        helper.make_tensor_value_info(tensor_of[o], onnx.TensorProto.FLOAT, ["N", *shapes[o]]) for o in graph.outputs
    ]
    onnx_graph = helper.make_graph(builder.nodes, model.name, inputs, outputs, list(builder.initializers.values()))
    proto = helper.make_model(
        onnx_graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="archspec", doc_string=model.name
    )
    proto.ir_version = min(proto.ir_version, _ir_version_for(onnx, opset))
    if recorded:
        helper.set_model_props(proto, {NODES_KEY: json.dumps(recorded)})
    return proto


def write_model(proto, out: Path) -> list[Path]:
    """Check the model with `onnx.checker` (full check) and write it to `out`, replacing the file only once
    it is complete. A model whose weights exceed one protobuf message keeps its initializers in
    `<out>.data` beside it (ONNX's external data, which onnxruntime and archspec's importer read); then
    `proto` loses its weights' bytes to that file. Returns the files written."""
    onnx = require_onnx()
    from archspec.report.files import atomic_write_bytes

    out = Path(out)
    if sum(t.ByteSize() for t in proto.graph.initializer) <= MAX_INLINE_WEIGHT_BYTES:
        onnx.checker.check_model(proto, full_check=True)
        atomic_write_bytes(out, proto.SerializeToString())
        return [out]
    folder = out.parent if str(out.parent) else Path(".")
    if out.is_dir():
        raise UsageError(f"{out}: error: is a directory; give a file name")
    if not folder.is_dir():
        raise UsageError(f"{folder}: error: output folder does not exist")
    data = out.with_name(out.name + ".data")
    with tempfile.TemporaryDirectory(dir=folder, prefix=f".{out.name}.") as staging:
        staged = Path(staging) / out.name
        onnx.save_model(
            proto, str(staged), save_as_external_data=True, all_tensors_to_one_file=True, location=data.name
        )
        onnx.checker.check_model(str(staged), full_check=True)  # by path: the checker's way past 2 GiB
        os.replace(Path(staging) / data.name, data)
        os.replace(staged, out)
    return [out, data]


def _ir_version_for(onnx, opset: int) -> int:
    """The IR version that goes with `opset` (so older runtimes accept the file)."""
    for entry in onnx.helper.VERSION_TABLE:  # (release, ir_version, ai.onnx opset, ai.onnx.ml opset[, ...])
        if entry[2] == opset:
            return entry[1]
    return onnx.IR_VERSION


def check_opset(opset: int) -> None:
    onnx = require_onnx()
    newest = onnx.defs.onnx_opset_version()
    if not MIN_OPSET <= opset <= newest:
        from archspec.errors import UsageError

        raise UsageError(f"error: --opset {opset} is not supported; choose {MIN_OPSET} to {newest}")
