"""ONNX model -> a plain spec mapping (what a YAML spec file holds) and its weights.

The file is untrusted: its size is checked before parsing, external-data tensors must lie inside the
model's folder, shapes it declares must agree with its weights and with archspec's own shape rules,
and nothing from it is executed (constants are folded with NumPy only for the few shape patterns
exporters emit). Anything archspec cannot represent is reported in one message: every unsupported op
type with its count and node names.

Each ONNX node is mapped to one archspec node (Conv -> conv2d, Gemm -> linear, ...), or is folded
into a pattern that exporters emit for one PyTorch op (Shape-Gather-Unsqueeze-Concat-Reshape ->
flatten; MatMul + Add -> linear; Constant and Identity chains -> nothing).
"""

from __future__ import annotations

import functools
import json
import math
import mmap
import os
import re
import stat
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
from pydantic import ValidationError
from pydantic_core import PydanticUndefined

from archspec.errors import UsageError
from archspec.graph import INPUT
from archspec.onnx import require_onnx
from archspec.onnx.export import NODES_KEY
from archspec.ops import REGISTRY, ShapeError
from archspec.ops.base import tensor_key

MAX_ONNX_BYTES = 2 << 30  # 2 GiB: protobuf's own limit for one message (VGG-19 with weights is 0.55 GiB)
MAX_ONNX_NODES = 20_000  # as many as a spec may have after expanding blocks
# Protobuf fields the importer walks itself (the model's, the graph's and each initializer's; see
# _lean_model): DenseNet-121 has about 3,000, a model at MAX_ONNX_NODES with as many weights under 200,000.
MAX_WIRE_FIELDS = 1_000_000
MAX_NAMES_SHOWN = 5  # node names listed per unsupported op type


class ImportError_(UsageError):  # not the builtin ImportError
    """The ONNX file cannot be read or represented (exit code 2)."""


class _Lazy:
    """A weight read from the file only when its values are wanted: analysis needs its shape alone,
    and copying a model's weights out of the protobuf takes longer than the whole analysis."""

    def __init__(self, shape: tuple[int, ...], make):
        self.shape = tuple(map(int, shape))
        self.ndim = len(self.shape)
        self.size = math.prod(self.shape)
        self._make = make

    def array(self) -> np.ndarray:
        return np.ascontiguousarray(self._make(), dtype=np.float32)


def _materialize(value) -> np.ndarray:
    return value.array() if isinstance(value, _Lazy) else np.ascontiguousarray(value, dtype=np.float32)


@dataclass(frozen=True)
class Imported:
    spec: dict  # a plain mapping, exactly what a YAML spec file would hold
    lazy_weights: dict  # '<layer>.<tensor>' -> array or _Lazy
    notes: tuple[str, ...]  # what the import summary says (folded BatchNorm, folded patterns)

    @cached_property
    def weights(self) -> dict[str, np.ndarray]:
        """'<layer>.<tensor>' -> float32 array, as `archspec run` takes them (read on first use)."""
        return {key: _materialize(value) for key, value in self.lazy_weights.items()}


# ---- reading the file safely ---------------------------------------------------------------------


def read_model(path: str):
    """Parse an ONNX file after checking its size; external data only from inside its folder.

    Returns the model without its tensors' data, and for each initializer (in order) a function that
    reads its values: analysis needs only the graph and the weights' shapes, and copying hundreds of
    megabytes of weights out of the file was most of the time an import took (see _lean_model)."""
    onnx = require_onnx()
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UsageError(f"{path}: error: no such file") from None
    except OSError as exc:
        raise UsageError(f"{path}: error: cannot open file ({exc.strerror})") from None
    if not stat.S_ISREG(info.st_mode):
        raise UsageError(f"{path}: error: not a regular file")
    if info.st_size > MAX_ONNX_BYTES:
        raise UsageError(
            f"{path}: error: the file has {info.st_size:,} bytes, more than the limit of {MAX_ONNX_BYTES:,}",
            # a larger model keeps its weights as external data, which is read separately
        )
    with open(path, "rb") as handle:
        size = os.fstat(handle.fileno()).st_size
        if size > MAX_ONNX_BYTES:  # it grew since
            raise UsageError(f"{path}: error: the file has {size:,} bytes, more than the limit of {MAX_ONNX_BYTES:,}")
        # mapped, not read: the pages of the weights are only touched if their values are asked for
        data = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
    try:
        lean, ranges = _lean_model(data)
        proto = onnx.ModelProto.FromString(lean)
    except _TooManyFields:
        raise UsageError(f"{path}: error: more than {MAX_WIRE_FIELDS:,} protobuf fields, which no model has") from None
    except Exception as exc:  # _Malformed, protobuf's DecodeError and friends
        raise UsageError(f"{path}: error: not an ONNX model ({type(exc).__name__})") from None
    if proto.graph is None or not proto.graph.node:
        raise UsageError(f"{path}: error: the ONNX model has no graph nodes")
    if len(proto.graph.node) > MAX_ONNX_NODES:
        raise UsageError(f"{path}: error: {len(proto.graph.node):,} nodes, more than the limit of {MAX_ONNX_NODES:,}")
    folder = _check_external_data(onnx, proto, Path(path))
    loaders = [_loader(onnx, data, start, end, folder) for start, end in ranges]
    return proto, loaders


class _Malformed(Exception):
    """Bytes that are not protobuf's wire format."""


class _TooManyFields(Exception):
    """More protobuf fields than MAX_WIRE_FIELDS."""


# TensorProto's fields that hold values: float_data, int32_data, string_data, int64_data, raw_data,
# double_data, uint64_data (onnx.proto). Everything else (dims, data_type, name, external_data...) is kept.
_TENSOR_DATA_FIELDS = frozenset({4, 5, 6, 7, 9, 10, 11})
_MODEL_GRAPH, _GRAPH_INITIALIZER = 7, 5  # ModelProto.graph, GraphProto.initializer


def _varint(data, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data, start: int, end: int, budget: list[int]):
    """(field number, wire type, start of its key, start of its value, end) of each field of one message.
    `budget` holds how many more fields may be walked: a hostile file of 2 GiB of tiny fields would
    otherwise keep this Python loop busy for minutes (protobuf's own parser is C)."""
    pos = start
    while pos < end:
        budget[0] -= 1
        if budget[0] < 0:
            raise _TooManyFields
        key_start = pos
        key = data[pos]
        if key < 0x80:  # field numbers below 16: one byte
            pos += 1
        else:
            key, pos = _varint(data, pos, end)
        wire = key & 7
        if wire == 2:
            if pos >= end:
                raise _Malformed
            length = data[pos]
            if length < 0x80:
                pos += 1
            else:
                length, pos = _varint(data, pos, end)
            after = pos + length
        elif wire == 0:
            _, after = _varint(data, pos, end)
        elif wire == 1:
            after = pos + 8
        elif wire == 5:
            after = pos + 4
        else:  # groups (3, 4) are not in onnx.proto
            raise _Malformed
        if after > end:
            raise _Malformed
        yield key >> 3, wire, key_start, pos, after
        pos = after


def _length_delimited(number: int, payload: bytes) -> bytes:
    out = bytearray()
    for value in ((number << 3) | 2, len(payload)):
        while value >= 0x80:
            out.append((value & 0x7F) | 0x80)
            value >>= 7
        out.append(value)
    return bytes(out) + payload


def _lean_model(data) -> tuple[bytes, list[tuple[int, int]]]:
    """The model's bytes with every initializer's values left out, and where each initializer lies in
    `data`. Only the model's and the graph's top-level fields and the initializers' fields are walked
    here; protobuf itself then parses the rest (nodes, inputs, attributes)."""
    parts, ranges, budget = [], [], [MAX_WIRE_FIELDS]
    for number, wire, key_start, start, after in _fields(data, 0, len(data), budget):
        if number != _MODEL_GRAPH or wire != 2:
            parts.append(data[key_start:after])
            continue
        graph, run_start = [], start  # runs of fields kept as they are, sliced once per run
        for g_number, g_wire, g_key, g_start, g_after in _fields(data, start, after, budget):
            if g_number == _GRAPH_INITIALIZER and g_wire == 2:
                graph.append(data[run_start:g_key])
                graph.append(_length_delimited(_GRAPH_INITIALIZER, _without_values(data, g_start, g_after, budget)))
                ranges.append((g_start, g_after))
                run_start = g_after
        graph.append(data[run_start:after])
        parts.append(_length_delimited(_MODEL_GRAPH, b"".join(graph)))
    return b"".join(parts), ranges


