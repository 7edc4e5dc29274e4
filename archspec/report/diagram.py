"""Graph diagrams of a model (Mermaid for GitHub, DOT for Graphviz), drawn from an Analysis.

Nodes show the op and the output shape; edges follow the data flow (each node's inputs), so Inception's
branches, ResNet's shortcuts and DenseNet's concatenations are visible. Blocks come from the dotted layer
names (`layer1.0.conv1` is inside block `layer1.0`, inside `layer1`), like `analyze --depth`: they are
nested subgraphs, and at `depth` N every block of N name parts is collapsed to one box.
"""

from __future__ import annotations

from dataclasses import dataclass

from archspec.analysis.analyze import Analysis
from archspec.report.table import shape_text


@dataclass(frozen=True)
class DiagramNode:
    id: str
    name: str  # the layer name, or the block name when collapsed
    label: str  # op (or "block, N layers") and output shape
    parent: str | None  # the enclosing subgraph's name, or None at the top level
    train_only: bool = False


@dataclass(frozen=True)
class Diagram:
    name: str
    nodes: tuple[DiagramNode, ...]
    edges: tuple[tuple[str, str], ...]  # node ids, source first
    subgraphs: tuple[tuple[str, str | None], ...]  # (block name, enclosing block name or None), outer first


def _parent(name: str) -> str | None:
    return name.rsplit(".", 1)[0] if "." in name else None


def diagram(analysis: Analysis, depth: int | None = None) -> Diagram:
    """The graph with blocks of `depth` name parts collapsed (None: every layer shown)."""
    key_of: dict[str, str] = {"input": "input"}
    members: dict[str, list] = {}
    for layer in analysis.layers:
        parts = layer.name.split(".")
        key = ".".join(parts[:depth]) if depth is not None and len(parts) > depth else layer.name
        key_of[layer.name] = key
        members.setdefault(key, []).append(layer)
    ids = {"input": "n0"}
    nodes = [
        DiagramNode("n0", "input", f"input<br/>{shape_text(analysis.input_shape)}", None),
    ]
    for key, group in members.items():
        ids[key] = f"n{len(ids)}"
        last = group[-1]
        collapsed = len(group) > 1 or group[0].name != key
        what = f"block, {len(group)} layers" if collapsed else last.op
        nodes.append(
            DiagramNode(
                ids[key],
                key,
                f"{key}<br/>{what}<br/>{shape_text(last.output_shape)}",
                _parent(key),
                all(m.train_only for m in group),
            )
        )
    edges = []
    for layer in analysis.layers:
        dst = ids[key_of[layer.name]]
        for i in layer.inputs:
            src = ids[key_of[i]]
            if src != dst and (src, dst) not in edges:
                edges.append((src, dst))
    blocks: dict[str, str | None] = {}
    for node in nodes:
        p = node.parent
        chain = []
        while p is not None and p not in blocks:
            chain.append(p)
            p = _parent(p)
        for name in reversed(chain):
            blocks[name] = _parent(name)
    ordered = sorted(blocks.items(), key=lambda kv: kv[0].count("."))
    return Diagram(analysis.name, tuple(nodes), tuple(edges), tuple(ordered))


def auto_depth(analysis: Analysis, max_layers: int = 80, max_nodes: int = 45) -> int | None:
    """For reports: every layer when the model has at most `max_layers` (ResNet-18's shortcuts stay
    visible), else the finest depth whose diagram has at most `max_nodes` boxes (ResNet-152 by stage,
    DenseNet by dense block)."""
    if len(analysis.layers) <= max_layers:
        return None
    best = 1
    for d in range(2, 8):
        if len(diagram(analysis, d).nodes) > max_nodes:
            break
        best = d
    return best


def _children(d: Diagram):
    nodes_in: dict[str | None, list[DiagramNode]] = {}
    for node in d.nodes:
        nodes_in.setdefault(node.parent, []).append(node)
    blocks_in: dict[str | None, list[str]] = {}
    for name, parent in d.subgraphs:
        blocks_in.setdefault(parent, []).append(name)
    return nodes_in, blocks_in


def _quote(text: str) -> str:
    return text.replace('"', "#quot;")


def render_mermaid(d: Diagram) -> str:
    nodes_in, blocks_in = _children(d)
    sub_ids = {name: f"s{i}" for i, (name, _) in enumerate(d.subgraphs)}
    lines = ["flowchart TD"]

    def emit(parent: str | None, indent: str) -> None:
        for node in nodes_in.get(parent, []):
            label = node.label + ("<br/>(train only)" if node.train_only else "")
            lines.append(f'{indent}{node.id}["{_quote(label)}"]')
        for block in blocks_in.get(parent, []):
            lines.append(f'{indent}subgraph {sub_ids[block]}["{_quote(block)}"]')
            emit(block, indent + "  ")
            lines.append(f"{indent}end")

    emit(None, "  ")
    lines += [f"  {a} --> {b}" for a, b in d.edges]
    return "\n".join(lines) + "\n"


def render_dot(d: Diagram) -> str:
    nodes_in, blocks_in = _children(d)
    sub_ids = {name: f"cluster_{i}" for i, (name, _) in enumerate(d.subgraphs)}

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace('"', '\\"').replace("<br/>", "\\n")

    lines = [f'digraph "{esc(d.name)}" {{', "  rankdir=TB;", '  node [shape=box, fontname="DejaVu Sans"];']

    def emit(parent: str | None, indent: str) -> None:
        for node in nodes_in.get(parent, []):
            style = ", style=dashed" if node.train_only else ""
            lines.append(f'{indent}{node.id} [label="{esc(node.label)}"{style}];')
        for block in blocks_in.get(parent, []):
            lines.append(f"{indent}subgraph {sub_ids[block]} {{")
            lines.append(f'{indent}  label="{esc(block)}";')
            emit(block, indent + "  ")
            lines.append(f"{indent}}}")

    emit(None, "  ")
    lines += [f"  {a} -> {b};" for a, b in d.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"
