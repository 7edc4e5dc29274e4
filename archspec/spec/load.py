"""Spec file -> validated, expanded list of op nodes. Every problem becomes a located Diagnostic."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path as FsPath
from typing import Any

from pydantic import ValidationError

from archspec.errors import Diagnostic, Location, SpecError, UsageError, did_you_mean
from archspec.ops import OP_ADAPTER, REGISTRY, OpBase
from archspec.spec import INPUT
from archspec.spec.expand import BlockSource, Expander, RawNode, _short, format_pydantic_errors
from archspec.spec.schema import BlockDef, BlockLibrary, SpecFile
from archspec.spec.yamlsafe import MAX_FILE_BYTES, Document, parse_yaml

MAX_INCLUDES = 64


@dataclass(frozen=True)
class LoadedNode:
    op: OpBase
    location: Location
    trail: tuple[tuple[Location, str], ...]
    # The node as written (for pointing at one of its keys, e.g. a bad entry under 'inputs').
    raw: RawNode | None = field(default=None, compare=False, repr=False)

    def locate(self, sub: tuple = (), *, key: bool = False) -> Location:
        return self.raw.locate(sub, key=key) if self.raw is not None else self.location


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
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise UsageError(f"{path}: error: no such file") from None
    except (OSError, ValueError) as exc:
        raise UsageError(f"{path}: error: cannot open file ({getattr(exc, 'strerror', None) or exc})") from None
    if stat.S_ISDIR(mode):
        raise UsageError(f"{path}: error: is a directory, not a spec file")
    if not stat.S_ISREG(mode):  # a FIFO would block forever, /dev/zero would never end
        raise UsageError(f"{path}: error: not a regular file")
    try:
        return read_limited(FsPath(path))
    except OSError as exc:
        raise UsageError(f"{path}: error: cannot read file ({exc.strerror})") from None


def read_limited(path: FsPath) -> bytes:
    """The file's bytes, reading at most one byte past the size limit (parse_yaml reports it)."""
    with open(path, "rb") as handle:
        return handle.read(MAX_FILE_BYTES + 1)


