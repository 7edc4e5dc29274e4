"""Static analysis: pure functions from a checked graph to immutable per-layer and total figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from dataclasses import fields as dataclass_fields

from archspec.analysis import receptive_field as _rf
from archspec.analysis.memory import DTYPE_BYTES, peak_live_elements
from archspec.analysis.receptive_field import INPUT_RF, ReceptiveField, field_of
from archspec.analysis.training import TrainingMemory, training_memory
from archspec.graph import INPUT, Graph, numel
from archspec.ops import Shape, ShapeError
from archspec.ops.base import Window, broadcast_inputs


@dataclass(frozen=True)
class LayerStats:
    name: str
    op: str
    inputs: tuple[str, ...]
    output_shape: Shape
    params: int  # trainable: weights + biases + BatchNorm gamma/beta
    param_tensors: tuple[tuple[str, int], ...]  # ("weight", n), ("bias", n), ...
    buffers: int  # BatchNorm running statistics (not params)
    macs: int  # per image, conv/linear weights only, bias excluded
    activations: int  # output elements per image
    receptive_field: ReceptiveField
    train_only: bool  # only feeds training-time outputs (e.g. GoogLeNet's auxiliary heads)
    weights_without_bias: int  # the lecture's count: conv/linear weights, biases excluded
    # The sliding window of conv/pool layers (from the op's receptive-field rule), else None; and the
    # op's `groups` (1 for ops without groups). Tables show them as `11x11 /4 p0 g2`.
    window: Window | None = None
    groups: int = 1

    @classmethod
    def _from_fields(cls, fields: dict) -> LayerStats:
        """The record whose fields are `fields`: a dict of every field in declaration order (analysis
        copies one made by `_figures` per group of identical layers, and sets the four that differ), which
        the record takes as its own. Made without the frozen __init__'s one object.__setattr__ per field."""
        layer = _new_object(cls)
        _set_attribute(layer, "__dict__", fields)
        return layer


_LAYER_FIELDS = tuple(f.name for f in dataclass_fields(LayerStats))
_set_attribute = object.__setattr__
_new_object = object.__new__


@dataclass(frozen=True)
class StochasticDepthStats:
    blocks: int
    expected_active_blocks: float
    full_train_macs: int
    expected_train_macs: float
    # Per stochastic_depth node: (name, survival probability, MACs of the branch it drops).
    branches: tuple[tuple[str, float, int], ...]


@dataclass(frozen=True)
class Totals:
    params: int
    macs: int
    activations: int
    param_bytes: int
    activation_bytes: int
    peak_activation_bytes: int
    peak_at: str
    buffers: int
    input_elements: int


@dataclass(frozen=True)
class Analysis:
    name: str
    input_shape: Shape
    batch: int
    dtype: str
    layers: tuple[LayerStats, ...]
    totals: Totals  # inference: training-only heads excluded
    train_extra: Totals | None  # training-only heads alone (peak: the whole graph with the heads)
    stochastic_depth: StochasticDepthStats | None
    outputs: tuple[str, ...]
    train_outputs: tuple[str, ...]
    metadata: dict = field(default_factory=dict)
    training: TrainingMemory | None = None  # with analyze(..., optimizer=...): PyTorch training memory


def _figures(op, in_shapes: list[Shape], out: Shape) -> tuple[object, dict]:
    """The op's receptive-field rule, and what a layer's record says about its op alone: every field of
    LayerStats, in order, with those of the node itself (name, inputs, receptive_field, train_only) None."""
    tensor_sizes = {}
    params = 0
    for tensor, shape in op.param_shapes(in_shapes).items():
        tensor_sizes[tensor] = size = numel(shape)
        params += size
    buffers = 0
    for shape in op.buffer_shapes(in_shapes).values():
        buffers += numel(shape)
    weights = 0
    for tensor in op.lecture_weights:
        weights += tensor_sizes.get(tensor, 0)
    rule = op.rf_rule(in_shapes)
    return rule, {  # every field, in declaration order (tests/test_analysis_walk.py checks it)
        "name": None,
        "op": op.op,
        "inputs": None,
        "output_shape": out,
        "params": params,
        "param_tensors": tuple(tensor_sizes.items()),
        "buffers": buffers,
        "macs": op.macs(in_shapes, out),
        "activations": numel(out),
        "receptive_field": None,
        "train_only": None,
        "weights_without_bias": weights,
        "window": rule if rule.__class__ is Window else None,
        "groups": op.__dict__.get("groups", 1),  # the op's field, for ops that have one
    }