def _without_values(data, start: int, end: int, budget: list[int]) -> bytes:
    """One TensorProto's bytes without its value fields (_TENSOR_DATA_FIELDS)."""
    kept, run_start = [], start
    for number, _, key_start, _, after in _fields(data, start, end, budget):
        if number in _TENSOR_DATA_FIELDS:
            kept.append(data[run_start:key_start])
            run_start = after
    kept.append(data[run_start:end])
    return b"".join(kept)


def _loader(onnx, data, start: int, end: int, folder: Path | None):
    """Reads one initializer's values: its whole TensorProto parsed from the file, external data loaded."""

    def load() -> np.ndarray:
        tensor = onnx.TensorProto.FromString(data[start:end])
        if tensor.data_location == onnx.TensorProto.EXTERNAL and folder is not None:
            _load_external_tensor(onnx, tensor, folder)
        return onnx.numpy_helper.to_array(tensor)

    return load


def _load_external_tensor(onnx, tensor, folder: Path) -> None:
    onnx.external_data_helper.load_external_data_for_tensor(tensor, str(folder))
    tensor.data_location = onnx.TensorProto.DEFAULT
    del tensor.external_data[:]


def _check_external_data(onnx, proto, path: Path) -> Path | None:
    """Refuse tensors stored beside the model outside the model's folder; load those of node attributes
    (constants: initializers are read on demand). Returns the folder if any tensor is external."""
    folder, sizes = None, {}  # each external file once: exporters put every tensor into one file
    for tensor in _all_tensors(proto):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        folder = folder or path.resolve().parent
        entries = {e.key: e.value for e in tensor.external_data}
        location = entries.get("location", "")
        target = (folder / location).resolve()
        if Path(location).is_absolute() or not target.is_relative_to(folder) or not target.is_file():
            raise UsageError(
                f"{path}: error: tensor '{tensor.name}' points at external data {location!r} outside the model's folder"
                " (or not a regular file)",
            )
        sizes[target] = target.stat().st_size
        if sum(sizes.values()) > 4 * MAX_ONNX_BYTES:
            raise UsageError(f"{path}: error: external data larger than {4 * MAX_ONNX_BYTES:,} bytes")
    if folder is not None:
        for node in proto.graph.node:
            for attr in node.attribute:
                if attr.HasField("t") and attr.t.data_location == onnx.TensorProto.EXTERNAL:
                    _load_external_tensor(onnx, attr.t, folder)
    return folder


def _all_tensors(proto):
    yield from proto.graph.initializer
    for node in proto.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t


# ---- values flowing through the conversion ------------------------------------------------------


@dataclass(frozen=True)
class Tensor:
    """An archspec tensor: the graph input or a node's output, with its per-image shape."""

    node: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ShapeVector:
    """A 1-D int64 value computed from shapes (Shape, Gather, Unsqueeze, Concat): None is the batch."""

    dims: tuple[int | None, ...]
    scalar: bool = False


@dataclass(frozen=True)
class Pattern:
    """A partial exporter pattern (x / sqrt 2, erf(...), x * 0.5, a channel grouping, ...)."""

    kind: str
    source: Tensor
    value: object = None


class Unsupported(Exception):
    def __init__(self, reason: str = ""):
        super().__init__(reason)
        self.reason = reason


_NAME = re.compile(r"[^A-Za-z0-9_.\-]+")  # torchvision's module paths use these ('block1-0')


@functools.cache
def _defaults(cls) -> dict:
    """Each field's default, for fields that have one (the handlers write plain JSON values)."""
    return {name: f.default for name, f in cls.model_fields.items() if f.default is not PydanticUndefined}


def _validated(entry: dict):
    """The op of one spec entry, validated by its own class as spec loading does (Unsupported if refused)."""
    cls = REGISTRY.get(entry["op"]) if isinstance(entry.get("op"), str) else None
    if cls is None:
        raise Unsupported(f"no archspec op {entry.get('op')!r}")
    try:
        return cls.model_validate(entry)
    except ValidationError as exc:
        raise Unsupported(f"parameters archspec refuses: {exc.errors()[0]['msg']}") from None


def _sanitize(text: str) -> str:
    name = _NAME.sub("_", text).strip("._-")
    return name or "node"


def _f32(value) -> float:
    """An ONNX float attribute (float32) as the shortest decimal that reads back as it: 1e-05, not
    9.999999747378752e-06."""
    return float(str(np.float32(value)))


def _pair(values) -> int | list[int]:
    values = [int(v) for v in values]
    return values[0] if len(values) == 2 and values[0] == values[1] else values


