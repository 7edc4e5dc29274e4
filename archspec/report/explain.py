"""`archspec explain`: the arithmetic behind each layer's numbers, in the lecture's terms.

The op's own lines (output shape, params, MACs; for merges the shape rule) come from the op's `explain`
(op knowledge stays on the op); this module adds what follows from the analysis alone: the memory line
and the receptive-field recurrence r = r_prev + (k − 1)·j_prev with the numbers filled in.
"""

from __future__ import annotations

from archspec.analysis.analyze import Analysis, LayerStats
from archspec.analysis.memory import DTYPE_BYTES
from archspec.analysis.receptive_field import INPUT_RF, ReceptiveField
from archspec.report.table import shape_text


def _rf_recurrence(prev: ReceptiveField, layer: LayerStats) -> list[str]:
    w = layer.window
    out = layer.receptive_field
    if prev.kind != "local" or prev.position_dependent or out.kind != "local":
        return [f"receptive field = {out.describe()}"]
    texts = []
    for a in range(2):
        r, j, p = prev.size()[a], prev.stride()[a], prev.padding()[a]
        k, s, pad = w.kernel[a], w.stride[a], w.padding[a]
        texts.append(
            (
                f"r = r_prev + (k − 1)·j_prev = {r} + ({k} − 1)·{j} = {r + (k - 1) * j}",
                f"jump j = j_prev·s = {j}·{s} = {j * s}; padding P = P_prev + p·j_prev = {p} + {pad}·{j} = {p + pad * j}",
            )
        )
    if texts[0] == texts[1]:
        lines = [f"receptive field {texts[0][0]}", f"  {texts[0][1]}"]
    else:
        lines = [
            f"receptive field, {axis}: {r}; {rest}" for axis, (r, rest) in zip(("height", "width"), texts, strict=True)
        ]
    if w.dilation != (1, 1):
        lines.append("  (k is the dilated kernel extent d·(k − 1) + 1)")
    lines.append(f"  -> {out.describe()}  (size /jump pPadding)")
    return lines


def rf_lines(analysis: Analysis, layer: LayerStats) -> list[str]:
    fields = {x.name: x.receptive_field for x in analysis.layers}
    fields["input"] = INPUT_RF
    inputs = [fields[i] for i in layer.inputs]
    out = layer.receptive_field
    if len(layer.inputs) > 1:
        union = " ∪ ".join(f"{name} ({rf.describe()})" for name, rf in zip(layer.inputs, inputs, strict=True))
        return [f"receptive field = union of the inputs' fields: {union} = {out.describe()}"]
    prev = inputs[0]
    if out.kind == "global":
        if prev.kind == "global":
            return ["receptive field: global (the input already sees the whole image)"]
        return ["receptive field: global (every output sees the whole input)"]
    if layer.window is not None:
        return _rf_recurrence(prev, layer)
    if out == prev:
        return [f"receptive field unchanged (each output sees one input position) = {out.describe()}"]
    return [f"receptive field = {out.describe()}"]


def memory_line(analysis: Analysis, layer: LayerStats) -> str:
    size = DTYPE_BYTES[analysis.dtype]
    text = f"memory = {layer.activations:,} values × {size} B = {layer.activations * size:,} B per image"
    if analysis.batch > 1:
        text += f", × {analysis.batch} images = {layer.activations * size * analysis.batch:,} B per batch"
    return text


def explain_layer(analysis: Analysis, layer: LayerStats, op_lines: list[str]) -> str:
    inputs = ", ".join(layer.inputs)
    head = f"{layer.name} ({layer.op}{', training only' if layer.train_only else ''}): {inputs} -> "
    head += shape_text(layer.output_shape)
    body = [*op_lines, memory_line(analysis, layer), *rf_lines(analysis, layer)]
    return head + "\n" + "\n".join("  " + line for line in body) + "\n"