def _totals(layers, shapes, peak: tuple[int, str], batch, dtype) -> Totals:
    """The figures of `layers`, with `peak`: the most live activation elements and where (see memory.py)."""
    bytes_per = DTYPE_BYTES[dtype]
    params = macs = activations = buffers = 0
    for layer in layers:  # one pass for the four sums
        params += layer.params
        macs += layer.macs
        activations += layer.activations
        buffers += layer.buffers
    peak, where = peak
    return Totals(
        params=params,
        macs=macs,
        activations=activations,
        param_bytes=params * bytes_per,
        activation_bytes=activations * batch * bytes_per,
        peak_activation_bytes=peak * batch * bytes_per,
        peak_at=where,
        buffers=buffers,
        input_elements=numel(shapes[INPUT]),
    )


def _stochastic_depth(graph: Graph, layers: list[LayerStats], stochastic: list[str]) -> StochasticDepthStats | None:
    """`stochastic`: the nodes whose op is stochastic, in graph order."""
    full = graph.inference_nodes
    drops = [n for n in stochastic if n in full]
    if not drops:
        return None
    by_name = {layer.name: layer for layer in layers}
    branches = []
    for d in drops:
        branch = full - graph.needed_nodes({d})
        survival = graph.op(d).survival
        survival = 1.0 if survival is None else survival
        branches.append((d, survival, sum(by_name[n].macs for n in branch)))
    total_macs = sum(by_name[n].macs for n in full)
    expected = total_macs - sum((1 - p) * m for _, p, m in branches)
    return StochasticDepthStats(
        blocks=len(drops),
        expected_active_blocks=sum(p for _, p, _ in branches),
        full_train_macs=total_macs,
        expected_train_macs=expected,
        branches=tuple(branches),
    )


def analyze(
    graph: Graph,
    input_shape: Shape | None = None,
    batch: int = 1,
    dtype: str = "float32",
    optimizer: str | None = None,
) -> Analysis:
    """Static figures; with an optimizer ("sgd", "momentum", "adam") also training memory (float32 only)."""
    if optimizer is not None and dtype != "float32":
        raise ValueError("training memory is modelled for float32 only")
    spec = graph.spec.spec
    input_shape = tuple(input_shape or spec.input)
    layers, shapes, stochastic, whole = _layers(graph, input_shape)
    if graph.train_outputs:
        main = [layer for layer in layers if not layer.train_only]
        extra = [layer for layer in layers if layer.train_only]
        if not extra:  # the walk's curve is the inference curve
            peak = whole
        elif main:
            peak = peak_live_elements(graph, shapes, [layer.name for layer in main])
        else:
            peak = (0, INPUT)
    else:  # every node is an inference node
        main, extra, peak = layers, [], whole
    return Analysis(
        name=spec.name,
        input_shape=input_shape,
        batch=batch,
        dtype=dtype,
        layers=tuple(layers),
        totals=_totals(main, shapes, peak, batch, dtype),
        # The heads' own params/MACs/activations; their peak is that of the whole training graph.
        train_extra=_totals(extra, shapes, whole, batch, dtype) if extra else None,
        stochastic_depth=_stochastic_depth(graph, layers, stochastic),
        outputs=graph.outputs,
        train_outputs=graph.train_outputs,
        metadata=spec.metadata.model_dump(exclude_none=True),
        training=None if optimizer is None else training_memory(graph, shapes, batch, optimizer),
    )