@dataclass
class _Converter:
    onnx: object
    proto: object
    path: str
    input_shape: tuple[int, int, int] | None
    values: dict[str, object] = field(default_factory=dict)
    nodes: list[dict] = field(default_factory=list)
    weights: dict[str, np.ndarray] = field(default_factory=dict)
    shapes: dict[str, tuple] = field(default_factory=dict)
    names: set[str] = field(default_factory=set)
    unsupported: dict[str, list[str]] = field(default_factory=dict)
    folded: dict[str, int] = field(default_factory=dict)
    consumers: dict[str, int] = field(default_factory=dict)
    pending_bias: dict[str, dict] = field(default_factory=dict)  # MatMul output -> its linear node
    weight_names: dict[str, str] = field(default_factory=dict)  # a transposed weight -> its initializer
    stochastic: dict = field(default_factory=dict)  # node -> its archspec parameters (NODES_KEY metadata)
    sigmoid_of: dict = field(default_factory=dict)  # archspec sigmoid node -> its input node (for x * sigmoid(x))
    opset: int = 1
    loaders: list = field(default_factory=list)  # per initializer, in order: reads its values (read_model)

    # ---- helpers ----
    def attrs(self, node) -> dict:
        kinds = self.onnx.AttributeProto
        values = {}
        for a in node.attribute:  # the common kinds directly (onnx.helper's general reader is slower)
            if a.type == kinds.INT:
                values[a.name] = a.i
            elif a.type == kinds.INTS:
                values[a.name] = list(a.ints)
            elif a.type == kinds.FLOAT:
                values[a.name] = a.f
            else:
                values[a.name] = self.onnx.helper.get_attribute_value(a)
        return values

    def fold(self, what: str) -> None:
        self.folded[what] = self.folded.get(what, 0) + 1

    def value(self, name: str):
        """The value of an ONNX tensor; a constant's values are read here (shapes, pads, a bias...)."""
        value = self.values.get(name)
        if isinstance(value, _Lazy):
            value = self.values[name] = value.array()
        return value

    def const(self, name: str) -> np.ndarray | None:
        value = self.value(name)
        return value if isinstance(value, np.ndarray) else None

    def ints(self, name: str) -> np.ndarray | None:
        """Integer values: a constant, or sizes computed from known shapes."""
        value = self.value(name)
        if isinstance(value, ShapeVector) and None not in value.dims:
            return np.asarray(value.dims, dtype=np.int64)
        return value if isinstance(value, np.ndarray) else None

    def weight(self, name: str):
        """A constant tensor whose values are only read if the weights are asked for."""
        value = self.values.get(name)
        return value if isinstance(value, (_Lazy, np.ndarray)) else None

    def tensor(self, name: str) -> Tensor:
        value = self.values.get(name)
        if isinstance(value, Pattern) and value.kind == "x^2":
            # x * x that did not continue into GELU's tanh approximation: archspec's mul of x with itself
            value = self.values[name] = self.emit(value.value, {"op": "mul"}, [value.source, value.source], {})
        if not isinstance(value, Tensor):
            raise Unsupported("an input that is not a feature map")
        return value

    def layer_name(self, node, weight: str | None = None) -> str:
        """A readable, unique name: the weight's module path ('features.0' for 'features.0.weight'),
        else the module path in the node's name ('/layer1/layer1.0/relu/Relu' -> 'layer1.0.relu')."""
        candidates = []
        if weight and node.op_type == "Mul":  # a layer_scale's tensor is keyed by the node name itself
            candidates.append(weight)
        if weight and weight.endswith(".weight"):
            candidates.append(weight[: -len(".weight")])
        parts = [p for p in node.name.split("/") if p]
        if len(parts) > 1:
            path = ""
            for part in parts[:-1]:  # the last part is the op ('Conv', 'Relu_1')
                path = part if not path or part.startswith(path + ".") else f"{path}.{part}"
            candidates.append(path)
        # torch's dynamo exporter names nodes 'node_<aten op>': the prefix says nothing
        candidates.append(node.name.removeprefix("node_") or node.op_type.lower())
        for raw in candidates[:-1]:  # made valid only when tried: the first one usually is free
            candidate = _sanitize(raw)
            if candidate not in self.names and candidate != INPUT:
                return self._claim(candidate)
        last = _sanitize(candidates[-1])
        if last not in self.names and last != INPUT:
            return self._claim(last)
        base = last if last != INPUT else "input_"
        k = 1
        while f"{base}_{k}" in self.names:
            k += 1
        return self._claim(f"{base}_{k}")

    def _claim(self, name: str) -> str:
        self.names.add(name)
        return name

    def emit(self, node, spec: dict, inputs: list[Tensor], tensors: dict[str, np.ndarray], weight_name=None) -> Tensor:
        """Add an archspec node, check its weights against its own shape rules, return its output."""
        name = self.layer_name(node, weight_name)
        entry = {"name": name, **spec, "inputs": [t.node for t in inputs]}
        op = _validated(entry)
        in_shapes = [t.shape for t in inputs]
        recorded = self._recorded(node, entry, op, in_shapes, tensors)
        # the op as a spec line: name and op first, then the parameters that differ from their defaults
        if recorded is None:
            defaults = _defaults(type(op))
            fields = {k: v for k, v in spec.items() if k != "op" and (k not in defaults or defaults[k] != v)}
        else:
            op = recorded
            fields = op.model_dump(mode="json", exclude={"name", "inputs"}, exclude_defaults=True)
        entry = {"name": name, "op": op.op, **fields, "inputs": [t.node for t in inputs]}
        try:
            shape = tuple(op.output_shape(in_shapes))
        except ShapeError as exc:
            raise ImportError_(f"{self.path}: error: node '{node.name}' ({node.op_type}): {exc}") from None
        expected = {**op.param_shapes(in_shapes), **op.buffer_shapes(in_shapes)} if tensors else {}
        for key, array in tensors.items():
            if tuple(array.shape) != tuple(expected.get(key, ())):
                raise ImportError_(
                    f"{self.path}: error: node '{node.name}' ({node.op_type}): its {key} has shape"
                    f" {list(array.shape)}, but its input {list(in_shapes[0])} needs {list(expected.get(key, ()))}"
                )
            self.weights[tensor_key(name, key)] = array
        self.nodes.append(entry)
        self.shapes[name] = shape
        return Tensor(name, shape)

    def _recorded(self, node, entry: dict, op, in_shapes, tensors):
        """The archspec op this file's metadata records for the node (an adaptive pool exported as a
        fixed one), if it computes the same output shape from the same tensors; else None."""
        params = self.stochastic.get(node.name)
        if not isinstance(params, dict):
            return None
        try:
            recorded = _validated({**params, "name": entry["name"], "inputs": entry["inputs"]})
            same = recorded.output_shape(in_shapes) == op.output_shape(in_shapes)
            expected = {**recorded.param_shapes(in_shapes), **recorded.buffer_shapes(in_shapes)}
        except (Unsupported, ShapeError):
            return None
        if not same or expected != {k: tuple(v.shape) for k, v in tensors.items()}:
            return None
        return recorded

    # ---- the walk ----
    def run(self) -> None:
        graph = self.proto.graph
        props = {p.key: p.value for p in self.proto.metadata_props}
        try:
            stochastic = json.loads(props.get(NODES_KEY, "{}"))
        except ValueError:
            stochastic = {}
        if isinstance(stochastic, dict):
            self.stochastic = {k: v for k, v in stochastic.items() if isinstance(v, dict)}
        for init, load in zip(graph.initializer, self.loaders, strict=True):
            self.values[init.name] = _Lazy(init.dims, load)
        real_inputs = [i for i in graph.input if i.name not in self.values]
        if len(real_inputs) != 1:
            raise ImportError_(
                f"{self.path}: error: archspec models take one image tensor, this graph has"
                f" {len(real_inputs)} inputs ({', '.join(i.name for i in real_inputs[:5])})"
            )
        self.values[real_inputs[0].name] = Tensor(INPUT, self._input_shape(real_inputs[0]))
        self.shapes[INPUT] = self.values[real_inputs[0].name].shape
        for node in graph.node:
            for name in node.input:
                self.consumers[name] = self.consumers.get(name, 0) + 1
        for out in graph.output:
            self.consumers[out.name] = self.consumers.get(out.name, 0) + 1
        for node in graph.node:
            if node.domain not in ("", "ai.onnx"):
                self._unsupported(node, f"{node.domain}.{node.op_type}")
                continue
            handler = HANDLERS.get(node.op_type)
            if handler is None:
                self._unsupported(node, node.op_type)
                continue
            if any(name and name not in self.values for name in node.input):
                # fed by an unsupported node, which is already reported; what is wrong with this node's own
                # attributes is reported too, so that one message lists all of it
                reason = _attribute_refusal(node.op_type, self.attrs(node))
                if reason:
                    self._unsupported(node, f"{node.op_type} ({reason})")
                continue
            try:
                result = handler(self, node, self.attrs(node))
            except Unsupported as exc:
                self._unsupported(node, f"{node.op_type} ({exc.reason})" if exc.reason else node.op_type)
                continue
            if isinstance(result, dict):  # Split: one value per output
                self.values.update(result)
            elif result is not None:
                self.values[node.output[0]] = result
        if self.unsupported:
            total = sum(len(v) for v in self.unsupported.values())
            lines = [f"{self.path}: error: {total} ONNX node(s) have no archspec equivalent:"]
            for what, names in sorted(self.unsupported.items(), key=lambda kv: (-len(kv[1]), kv[0])):
                shown = ", ".join(names[:MAX_NAMES_SHOWN]) + (", ..." if len(names) > MAX_NAMES_SHOWN else "")
                lines.append(f"  {what} x{len(names)}: {shown}")
            raise ImportError_("\n".join(lines))

    def _unsupported(self, node, what: str) -> None:
        self.unsupported.setdefault(what, []).append(node.name or f"#{list(self.proto.graph.node).index(node)}")

    def _input_shape(self, value) -> tuple[int, int, int]:
        tensor_type = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tensor_type.shape.dim]
        if len(dims) != 4:
            raise ImportError_(
                f"{self.path}: error: input '{value.name}' has {len(dims)} axes; archspec models take N x C x H x W"
            )
        chw = dims[1:]
        if self.input_shape is not None:
            for axis, (declared, given) in enumerate(zip(chw, self.input_shape, strict=True)):
                if declared is not None and declared != given:
                    raise ImportError_(
                        f"{self.path}: error: --input {','.join(map(str, self.input_shape))} contradicts the model's"
                        f" input axis {axis + 1} of size {declared}"
                    )
            return tuple(self.input_shape)
        if any(d is None for d in chw):
            raise ImportError_(
                f"{self.path}: error: input '{value.name}' has dynamic sizes {['N', *['?' if d is None else d for d in chw]]};"
                " give them with --input C,H,W"
            )
        return tuple(chw)


