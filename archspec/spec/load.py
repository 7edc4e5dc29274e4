"""Spec file -> validated, expanded list of op nodes. Every problem becomes a located Diagnostic."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from archspec.errors import Diagnostic, Location, SpecError, UsageError, did_you_mean
from archspec.ops import OP_ADAPTER, REGISTRY, OpBase
from archspec.spec.expand import BlockSource, Expander, RawNode, format_pydantic_errors
from archspec.spec.schema import BlockLibrary, SpecFile
from archspec.spec.yamlsafe import Document, parse_yaml

MAX_INCLUDES = 64


@dataclass(frozen=True)
class LoadedNode:
    op: OpBase
    location: Location
    trail: tuple[tuple[Location, str], ...]


@dataclass(frozen=True)
class LoadedSpec:
    spec: SpecFile
    path: str
    nodes: tuple[LoadedNode, ...]
    aliases: dict[str, str]
    outputs: tuple[str, ...]
    train_outputs: tuple[str, ...]
    document: Document


def read_spec_bytes(path: str) -> bytes:
    """Read a file named on the command line; missing/directory/unreadable are usage errors."""
    p = FsPath(path)
    if not p.exists():
        raise UsageError(f"{path}: error: no such file")
    if p.is_dir():
        raise UsageError(f"{path}: error: is a directory, not a spec file")
    try:
        return p.read_bytes()
    except OSError as exc:
        raise UsageError(f"{path}: error: cannot read file ({exc.strerror})") from None


def _validate(model, doc: Document, base: tuple = (), context: str = ""):
    try:
        return model.model_validate(_at(doc.data, base)), []
    except ValidationError as exc:
        return None, format_pydantic_errors(
            exc, lambda loc, key=False: doc.locate((*base, *loc), key=key), context=context
        )


def _at(data: Any, path: tuple) -> Any:
    for part in path:
        data = data[part]
    return data


class _IncludeResolver:
    """Loads block libraries; paths are relative to the including file and confined to `root`."""

    def __init__(self, root: FsPath):
        self.root = root.resolve()
        self.blocks: dict[str, BlockSource] = {}
        self.errors: list[Diagnostic] = []
        self.loaded: set[FsPath] = set()

    def add_blocks(self, doc: Document, blocks: dict, base: tuple) -> None:
        for name, definition in blocks.items():
            if name in self.blocks:
                first = self.blocks[name].doc.locate(self.blocks[name].path, key=True)
                self.errors.append(
                    Diagnostic(
                        doc.locate((*base, name), key=True),
                        f"block '{name}' is defined twice (first at {first})",
                        "rename one of them",
                    )
                )
                continue
            self.blocks[name] = BlockSource(definition, _at(doc.data, (*base, name)), doc, (*base, name))

    def include(self, doc: Document, includes: list[str], stack: tuple[FsPath, ...]) -> None:
        here = FsPath(doc.path).resolve().parent
        for i, rel in enumerate(includes):
            loc = doc.locate(("include", i))
            if os.path.isabs(rel):
                self.errors.append(Diagnostic(loc, f"include '{rel}' is an absolute path", "use a path relative to this file"))
                continue
            target = (here / rel).resolve()  # resolves symlinks: an escaping link is caught below
            if not target.is_relative_to(self.root):
                self.errors.append(
                    Diagnostic(loc, f"include '{rel}' points outside the spec folder {self.root}", "keep block libraries inside the specs folder")
                )
                continue
            if target in stack:
                cycle = " -> ".join(p.name for p in (*stack, target))
                self.errors.append(Diagnostic(loc, f"include cycle: {cycle}", "remove one of the includes"))
                continue
            if target in self.loaded:
                continue
            if len(self.loaded) >= MAX_INCLUDES:
                self.errors.append(Diagnostic(loc, f"more than {MAX_INCLUDES} included files"))
                return
            if not target.is_file():
                self.errors.append(Diagnostic(loc, f"included file '{rel}' does not exist"))
                continue
            self.loaded.add(target)
            try:
                included = parse_yaml(target.read_bytes(), str(_display(target)))
            except SpecError as exc:
                self.errors.extend(exc.diagnostics)
                continue
            except OSError as exc:
                self.errors.append(Diagnostic(loc, f"cannot read '{rel}' ({exc.strerror})"))
                continue
            if not isinstance(included.data, dict):
                self.errors.append(Diagnostic(included.locate(()), "a block library must be a mapping with 'blocks:'"))
                continue
            library, errors = _validate(BlockLibrary, included)
            self.errors.extend(errors)
            if library is None:
                continue
            self.include(included, library.include, (*stack, target))
            self.add_blocks(included, library.blocks, ("blocks",))


def _display(path: FsPath) -> FsPath:
    try:
        return path.relative_to(FsPath.cwd())
    except ValueError:
        return path


def load_spec(path: str, raw: bytes | None = None) -> LoadedSpec:
    """Parse, validate and expand a spec. Raises SpecError listing every problem found."""
    if raw is None:
        raw = read_spec_bytes(path)
    doc = parse_yaml(raw, path)
    if not isinstance(doc.data, dict):
        raise SpecError(
            Diagnostic(doc.locate(()), "a spec must be a mapping with 'name', 'input', 'metadata' and 'nodes'")
        )
    spec, errors = _validate(SpecFile, doc)
    if spec is None:
        raise SpecError(errors)

    resolver = _IncludeResolver(FsPath(path).resolve().parent)
    resolver.include(doc, spec.include, (FsPath(path).resolve(),))
    resolver.add_blocks(doc, spec.blocks, ("blocks",))
    if resolver.errors:
        raise SpecError(resolver.errors)

    expander = Expander(resolver.blocks)
    expander.expand(doc.data["nodes"], doc, ("nodes",), "", "input", None, None, (), 0)
    expansion = expander.out
    diagnostics = list(expansion.errors)

    nodes: list[LoadedNode] = []
    for raw_node in expansion.nodes:
        op = _validate_node(raw_node, diagnostics)
        if op is not None:
            nodes.append(LoadedNode(op, raw_node.locate(), raw_node.trail))
    if diagnostics:
        raise SpecError(diagnostics)

    nodes = _apply_stochastic_depth(spec, nodes)
    last = nodes[-1].op.name if nodes else "input"
    outputs = tuple(spec.outputs) if spec.outputs else (last,)
    return LoadedSpec(
        spec=spec,
        path=path,
        nodes=tuple(nodes),
        aliases=expansion.aliases,
        outputs=outputs,
        train_outputs=tuple(spec.train_outputs),
        document=doc,
    )


def _validate_node(node: RawNode, diagnostics: list[Diagnostic]) -> OpBase | None:
    data = node.data
    name = data["name"]
    if "op" not in data:
        hint = "use 'block:' to instantiate a block" if "block" in data else f"ops: {', '.join(sorted(REGISTRY))}"
        diagnostics.append(Diagnostic(node.locate(), f"node '{name}' has no 'op'", hint, node.trail))
        return None
    op = data["op"]
    if op not in REGISTRY:
        diagnostics.append(
            Diagnostic(
                node.locate(("op",)),
                f"node '{name}': unknown op {op!r}",
                did_you_mean(op, REGISTRY) or f"known ops: {', '.join(sorted(REGISTRY))}",
                node.trail,
            )
        )
        return None
    try:
        return OP_ADAPTER.validate_python(data)
    except ValidationError as exc:
        diagnostics.extend(
            format_pydantic_errors(
                exc,
                lambda loc, key=False: node.locate(loc, key=key),
                node.trail,
                context=f"node '{name}'",
                tag=op,
            )
        )
        return None


def _apply_stochastic_depth(spec: SpecFile, nodes: list[LoadedNode]) -> list[LoadedNode]:
    """Give every stochastic_depth node without its own survival probability its scheduled one."""
    schedule = spec.stochastic_depth
    if schedule is None:
        return nodes
    pending = [i for i, n in enumerate(nodes) if n.op.op == "stochastic_depth" and n.op.survival is None]
    total = len(pending)
    result = list(nodes)
    for rank, index in enumerate(pending, start=1):
        survival = 1.0 - rank / total * (1.0 - schedule.final_survival)
        node = result[index]
        result[index] = LoadedNode(node.op.model_copy(update={"survival": survival}), node.location, node.trail)
    return result