def _layers(graph: Graph, input_shape: Shape) -> tuple[list[LayerStats], dict[str, Shape], list[str], tuple[int, str]]:
    """Every node's record, in graph order, every tensor's shape, the nodes whose op is stochastic, and
    the peak of live activation elements over the whole graph and the first node where it happens (what
    `memory.peak_live_elements(graph, shapes, graph.order)` gives): one walk that infers each output
    shape (as `Graph.infer_shapes` does), then steps the receptive fields, makes the record and steps
    the memory curve.

    Identical layers (LoadedNode.template, e.g. ResNet-152's 35 equal units of layer3) at the same input
    shapes share their output shape and figures (see _figures): both are computed once per (template,
    input shapes). A shape that fails is never shared: at the first failure the walk stops and
    `Graph.infer_shapes` reports every failing node under its own name."""
    shapes: dict[str, Shape] = {INPUT: input_shape}
    fields = {INPUT: INPUT_RF}  # receptive fields, one step of receptive_fields() per node
    # (template, *input shapes) -> (output shape, rule, record fields, op.stochastic, memory mode, and for
    # several inputs which are broadcast gates: see receptive_field.field_of)
    known: dict[tuple, tuple] = {}
    inference = graph.inference_nodes
    everything = not graph.train_outputs  # then every node is an inference node
    nodes = graph.nodes
    stochastic = []
    layers = []
    append = layers.append
    apply_window = _rf.apply_window  # (looked up per analysis: tests replace it to break the rule on purpose)
    # The memory curve, as memory.live_curve steps it (see there), keeping only its peak.
    keep = {*graph.outputs, *graph.train_outputs}
    last = graph.last_reader
    live = peak = numel(input_shape)
    peak_at = INPUT
    # Tensor -> its buffer, as [live tensors in it, elements]; the caller's input is one of its own.
    input_buffer = [1, live]
    buffer_of = {INPUT: input_buffer}
    for name in graph.order:
        node = nodes[name]
        op = node.op
        inputs = op.inputs
        template = node.template
        if len(inputs) == 1:  # most nodes: no list of shapes to make unless its figures are new
            source = inputs[0]
            found = None if template is None else known.get((template, shapes[source]))
        else:
            source = None
            found = None if template is None else known.get((template, *[shapes[i] for i in inputs]))
        if found is None:
            in_shapes = [shapes[i] for i in inputs]
            shape = _output_shape(op, in_shapes)
            if shape is None:  # a shape check failed: report every failing node, as infer_shapes does
                graph.infer_shapes(input_shape)
                raise AssertionError(f"node '{name}': its shape failed here but not in Graph.infer_shapes")
            mode = _VIEW if op.view else _IN_PLACE if op.in_place else _NEW
            gates = broadcast_inputs(in_shapes) if len(in_shapes) > 1 else None
            found = (shape, *_figures(op, in_shapes, shape), op.stochastic, mode, gates)
            if template is not None:
                known[(template, *in_shapes)] = found
        shapes[name], rule, values, dropping, mode, gates = found
        if dropping:
            stochastic.append(name)
        # The receptive field: field_of(), with its most common cases first.
        if source is not None and rule.__class__ is Window:
            field = apply_window(fields[source], rule)
        elif source is not None and rule == "pointwise":
            field = fields[source]
        else:
            field = field_of(name, inputs, shapes, rule, fields, gates)
        fields[name] = field
        # The record: LayerStats._from_fields with the group's fields and this node's own, without calls.
        layer = _new_object(LayerStats)
        record = layer.__dict__
        record.update(values)
        record["name"] = name
        record["inputs"] = (source,) if source is not None else tuple(inputs)
        record["receptive_field"] = field
        record["train_only"] = False if everything else name not in inference
        append(layer)
        # The memory curve: this node's buffer (its input's, for a view or an op run in place), the peak
        # just after it ran, then the release of the tensors read for the last time.
        if source is not None:
            buffer = buffer_of[source]
            dies = last[source] == name and source not in keep
            shares = mode is _VIEW or (
                mode is _IN_PLACE
                and dies
                and buffer is not input_buffer  # the caller's input is never overwritten
                and buffer[0] == 1  # no live view shares the buffer (source is in it)
            )
            released = (source,) if dies else ()
        else:
            shares = False
            released = [i for i in set(inputs) if last[i] == name and i not in keep]
        if shares:
            buffer_of[name] = buffer
            buffer[0] += 1
        else:
            elements = values["activations"]
            buffer_of[name] = [1, elements]
            live += elements
        if live > peak:
            peak, peak_at = live, name
        if name not in last and name not in keep:  # read by nobody
            released = (*released, name)
        for i in released:
            buffer = buffer_of[i]
            buffer[0] -= 1
            if not buffer[0]:
                live -= buffer[1]
    return layers, shapes, stochastic, (peak, peak_at)


# How a node's output takes memory (memory.live_curve): a buffer of its own, its input's (a view), or its
# input's when the input dies there (an op run in place).
_NEW, _VIEW, _IN_PLACE = "new", "view", "in place"


def _output_shape(op, in_shapes: list[Shape]) -> Shape | None:
    """The op's output shape as `Graph.infer_shapes` takes it, or None where infer_shapes reports an error."""
    try:
        shape = op.output_shape(in_shapes)
    except ShapeError:
        return None
    if min(shape) < 1:
        return None
    return tuple(map(int, shape))