# ---- handlers: one per ONNX op type ------------------------------------------------------------


def _spatial_pads(attrs: dict, kernel: list[int], strides: list[int], dilations: list[int]) -> list[int]:
    auto_pad = attrs.get("auto_pad", b"NOTSET")
    auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
    if auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        extents = [d * (k - 1) + 1 for k, d in zip(kernel, dilations, strict=True)]
        if any(s != 1 or e % 2 == 0 for s, e in zip(strides, extents, strict=True)):
            raise Unsupported("auto_pad SAME with an asymmetric padding")
        return [(e - 1) // 2 for e in extents]
    if auto_pad not in ("NOTSET", "VALID"):
        raise Unsupported(f"auto_pad {auto_pad}")
    pads = list(attrs.get("pads", [0, 0, 0, 0])) if auto_pad == "NOTSET" else [0, 0, 0, 0]
    if len(pads) != 4 or pads[:2] != pads[2:]:
        raise Unsupported("asymmetric padding, which archspec's conv2d and pooling cannot express")
    return pads[:2]


def _attribute_refusal(op_type: str, attrs: dict) -> str | None:
    """Why a node's attributes alone make it unsupported (checked without its input's shape)."""
    if op_type in ("Conv", "MaxPool", "AveragePool") and "kernel_shape" in attrs:
        kernel = list(attrs["kernel_shape"])
        try:
            ones = [1] * len(kernel)
            _spatial_pads(attrs, kernel, list(attrs.get("strides", ones)), list(attrs.get("dilations", ones)))
        except Unsupported as exc:
            return exc.reason
    return None


def _conv(c: _Converter, node, attrs):
    x = c.tensor(node.input[0])
    weight = c.weight(node.input[1]) if len(node.input) > 1 else None
    if weight is None or weight.ndim != 4 or len(x.shape) != 3:
        raise Unsupported("not a 2-D convolution with constant weights")
    bias = c.weight(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and bias is None:
        raise Unsupported("a bias that is not a constant")
    kernel = list(attrs.get("kernel_shape", weight.shape[2:]))
    if kernel != list(weight.shape[2:]):
        raise ImportError_(
            f"{c.path}: error: node '{node.name}' (Conv): kernel_shape {kernel} contradicts its weight's shape"
            f" {list(weight.shape)}"
        )
    strides = list(attrs.get("strides", [1, 1]))
    dilations = list(attrs.get("dilations", [1, 1]))
    groups = int(attrs.get("group", 1))
    spec = {"op": "conv2d", "out_channels": int(weight.shape[0]), "kernel": _pair(kernel)}
    spec["stride"] = _pair(strides)
    spec["padding"] = _pair(_spatial_pads(attrs, kernel, strides, dilations))
    if dilations != [1, 1]:
        spec["dilation"] = _pair(dilations)
    if groups != 1:
        spec["groups"] = groups
    if bias is None:
        spec["bias"] = False
    tensors = {"weight": weight, **({"bias": bias} if bias is not None else {})}
    return c.emit(node, spec, [x], tensors, node.input[1])


def _flat(c: _Converter, name: str) -> Tensor:
    x = c.tensor(name)
    if len(x.shape) != 1:
        raise Unsupported("a product on a feature map (flatten it first)")
    return x


def _gemm(c: _Converter, node, attrs):
    x = _flat(c, node.input[0])
    b = c.weight(node.input[1])
    if b is None or b.ndim != 2 or attrs.get("transA", 0):
        raise Unsupported("not x W^T + b with constant weights")
    alpha, beta, trans = np.float32(attrs.get("alpha", 1.0)), np.float32(attrs.get("beta", 1.0)), attrs.get("transB", 0)
    weight = _Lazy(
        b.shape if trans else b.shape[::-1], lambda: (_materialize(b) if trans else _materialize(b).T) * alpha
    )
    bias = c.weight(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if len(node.input) > 2 and node.input[2] and bias is None:
        raise Unsupported("a bias that is not a constant")
    spec = {"op": "linear", "out_features": int(weight.shape[0])}
    tensors = {"weight": weight}
    if bias is None:
        spec["bias"] = False
    else:
        if bias.size not in (1, weight.shape[0]):
            raise ImportError_(
                f"{c.path}: error: node '{node.name}' (Gemm): bias of shape {list(bias.shape)} for"
                f" {weight.shape[0]} outputs"
            )
        out = weight.shape[0]
        tensors["bias"] = _Lazy((out,), lambda: np.broadcast_to(_materialize(bias).reshape(-1), (out,)) * beta)
    return c.emit(node, spec, [x], tensors, node.input[1])


def _matmul(c: _Converter, node, attrs):
    x = c.value(node.input[0])
    channels_last = isinstance(x, Pattern) and x.kind == "channels_last"
    x = x.source if channels_last else _flat(c, node.input[0])
    b = c.weight(node.input[1])
    if b is None or b.ndim != 2:
        raise Unsupported("not x W with constant weights")
    weight = _Lazy(b.shape[::-1], lambda: _materialize(b).T)
    spec = {"op": "linear", "out_features": int(b.shape[1]), "bias": False}
    if channels_last:  # ConvNeXt's Permute -> Linear -> Permute: a linear layer at every pixel
        spec["per_pixel"] = True
    out = c.emit(node, spec, [x], {"weight": weight}, c.weight_names.get(node.input[1], node.input[1]))
    if c.consumers.get(node.output[0], 0) == 1:
        c.pending_bias[node.output[0]] = c.nodes[-1]  # an Add of a constant may still give its bias
    return Pattern("channels_last", out) if channels_last else out


def _add(c: _Converter, node, attrs):
    a, b = (c.value(n) for n in node.input[:2])
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return c.emit(node, {"op": "add"}, [a, b], {})
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        c.fold("constant arithmetic")
        return a + b
    tensor_name, constant = (node.input[0], b) if isinstance(b, np.ndarray) else (node.input[1], a)
    if tensor_name in c.pending_bias and isinstance(constant, np.ndarray):
        # MatMul + Add(bias): one linear layer with a bias (PyTorch's nn.Linear as exported by some paths).
        entry = c.pending_bias.pop(tensor_name)
        if constant.size != entry["out_features"]:
            raise Unsupported("a constant that is not the MatMul's bias")
        entry.pop("bias")
        c.weights[f"{entry['name']}.bias"] = np.ascontiguousarray(constant.reshape(-1), dtype=np.float32)
        c.fold("MatMul + Add -> linear")
        return c.values[tensor_name]
    if isinstance(a, ShapeVector) and isinstance(b, np.ndarray):
        return _shape_arithmetic(a, b, np.add)
    return _add_pattern(c, node, a, b)


def _add_pattern(c: _Converter, node, a, b):
    pattern, constant = (a, b) if isinstance(b, np.ndarray) else (b, a)
    if isinstance(pattern, Pattern) and pattern.kind in GELU_FORMS and _is(constant, 1.0):
        return Pattern(f"1+{pattern.kind}", pattern.source)  # GELU's expansion, continued
    if (
        isinstance(pattern, Pattern)
        and pattern.kind == "kx^3"
        and isinstance(constant, Tensor)
        and constant == pattern.source
    ):
        return Pattern("x+kx^3", pattern.source)  # GELU's tanh approximation: x + 0.044715 x^3
    raise Unsupported("adding a constant")


def _is(value, number: float) -> bool:
    return isinstance(value, np.ndarray) and value.size == 1 and abs(float(value.reshape(())) - number) < 1e-6


def _sum(c: _Converter, node, attrs):
    xs = [c.tensor(n) for n in node.input]
    if len(xs) == 1:
        c.fold("Identity")
        return xs[0]
    return c.emit(node, {"op": "add"}, xs, {})


def _mul(c: _Converter, node, attrs):
    a, b = (c.value(n) for n in node.input[:2])
    if isinstance(a, np.ndarray) and isinstance(b, np.ndarray):
        c.fold("constant arithmetic")
        return a * b
    if isinstance(a, ShapeVector) and isinstance(b, np.ndarray):
        return _shape_arithmetic(a, b, np.multiply)
    if isinstance(a, Tensor) and isinstance(b, Tensor) and a == b:
        return Pattern("x^2", a, node)  # GELU's tanh approximation's x * x (else a mul, see _Converter.tensor)
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        for x, gate, gate_name in ((a, b, node.input[1]), (b, a, node.input[0])):
            if c.sigmoid_of.get(gate.node) == x.node:
                c.fold("x * sigmoid(x) -> silu")
                if c.consumers.get(gate_name) == 1:  # the sigmoid only fed this product: it is gone
                    c.nodes = [n for n in c.nodes if n["name"] != gate.node]
                    c.names.discard(gate.node)
                return c.emit(node, {"op": "silu"}, [x], {})
        return c.emit(node, {"op": "mul"}, [a, b], {})
    tensor, name = (a, node.input[1]) if not isinstance(a, np.ndarray) else (b, node.input[0])
    constant = c.weight(name) if isinstance(a, np.ndarray) or isinstance(b, np.ndarray) else None
    if isinstance(tensor, Tensor) and constant is not None and constant.size == 1:
        value = float(_materialize(constant).reshape(()))
        stochastic = _stochastic(c, node, tensor, value)
        if stochastic is not None:
            return stochastic
        if abs(value - 0.5) < 1e-6:
            return Pattern("half", tensor)
    if isinstance(tensor, Tensor) and constant is not None and len(tensor.shape) == 3:
        if tuple(constant.shape) in ((tensor.shape[0], 1, 1), (1, tensor.shape[0], 1, 1)):
            # a learned per-channel scale (ConvNeXt's layer_scale), keyed by its own name
            gamma = _Lazy((tensor.shape[0], 1, 1), lambda: _materialize(constant).reshape(-1, 1, 1))
            return c.emit(node, {"op": "layer_scale"}, [tensor], {"": gamma}, name)
    return _mul_pattern(c, node, tensor, constant, a, b)


def _stochastic(c: _Converter, node, tensor: Tensor, scale: float):
    """A node archspec exported as stochastic (its metadata): restored if the ONNX node is what that op
    exports at inference (an Identity, or a Mul by its float32 survival)."""
    params = c.stochastic.get(node.name)
    if not isinstance(params, dict):
        return None
    try:
        op = _validated({**params, "name": "probe", "inputs": ["input"]})
    except Unsupported:
        return None
    if not op.stochastic:
        return None
    expected = 1.0 if op.view else (1.0 if op.survival is None else op.survival)
    if np.float32(expected) != np.float32(scale):
        return None
    c.fold("stochastic node (archspec metadata)")
    return c.emit(node, dict(params), [tensor], {})


def _feature(value) -> bool:
    """A feature map or flat features, also seen channels-last (between ConvNeXt's Permutes)."""
    return isinstance(value, Tensor) or (isinstance(value, Pattern) and value.kind == "channels_last")


def _emit_on(c: _Converter, node, spec: dict, feature):
    """Emit an element-wise op on a feature, keeping a channels-last view channels-last."""
    if isinstance(feature, Pattern):
        return Pattern("channels_last", c.emit(node, spec, [feature.source], {}))
    return c.emit(node, spec, [feature], {})


GELU_FORMS = ("erf", "tanh")  # GELU's exact form and its tanh approximation (ONNX's Gelu approximate)
GELU_TANH_CUBIC, GELU_TANH_SCALE = 0.044715, math.sqrt(2 / math.pi)


def _gelu_from(c: _Converter, node, feature, form: str):
    if form == "tanh":
        c.fold("tanh approximation -> gelu (approximate tanh)")
        return _emit_on(c, node, {"op": "gelu", "approximate": "tanh"}, feature)
    c.fold("erf expansion -> gelu")
    return _emit_on(c, node, {"op": "gelu"}, feature)


def _mul_pattern(c: _Converter, node, tensor, constant, a, b):
    """The pieces of GELU's two expansions, multiplied in any order (PyTorch's two exporters use
    different ones): 0.5 * x * (1 + erf(x / sqrt 2)) and, below opset 20 where ONNX's Gelu has no
    `approximate`, 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))."""
    for x, y in ((a, b), (b, a)):
        px = x if isinstance(x, Pattern) else None
        py = y if isinstance(y, Pattern) else None
        if _feature(x) and py and py.kind == "x^2" and py.source == x:
            return Pattern("x^3", x)
        if px and px.kind == "x^3" and _is(y, GELU_TANH_CUBIC):
            return Pattern("kx^3", px.source)
        if px and px.kind == "x+kx^3" and _is(y, GELU_TANH_SCALE):
            return Pattern("tanh_arg", px.source)
        if _feature(x) and _is(y, 0.5):
            return Pattern("half", x)
        for form in GELU_FORMS:
            if px and px.kind == f"1+{form}" and _is(y, 0.5):
                return Pattern(f"half(1+{form})", px.source)
            if px and px.kind == f"x(1+{form})" and _is(y, 0.5):
                return _gelu_from(c, node, px.source, form)
            if _feature(x) and py and py.kind == f"1+{form}" and py.source == x:
                return Pattern(f"x(1+{form})", x)
            if _feature(x) and py and py.kind == f"half(1+{form})" and py.source == x:
                return _gelu_from(c, node, x, form)
            if px and px.kind == "half" and py and py.kind == f"1+{form}" and py.source == px.source:
                return _gelu_from(c, node, px.source, form)
    raise Unsupported("a product archspec has no op for")


def _div(c: _Converter, node, attrs):
    x, d = c.value(node.input[0]), c.value(node.input[1])
    if _feature(x) and _is(d, math.sqrt(2)):
        return Pattern("x/sqrt2", x)
    if isinstance(x, ShapeVector) and isinstance(d, np.ndarray):
        return _shape_arithmetic(x, d, np.floor_divide)
    raise Unsupported("a division archspec has no op for")


def _erf(c: _Converter, node, attrs):
    x = c.value(node.input[0])
    if isinstance(x, Pattern) and x.kind == "x/sqrt2":
        return Pattern("erf", x.source)
    raise Unsupported("an erf outside GELU's expansion")


def _tanh(c: _Converter, node, attrs):
    x = c.value(node.input[0])
    if isinstance(x, Pattern) and x.kind == "tanh_arg":
        return Pattern("tanh", x.source)
    raise Unsupported("a tanh outside GELU's tanh approximation")


def _pow(c: _Converter, node, attrs):
    x, exponent = c.value(node.input[0]), c.const(node.input[1])
    if _feature(x) and _is(exponent, 3.0):
        return Pattern("x^3", x)  # GELU's tanh approximation, as PyTorch's dynamo exporter writes x^3
    raise Unsupported("a power outside GELU's tanh approximation")


def _shape_arithmetic(vector: ShapeVector, other: np.ndarray, fn) -> ShapeVector:
    """Integer arithmetic on known sizes (torch.chunk's split sizes are computed from the shape)."""
    if any(d is None for d in vector.dims) or not np.issubdtype(other.dtype, np.integer):
        raise Unsupported("arithmetic on the batch size")
    result = fn(np.asarray(vector.dims, dtype=np.int64), other.astype(np.int64).reshape(-1))
    return ShapeVector(tuple(int(v) for v in np.atleast_1d(result)), scalar=vector.scalar)


def _unary(op: str, **fields):
    """An element-wise op; also inside a channels-last region (ConvNeXt's GELU between Permutes)."""

    def handler(c: _Converter, node, attrs):
        x = c.value(node.input[0])
        if isinstance(x, Pattern) and x.kind == "channels_last":
            return Pattern("channels_last", c.emit(node, {"op": op, **fields}, [x.source], {}))
        return c.emit(node, {"op": op, **fields}, [c.tensor(node.input[0])], {})

    return handler


def _sigmoid(c: _Converter, node, attrs):
    x = c.tensor(node.input[0])
    out = c.emit(node, {"op": "sigmoid"}, [x], {})
    c.sigmoid_of[out.node] = x.node  # x * sigmoid(x) becomes one silu (and this node is then unused)
    return out


def _clip(c: _Converter, node, attrs):
    low = c.const(node.input[1]) if len(node.input) > 1 and node.input[1] else attrs.get("min")
    high = c.const(node.input[2]) if len(node.input) > 2 and node.input[2] else attrs.get("max")
    if low is None or high is None or not (_is(np.asarray(low), 0.0) and _is(np.asarray(high), 6.0)):
        raise Unsupported("a clip other than to [0, 6] (relu6)")
    return _unary("relu6")(c, node, attrs)


def _hard_sigmoid(c: _Converter, node, attrs):
    if abs(attrs.get("alpha", 0.2) - 1 / 6) > 1e-6 or abs(attrs.get("beta", 0.5) - 0.5) > 1e-6:
        raise Unsupported("alpha and beta other than PyTorch's 1/6 and 1/2")
    return _unary("hardsigmoid")(c, node, attrs)


def _gelu(c: _Converter, node, attrs):
    approximate = attrs.get("approximate", b"none")
    approximate = approximate.decode() if isinstance(approximate, bytes) else approximate
    return _unary(op="gelu", **({} if approximate == "none" else {"approximate": approximate}))(c, node, attrs)


def _layer_norm(c: _Converter, node, attrs):
    x = c.value(node.input[0])
    channels_last = isinstance(x, Pattern) and x.kind == "channels_last"
    source = x.source if channels_last else c.tensor(node.input[0])
    axis = int(attrs.get("axis", -1))
    rank = len(source.shape) + 1
    # over a whole image: PyTorch's nn.LayerNorm([C, H, W]) on N x C x H x W, axis 1 (or -3)
    image = not channels_last and rank == 4 and axis % rank == 1
    if not (channels_last or rank == 2 or image) or (not image and axis % rank != rank - 1):
        raise Unsupported("a norm over other axes than the channels of each position or the whole image")
    scale = c.weight(node.input[1])
    bias = c.weight(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    if scale is None or (len(node.input) > 2 and node.input[2] and bias is None):
        raise Unsupported("scale or bias that is not constant")
    if image and (tuple(scale.shape) != source.shape or (bias is not None and tuple(bias.shape) != source.shape)):
        raise Unsupported("a scale or bias that is not one value per element of the image")
    tensors = {"weight": scale, "bias": bias if bias is not None else np.zeros(scale.shape, np.float32)}
    spec = {"op": "layer_norm", "eps": _f32(attrs.get("epsilon", 1e-5)), **({"over": "image"} if image else {})}
    out = c.emit(node, spec, [source], tensors, node.input[1])
    return Pattern("channels_last", out) if channels_last else out


def _transpose(c: _Converter, node, attrs):
    x = c.value(node.input[0])
    perm = [int(p) for p in attrs.get("perm", [])]
    weight = c.weight(node.input[0])
    if weight is not None and weight.ndim == 2 and perm in ([], [1, 0]):
        c.weight_names[node.output[0]] = node.input[0]  # keep the initializer's name for the layer
        return _Lazy(weight.shape[::-1], lambda: _materialize(weight).T)
    if isinstance(x, Tensor) and len(x.shape) == 3 and perm == [0, 2, 3, 1]:
        return Pattern("channels_last", x)
    if isinstance(x, Pattern) and x.kind == "channels_last" and perm == [0, 3, 1, 2]:
        c.fold("channels-last Transpose pair")
        return x.source
    if isinstance(x, Pattern) and x.kind == "grouped" and perm == [0, 2, 1, 3, 4]:
        return Pattern("shuffled", x.source, x.value)
    raise Unsupported("a transpose outside a channel shuffle or a channels-last region")


def _chunk_of(channels: int, start: int, stop: int) -> tuple[int, int] | None:
    """(chunks, index) of torch's x.chunk(chunks, 1) whose piece is channels [start, stop), if any."""
    for chunks in range(1, channels + 1):
        size = -(-channels // chunks)
        if start % size == 0 and min(start + size, channels) == stop and start < channels:
            if -(-channels // size) == chunks:
                return chunks, start // size
    return None


def _chunk(c: _Converter, node, x: Tensor, start: int, stop: int):
    found = _chunk_of(x.shape[0], start, stop)
    if found is None:
        raise Unsupported("a channel slice that is not one of torch.chunk's pieces")
    chunks, index = found
    return c.emit(node, {"op": "channel_chunk", "chunks": chunks, "index": index}, [x], {})


def _slice(c: _Converter, node, attrs):
    x = c.tensor(node.input[0])
    starts, ends = c.ints(node.input[1]), c.ints(node.input[2])
    axes = c.ints(node.input[3]) if len(node.input) > 3 and node.input[3] else None
    steps = c.ints(node.input[4]) if len(node.input) > 4 and node.input[4] else None
    if starts is None or ends is None or starts.size != 1 or len(x.shape) != 3:
        raise Unsupported("not a slice of channels")
    axis = int(axes.reshape(-1)[0]) if axes is not None else 0
    if axis % 4 != 1 or (steps is not None and int(steps.reshape(-1)[0]) != 1):
        raise Unsupported("not a slice of channels")
    channels = x.shape[0]
    start, stop = (int(v.reshape(-1)[0]) for v in (starts, ends))
    start, stop = (min(max(v + channels if v < 0 else v, 0), channels) for v in (start, stop))
    return _chunk(c, node, x, start, stop)


def _split(c: _Converter, node, attrs):
    x = c.tensor(node.input[0])
    if int(attrs.get("axis", 0)) % 4 != 1 or len(x.shape) != 3:
        raise Unsupported("a split along another axis than the channels")
    sizes = c.ints(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    if sizes is None:
        sizes = attrs.get("split")
    count = len(node.output)
    if sizes is None:
        size = -(-x.shape[0] // int(attrs.get("num_outputs", count)))
        sizes = [min(size, x.shape[0] - i * size) for i in range(count)]
    sizes = [int(v) for v in np.asarray(sizes).reshape(-1)]
    results, start = {}, 0
    for output, size in zip(node.output, sizes, strict=True):
        part = type(node)()
        part.CopyFrom(node)
        part.name = f"{node.name}_{len(results)}" if count > 1 else node.name
        if c.consumers.get(output):
            results[output] = _chunk(c, part, x, start, start + size)
        start += size
    return results


def _concat(c: _Converter, node, attrs):
    values = [c.value(n) for n in node.input]
    if all(isinstance(v, Tensor) for v in values):
        if len(values) == 1:  # torch.cat of one tensor (DenseNet's first layer of each block)
            c.fold("Identity")
            return values[0]
        rank = len(values[0].shape) + 1
        if int(attrs.get("axis", 0)) % rank != 1:
            raise Unsupported("a concatenation along another axis than the channels")
        return c.emit(node, {"op": "concat"}, values, {})
    if all(isinstance(v, (ShapeVector, np.ndarray)) for v in values):
        dims: list[int | None] = []
        for v in values:
            dims.extend(v.dims if isinstance(v, ShapeVector) else (int(d) for d in v.reshape(-1)))
        return ShapeVector(tuple(dims))
    raise Unsupported("mixing feature maps and shape values")


def _pool(kind: str, average: bool = False):
    def handler(c: _Converter, node, attrs):
        x = c.tensor(node.input[0])
        if len(x.shape) != 3 or (len(node.output) > 1 and c.consumers.get(node.output[1])):
            raise Unsupported("not a 2-D pooling")
        kernel = list(attrs["kernel_shape"])
        strides = list(attrs.get("strides", [1, 1]))
        dilations = list(attrs.get("dilations", [1, 1]))
        if dilations != [1, 1]:
            raise Unsupported("dilated pooling")
        spec = {"op": kind, "kernel": _pair(kernel), "stride": _pair(strides)}
        padding = _spatial_pads(attrs, kernel, strides, dilations)
        if padding != [0, 0]:
            spec["padding"] = _pair(padding)
        if attrs.get("ceil_mode", 0):
            spec["ceil_mode"] = True
        if average:
            spec["count_include_pad"] = bool(attrs.get("count_include_pad", 0))
        return c.emit(node, spec, [x], {})

    return handler


def _global_average_pool(c: _Converter, node, attrs):
    return c.emit(node, {"op": "adaptive_avg_pool2d", "output_size": 1}, [c.tensor(node.input[0])], {})


def _reduce_mean(c: _Converter, node, attrs):
    x = c.tensor(node.input[0])
    axes = c.const(node.input[1]) if len(node.input) > 1 else np.asarray(attrs.get("axes", []))
    if axes is None or len(x.shape) != 3 or sorted(int(a) % 4 for a in axes.reshape(-1)) != [2, 3]:
        raise Unsupported("a mean over other axes than H and W")
    if not attrs.get("keepdims", 1):
        raise Unsupported("a spatial mean that drops the axes")
    c.fold("ReduceMean over H, W -> global average pooling")
    return c.emit(node, {"op": "adaptive_avg_pool2d", "output_size": 1}, [x], {})


def _batch_norm(c: _Converter, node, attrs):
    x = c.tensor(node.input[0])
    arrays = [c.weight(n) for n in node.input[1:5]]
    if len(arrays) != 4 or any(a is None for a in arrays):
        raise Unsupported("statistics that are not constants")
    if any(c.consumers.get(n) for n in node.output[1:]):
        raise Unsupported("training outputs that are used")
    tensors = dict(zip(("weight", "bias", "running_mean", "running_var"), arrays, strict=True))
    spec = {"op": "batch_norm", "eps": _f32(attrs.get("epsilon", 1e-5))}
    return c.emit(node, spec, [x], tensors, node.input[1])


def _lrn(c: _Converter, node, attrs):
    size = int(attrs["size"])
    if size % 2 == 0:
        raise Unsupported("an even size, whose window ONNX centres differently from PyTorch")
    spec = {
        "op": "lrn",
        "size": size,
        "alpha": _f32(attrs.get("alpha", 1e-4)),
        "beta": _f32(attrs.get("beta", 0.75)),
        "k": _f32(attrs.get("bias", 1.0)),
    }
    return c.emit(node, spec, [c.tensor(node.input[0])], {})


def _flatten(c: _Converter, node, attrs):
    x = c.tensor(node.input[0])
    if int(attrs.get("axis", 1)) != 1:
        raise Unsupported("flattening from another axis than 1")
    return c.emit(node, {"op": "flatten"}, [x], {})


def _softmax(c: _Converter, node, attrs):
    x = c.tensor(node.input[0])
    rank = len(x.shape) + 1
    default = -1 if c.opset >= 13 else 1
    if int(attrs.get("axis", default)) % rank != 1:
        raise Unsupported("a softmax over another axis than the channels")
    return c.emit(node, {"op": "softmax"}, [x], {})


def _dropout(c: _Converter, node, attrs):
    x = c.tensor(node.input[0])
    ratio = c.const(node.input[1]) if len(node.input) > 1 and node.input[1] else None
    p = _f32(ratio.reshape(())) if ratio is not None else _f32(attrs.get("ratio", 0.5))
    return c.emit(node, {"op": "dropout", "p": p}, [x], {})


def _identity(c: _Converter, node, attrs):
    x = c.value(node.input[0])
    if isinstance(x, Tensor) and node.name in c.stochastic:
        restored = _stochastic(c, node, x, 1.0)  # drop path: the identity at inference
        if restored is not None:
            return restored
    c.fold("Identity")
    return x


def _constant(c: _Converter, node, attrs):
    numpy_helper = c.onnx.numpy_helper
    if "value" in attrs:
        return numpy_helper.to_array(attrs["value"])
    for key, dtype in (("value_float", np.float32), ("value_floats", np.float32), ("value_int", np.int64)):
        if key in attrs:
            return np.asarray(attrs[key], dtype=dtype)
    if "value_ints" in attrs:
        return np.asarray(attrs["value_ints"], dtype=np.int64)
    raise Unsupported("a constant archspec cannot read")


def _shape(c: _Converter, node, attrs):
    x = c.tensor(node.input[0])
    dims = (None, *x.shape)
    start, end = int(attrs.get("start", 0)), attrs.get("end")
    return ShapeVector(dims[start : None if end is None else int(end)])


def _gather(c: _Converter, node, attrs):
    data, indices = c.value(node.input[0]), c.const(node.input[1])
    if not isinstance(data, ShapeVector) or indices is None or int(attrs.get("axis", 0)) != 0:
        raise Unsupported("a gather that is not from a shape")
    picked = tuple(data.dims[int(i)] for i in indices.reshape(-1))
    return ShapeVector(picked, scalar=indices.ndim == 0)


def _unsqueeze(c: _Converter, node, attrs):
    data = c.value(node.input[0])
    if isinstance(data, ShapeVector) and data.scalar:
        return ShapeVector(data.dims)
    if isinstance(data, np.ndarray):
        axes = c.const(node.input[1]) if len(node.input) > 1 else np.asarray(attrs.get("axes", []))
        result = data
        for axis in sorted(int(a) % (data.ndim + len(axes)) for a in axes.reshape(-1)):
            result = np.expand_dims(result, axis)
        return result
    raise Unsupported("unsqueezing a feature map")


def _cast(c: _Converter, node, attrs):
    data = c.value(node.input[0])
    if isinstance(data, (ShapeVector, np.ndarray)):
        return data
    raise Unsupported("a cast of a feature map")


def _reshape(c: _Converter, node, attrs):
    x = c.value(node.input[0])
    target = c.value(node.input[1])
    if isinstance(x, Pattern) and x.kind == "shuffled":
        source = x.source
        dims = list(target.dims if isinstance(target, ShapeVector) else np.asarray(target).reshape(-1))
        if len(dims) == 4 and [int(d) for d in dims[1:] if d is not None] == list(source.shape):
            c.fold("Reshape-Transpose-Reshape -> channel_shuffle")
            return c.emit(node, {"op": "channel_shuffle", "groups": int(x.value)}, [source], {})
        raise Unsupported("a reshape that is not a flatten or a channel shuffle")
    x = c.tensor(node.input[0])
    if isinstance(target, np.ndarray):
        target = ShapeVector(tuple(int(d) for d in target.reshape(-1)))
    if not isinstance(target, ShapeVector):
        raise Unsupported("a shape that is not constant")
    full = (None, *x.shape)
    dims = [full[i] if d == 0 and not attrs.get("allowzero", 0) else d for i, d in enumerate(target.dims)]
    features = math.prod(x.shape)
    if len(dims) == 2 and (dims[1] == features or (dims[1] == -1 and dims[0] != -1)):
        # (N, -1), (N, C*H*W) or (-1, C*H*W), the batch from a Shape pattern or constant: torch.flatten(x, 1)
        c.fold("Shape-Gather-Unsqueeze-Concat-Reshape -> flatten" if target.dims[0] is None else "Reshape -> flatten")
        return c.emit(node, {"op": "flatten"}, [x], {})
    if (
        len(dims) == len(full)
        and all(d in (None, f, -1) for d, f in zip(dims, full, strict=True))
        and dims.count(-1) <= 1
    ):
        c.fold("Identity")
        return x
    return _reshape_pattern(c, node, x, dims)


def _reshape_pattern(c: _Converter, node, x: Tensor, dims: list):
    c_, h, w = x.shape if len(x.shape) == 3 else (0, 0, 0)
    if len(dims) == 5 and dims[3:] == [h, w] and dims[1] * dims[2] == c_:
        return Pattern("grouped", x, dims[1])  # channel shuffle, step 1: (N, groups, C / groups, H, W)
    raise Unsupported("a reshape that is not a flatten or a channel shuffle")


def _pad(c: _Converter, node, attrs):
    x = c.tensor(node.input[0])
    pads = c.const(node.input[1]) if len(node.input) > 1 else np.asarray(attrs.get("pads", []))
    value = c.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    mode = attrs.get("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if pads is None or len(x.shape) != 3 or mode != "constant" or (value is not None and float(value.reshape(-1)[0])):
        raise Unsupported("not zero channels appended")
    pads = [int(p) for p in pads.reshape(-1)]
    if len(pads) != 8 or any(pads[i] for i in (0, 1, 2, 3, 4, 6, 7)):
        raise Unsupported("padding other than channels appended")
    return c.emit(node, {"op": "channel_pad", "out_channels": x.shape[0] + pads[5]}, [x], {})


HANDLERS = {
    "Conv": _conv,
    "Gemm": _gemm,
    "MatMul": _matmul,
    "Add": _add,
    "Sum": _sum,
    "Mul": _mul,
    "Relu": _unary("relu"),
    "Clip": _clip,
    "Sigmoid": _sigmoid,
    "HardSigmoid": _hard_sigmoid,
    "HardSwish": _unary("hardswish"),
    "Gelu": _gelu,
    "Div": _div,
    "Erf": _erf,
    "Tanh": _tanh,
    "Pow": _pow,
    "LayerNormalization": _layer_norm,
    "Transpose": _transpose,
    "Slice": _slice,
    "Split": _split,
    "Concat": _concat,
    "MaxPool": _pool("max_pool2d"),
    "AveragePool": _pool(kind="avg_pool2d", average=True),
    "GlobalAveragePool": _global_average_pool,
    "ReduceMean": _reduce_mean,
    "BatchNormalization": _batch_norm,
    "LRN": _lrn,
    "Flatten": _flatten,
    "Softmax": _softmax,
    "Dropout": _dropout,
    "Identity": _identity,
    "Constant": _constant,
    "Shape": _shape,
    "Gather": _gather,
    "Unsqueeze": _unsqueeze,
    "Cast": _cast,
    "Reshape": _reshape,
    "Pad": _pad,
}


# ---- the result ----------------------------------------------------------------------------------


def import_onnx(path: str, input_shape: tuple[int, int, int] | None = None) -> Imported:
    """Read an ONNX file and convert it to a spec mapping plus weights (no file is written)."""
    onnx = require_onnx()
    proto, loaders = read_model(path)
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 1)
    converter = _Converter(onnx, proto, path, input_shape, opset=opset, loaders=loaders)
    converter.run()
    outputs = []
    for out in proto.graph.output:
        value = converter.values.get(out.name)
        if not isinstance(value, Tensor) or value.node == INPUT:
            raise ImportError_(f"{path}: error: output '{out.name}' is not computed by an archspec node")
        _check_declared(path, out, value, onnx)
        outputs.append(value.node)
    for info in proto.graph.value_info:
        value = converter.values.get(info.name)
        if isinstance(value, Tensor):
            _check_declared(path, info, value, onnx)
    nodes = _needed(converter.nodes, outputs)
    # PyTorch's exporters name every graph alike ('main_graph', 'torch_jit'): the file says more
    generic = proto.graph.name in ("", "main_graph", "torch_jit", "torch-jit-export")
    name = _sanitize(Path(path).stem if generic else proto.graph.name)
    producer = f"{proto.producer_name} {proto.producer_version}".strip() or "unknown"
    notes = _notes(proto, nodes, converter)
    spec = {
        "name": name,
        "input": list(converter.shapes[INPUT]),
        "metadata": {"source": f"imported from {Path(path).name} (ONNX, produced by {producer})"},
        "nodes": _compact_inputs(nodes),
    }
    if notes:
        spec["metadata"]["notes"] = " ".join(notes)
    if outputs != [nodes[-1]["name"]]:
        spec["outputs"] = outputs
    kept = {n["name"] for n in nodes}
    weights = {k: v for k, v in converter.weights.items() if k in kept or k.rpartition(".")[0] in kept}
    return Imported(spec, weights, tuple(notes))


def _check_declared(path: str, info, value: Tensor, onnx) -> None:
    """A shape the file declares must agree with what its weights and ops give."""
    dims = info.type.tensor_type.shape.dim
    if not dims:
        return
    declared = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    computed = [None, *value.shape]
    if len(declared) != len(computed) or any(
        d is not None and d != k for d, k in zip(declared[1:], computed[1:], strict=False)
    ):
        raise ImportError_(
            f"{path}: error: the model declares '{info.name}' as"
            f" [{', '.join('N' if d is None else str(d) for d in declared)}],"
            f" but its weights and ops give [N, {', '.join(map(str, value.shape))}]"
        )


def _needed(nodes: list[dict], outputs: list[str]) -> list[dict]:
    """Nodes the outputs depend on (a sigmoid folded into a SiLU leaves its own node unused)."""
    by_name = {n["name"]: n for n in nodes}
    needed, stack = set(), list(outputs)
    while stack:
        name = stack.pop()
        if name in needed or name == INPUT:
            continue
        needed.add(name)
        stack.extend(by_name[name]["inputs"])
    return [n for n in nodes if n["name"] in needed]


def _compact_inputs(nodes: list[dict]) -> list[dict]:
    """Drop `inputs` where it is the previous node (the spec default), and put it last otherwise."""
    previous = INPUT
    compact = []
    for node in nodes:
        entry = {k: v for k, v in node.items() if k != "inputs"}
        if node["inputs"] != [previous]:
            entry["inputs"] = node["inputs"] if len(node["inputs"]) > 1 else node["inputs"][0]
        compact.append(entry)
        previous = node["name"]
    return compact


def _notes(proto, nodes: list[dict], converter: _Converter) -> list[str]:
    notes = []
    ops = [n["op"] for n in nodes]
    conv_biases = sum(1 for n in nodes if "out_channels" in n and "kernel" in n and n.get("bias", True))
    if "batch_norm" not in ops and conv_biases and "pytorch" in proto.producer_name.lower():
        notes.append(
            f"No BatchNormalization node and {conv_biases} convolutions with biases: if the PyTorch model had"
            " BatchNorm layers, its exporter folded them into the preceding convolutions (eval mode), so params"
            " count conv biases instead of BatchNorm's weight and bias, and there are no running statistics;"
            " MACs are unchanged. Export with training=torch.onnx.TrainingMode.PRESERVE to keep BatchNorm."
        )
    if converter.folded:
        folded = ", ".join(f"{what} x{count}" for what, count in sorted(converter.folded.items()))
        notes.append(f"Folded exporter patterns: {folded}.")
    return notes


_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")
_YAML_WORDS = {"true", "false", "null", "yes", "no", "on", "off", "y", "n", "~"}


def _flow(value) -> str:
    """One YAML flow value. Strings that could read as anything else are written as JSON strings (valid
    YAML); floats keep their shortest round-trip form. (PyYAML's emitter is ten times slower.)"""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        plain = _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS
        return value if plain else json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flow(k)}: {_flow(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} in a spec")


def render_spec(spec: dict) -> str:
    """The spec as readable YAML: top-level keys in block style, one line per node."""
    lines = [f"name: {_flow(spec['name'])}", f"input: {_flow(spec['input'])}", "metadata:"]
    lines += [f"  {key}: {_flow(value)}" for key, value in spec["metadata"].items()]
    if "outputs" in spec:
        lines.append(f"outputs: {_flow(spec['outputs'])}")
    lines.append("nodes:")
    lines += [f"  - {_flow(node)}" for node in spec["nodes"]]
    return "\n".join(lines) + "\n"


def load_onnx(path: str, input_shape: tuple[int, int, int] | None = None):
    """An ONNX file as an archspec Model: the imported mapping goes through the same validation as a
    spec file (errors located as `MODEL.onnx:nodes[3].kernel`)."""
    return model_of(import_onnx(path, input_shape), path)


def model_of(imported: Imported, path: str):
    from archspec.graph import build_graph
    from archspec.model import Model
    from archspec.spec.load import load_mapping

    return Model(build_graph(load_mapping(imported.spec, name=path, base_dir=Path(path).resolve().parent)))