def _validate(model, doc: Document, base: tuple = (), context: str = ""):
    data = _at(doc.data, base)
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        return None, format_pydantic_errors(
            exc, lambda loc, key=False: doc.locate((*base, *loc), key=key), context=context, data=data, model=model
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
        # Blocks that could not be loaded (their error is already reported): uses of them stay quiet.
        self.unavailable: set[str] = set()
        self.incomplete = False  # an include failed: any block might have come from it

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
            before = len(self.errors)
            self._include_one(doc, rel, loc, here, stack)
            if len(self.errors) > before:
                self.incomplete = True

    def _include_one(self, doc: Document, rel: str, loc: Location, here: FsPath, stack: tuple[FsPath, ...]) -> None:
        shown = rel if len(rel) <= 80 else rel[:77] + "..."
        if os.path.isabs(rel) or rel.startswith("~"):
            self.errors.append(
                Diagnostic(loc, f"include '{shown}' is an absolute path", "use a path relative to this file")
            )
            return
        try:
            target = (here / rel).resolve()  # resolves symlinks: an escaping link is caught below
            if not target.is_relative_to(self.root):
                self.errors.append(
                    Diagnostic(
                        loc,
                        f"include '{shown}' points outside the spec folder {self.root}",
                        "keep block libraries inside the folder of the spec (no '..' or symlinks out of it)",
                    )
                )
                return
            if target in stack:
                cycle = " -> ".join(p.name for p in (*stack, target))
                self.errors.append(Diagnostic(loc, f"include cycle: {cycle}", "remove one of the includes"))
                return
            if target in self.loaded:
                return
            if len(self.loaded) >= MAX_INCLUDES:
                self.errors.append(Diagnostic(loc, f"more than {MAX_INCLUDES} included files"))
                return
            if not target.exists():
                self.errors.append(Diagnostic(loc, f"included file '{shown}' does not exist"))
                return
            if not target.is_file():
                self.errors.append(Diagnostic(loc, f"included path '{shown}' is not a regular file"))
                return
            self.loaded.add(target)
            raw = read_limited(target)
        except (OSError, ValueError) as exc:  # unreadable, name too long, NUL in the path, ...
            self.errors.append(
                Diagnostic(loc, f"cannot read include '{shown}' ({getattr(exc, 'strerror', None) or exc})")
            )
            return
        try:
            included = parse_yaml(raw, str(_display(target)))
        except SpecError as exc:
            self.errors.extend(exc.diagnostics)
            return
        if not isinstance(included.data, dict):
            self.errors.append(Diagnostic(included.locate(()), "a block library must be a mapping with 'blocks:'"))
            return
        library, errors = _validate(BlockLibrary, included)
        self.errors.extend(errors)
        if library is None:
            self.add_valid_blocks(included)
            return
        self.include(included, library.include, (*stack, target))
        self.add_blocks(included, library.blocks, ("blocks",))

    def add_valid_blocks(self, doc: Document) -> None:
        """After a file failed validation (errors already reported): keep the blocks that are fine
        on their own, so the rest of the spec can still be checked in the same run."""
        blocks = doc.data.get("blocks")
        if not isinstance(blocks, dict):
            self.incomplete = True
            return
        good = {}
        for name, raw in blocks.items():
            try:
                good[name] = BlockDef.model_validate(raw)
            except ValidationError:
                self.unavailable.add(name)
        self.add_blocks(doc, good, ("blocks",))


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
    spec, diagnostics = _validate(SpecFile, doc)
    data = doc.data
    if isinstance(data.get("name"), str) and not data["name"].isprintable():
        diagnostics.append(
            Diagnostic(doc.locate(("name",)), "the spec's name contains control characters", "use plain text")
        )

    # Even when the top level has errors, check the nodes too: every error in one run.
    resolver = _IncludeResolver(FsPath(path).resolve().parent)
    includes = spec.include if spec else data.get("include")
    if isinstance(includes, list) and all(isinstance(i, str) for i in includes):
        resolver.include(doc, includes, (FsPath(path).resolve(),))
    elif includes is not None:
        resolver.incomplete = True
    if spec is not None:
        resolver.add_blocks(doc, spec.blocks, ("blocks",))
    elif isinstance(data.get("blocks"), dict):
        resolver.add_valid_blocks(doc)
    elif "blocks" in data:
        resolver.incomplete = True
    diagnostics.extend(resolver.errors)

    nodes: list[LoadedNode] = []
    expansion = None
    if isinstance(data.get("nodes"), list):
        # After a failed include any block might have come from it: unknown blocks are not guessed at.
        expander = Expander(resolver.blocks, resolver.unavailable, quiet_unknown=resolver.incomplete)
        expander.expand(data["nodes"], doc, ("nodes",), "", INPUT, None, None, (), 0)
        expansion = expander.out
        diagnostics.extend(expansion.errors)
        seen: set[tuple[Location, str]] = set()
        for raw_node in expansion.nodes:
            op = _validate_node(raw_node, diagnostics, seen)
            if op is not None:
                nodes.append(LoadedNode(op, raw_node.locate(), raw_node.trail, raw_node))
        if not nodes and not diagnostics:
            diagnostics.append(
                Diagnostic(
                    doc.locate(("nodes",)),
                    "the graph is empty: every node is bypassed ('when: false')",
                    "a spec needs at least one node that computes something",
                )
            )
    if diagnostics or spec is None or expansion is None:
        # In file order (this file first, then included ones); stable, so one line's errors keep their order.
        diagnostics.sort(
            key=lambda d: (
                (d.location.path != path, d.location.path, d.location.line, d.location.col)
                if d.location
                else (True, "", 0, 0)
            )
        )
        raise SpecError(diagnostics)

    nodes = _apply_stochastic_depth(spec, nodes)
    last = nodes[-1].op.name if nodes else INPUT
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


def _validate_node(node: RawNode, diagnostics: list[Diagnostic], seen: set | None = None) -> OpBase | None:
    data = node.data
    name = data["name"]

    def report(found: list[Diagnostic]) -> None:
        # A template line used by many block instances: report each distinct problem once.
        for d in found:
            key = (d.location, d.message.replace(f"'{name}'", "'*'"))
            if seen is not None:
                if key in seen:
                    continue
                seen.add(key)
            diagnostics.append(d)

    if "op" not in data:
        hint = "use 'block:' to instantiate a block" if "block" in data else f"ops: {', '.join(sorted(REGISTRY))}"
        report([Diagnostic(node.locate(), f"node '{name}' has no 'op'", hint, node.trail)])
        return None
    op = data["op"]
    if not isinstance(op, str) or op not in REGISTRY:
        text = op if isinstance(op, str) else None
        report(
            [
                Diagnostic(
                    node.locate(("op",)),
                    f"node '{name}': unknown op {_short(op)}"
                    if text is not None
                    else f"node '{name}': 'op' must be an op name",
                    (did_you_mean(text, REGISTRY) if text else None) or f"known ops: {', '.join(sorted(REGISTRY))}",
                    node.trail,
                )
            ]
        )
        return None
    try:
        return OP_ADAPTER.validate_python(data)
    except ValidationError as exc:
        report(
            format_pydantic_errors(
                exc,
                lambda loc, key=False: node.locate(loc, key=key),
                node.trail,
                context=f"node '{name}'",
                data=data,
                model=REGISTRY[op],
            )
        )
        return None


def _apply_stochastic_depth(spec: SpecFile, nodes: list[LoadedNode]) -> list[LoadedNode]:
    """Give every stochastic_depth node without its own survival probability its scheduled one."""
    schedule = spec.stochastic_depth
    if schedule is None:
        return nodes
    pending = [i for i, n in enumerate(nodes) if n.op.stochastic and n.op.survival is None]
    total = len(pending)
    result = list(nodes)
    for rank, index in enumerate(pending, start=1):
        survival = 1.0 - rank / total * (1.0 - schedule.final_survival)
        node = result[index]
        result[index] = LoadedNode(
            node.op.model_copy(update={"survival": survival}), node.location, node.trail, node.raw
        )
    return result
