"""Spec file -> validated, expanded list of op nodes. Every problem becomes a located Diagnostic."""

from __future__ import annotations

import functools
import os
import re
import stat
from dataclasses import dataclass
from importlib import resources
from pathlib import Path as FsPath
from typing import Any, NamedTuple

from pydantic import ValidationError

from archspec.errors import Diagnostic, Location, SpecError, UsageError, did_you_mean
from archspec.ops import REGISTRY, OpBase
from archspec.spec import INPUT
from archspec.spec.diagnostics import format_pydantic_errors, short
from archspec.spec.expand import BlockSource, Expander, RawNode, Scope, _freeze
from archspec.spec.schema import BlockDef, BlockLibrary, SpecFile
from archspec.spec.yamlsafe import MAX_FILE_BYTES, Document, document_from_data, parse_yaml

MAX_INCLUDES = 64


class LoadedNode(NamedTuple):
    """A validated node: its op, and where it was written. A named tuple (immutable, and made in half a
    frozen dataclass's time: there is one per node of every load, and another per node whose inputs
    the graph resolves)."""

    op: OpBase
    trail: tuple[tuple[Location, str], ...]  # block uses that produced it, outermost first
    raw: RawNode  # the node as written (for pointing at one of its keys, e.g. a bad entry under 'inputs')
    # Nodes with the same `template` (not None) have ops equal in every field but 'name' and 'inputs'
    # (their data are equal but for those two keys: see _load_nodes): per-op figures computed for one of
    # them hold for all at the same input shapes (the graph and analysis share them).
    template: int | None = None

    @property
    def location(self) -> Location:
        """Where the node is written (looked up when asked for: on a valid spec most nodes never are)."""
        return self.raw.locate()

    def locate(self, sub: tuple = (), *, key: bool = False) -> Location:
        return self.raw.locate(sub, key=key)


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
        self.too_many = False  # the include limit was reported

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

    def include(self, doc: Document, includes: list[str], stack: tuple, here: FsPath | None = None) -> None:
        """Load `doc`'s includes: `archspec:<name>` from the package, else paths relative to `here`
        (default: the folder of `doc`)."""
        if here is None and includes:  # (resolving a path takes system calls: not for a library without includes)
            here = FsPath(doc.path).resolve().parent
        for i, rel in enumerate(includes):
            loc = doc.locate(("include", i))
            before = len(self.errors)
            if rel.startswith(SHIPPED_PREFIX):
                self._include_shipped(rel, loc, stack)
            else:
                self._include_one(rel, loc, here, stack)
            if len(self.errors) > before:
                self.incomplete = True

    def _room_for(self, key, loc: Location, stack: tuple) -> bool:
        """False (after reporting a cycle or the limit) when the file `key` is not to be loaded now."""
        if key in stack:
            cycle = " -> ".join(_short_name(p) for p in (*stack, key))
            self.errors.append(Diagnostic(loc, f"include cycle: {cycle}", "remove one of the includes"))
            return False
        if key in self.loaded:
            return False
        if len(self.loaded) >= MAX_INCLUDES:
            if not self.too_many:  # said once, at the first include past the limit
                self.too_many = True
                self.errors.append(Diagnostic(loc, f"more than {MAX_INCLUDES} included files", "merge block libraries"))
            return False
        return True

    def _include_shipped(self, rel: str, loc: Location, stack: tuple) -> None:
        """`archspec:<name>`: a block library shipped inside the package (archspec/blocks/<name>.yaml)."""
        name = rel[len(SHIPPED_PREFIX) :]
        resource = shipped_library(name)
        if resource is None:
            shipped = shipped_libraries()
            shown = rel if len(rel) <= 80 else rel[:77] + "..."
            self.errors.append(
                Diagnostic(
                    loc,
                    f"unknown block library '{shown}'",
                    did_you_mean(rel, [SHIPPED_PREFIX + n for n in shipped])
                    or f"shipped libraries: {', '.join(SHIPPED_PREFIX + n for n in sorted(shipped))}",
                )
            )
            return
        key = SHIPPED_PREFIX + name
        if not self._room_for(key, loc, stack):
            return
        self.loaded.add(key)
        shown = _display(FsPath(str(resource))) if isinstance(resource, FsPath) else key
        self._load_library(resource.read_bytes(), str(shown), (*stack, key))

    def _include_one(self, rel: str, loc: Location, here: FsPath, stack: tuple) -> None:
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
                        "keep block libraries inside the folder of the spec (no '..' or symlinks out of it); "
                        "include the shipped ones by name, e.g. 'archspec:resnet'",
                    )
                )
                return
            if not self._room_for(target, loc, stack):
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
        self._load_library(raw, str(_display(target)), (*stack, target))

    def _load_library(self, raw: bytes, shown: str, stack: tuple) -> None:
        """Parse and validate one block library, then load its own includes and keep its blocks."""
        try:
            included, library, errors = _parsed_library(raw, shown)
        except SpecError as exc:
            self.errors.extend(exc.diagnostics)
            return
        self.errors.extend(errors)
        if included is None:
            return
        if library is None:
            self.add_valid_blocks(included)
            return
        # A shipped library's relative includes resolve in the package folder; they are confined to the
        # user's spec folder like any other, so shipped libraries include each other by 'archspec:' name.
        self.include(included, library.include, stack)
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


@functools.lru_cache(maxsize=64)
def _parsed_library(raw: bytes, shown: str) -> tuple[Document | None, BlockLibrary | None, tuple[Diagnostic, ...]]:
    """A block library's bytes parsed and validated: (document or None, library or None, errors).

    Kept for the next load of the same bytes under the same name (a sweep includes `archspec:resnet` a
    thousand times; parsing and validating it took 0.8 ms of each load). Nothing here depends on the
    including spec, and loading never changes a document's data."""
    included = parse_yaml(raw, shown, what="library")
    if not isinstance(included.data, dict):
        message = Diagnostic(
            included.locate(()),
            "a block library must be a mapping with 'blocks:'",
            "e.g. blocks: {unit: {params: {width: null}, nodes: [...]}}",
        )
        return None, None, (message,)
    library, errors = _validate(BlockLibrary, included)
    return included, library, tuple(errors)


SHIPPED_PREFIX = "archspec:"
_LIBRARY_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def shipped_library(name: str) -> Any | None:
    """The resource of the block library `name` shipped in archspec/blocks/, or None: what
    `shipped_libraries().get(name)` gives, without listing the folder and examining every file in it."""
    if not _LIBRARY_NAME.fullmatch(name):
        return None
    entry = resources.files("archspec.blocks").joinpath(name + ".yaml")
    return entry if entry.is_file() else None


def shipped_libraries() -> dict[str, Any]:
    """Name -> resource of every block library shipped in archspec/blocks/ (package data). Only plain
    names of files in that one folder can be included, so 'archspec:../x' cannot reach anything else."""
    folder = resources.files("archspec.blocks")
    return {
        entry.name[: -len(".yaml")]: entry
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml") and _LIBRARY_NAME.fullmatch(entry.name[: -len(".yaml")]) and entry.is_file()
    }


def _short_name(key) -> str:
    return key.name if isinstance(key, FsPath) else str(key)


def _display(path: FsPath) -> FsPath:
    try:
        return path.relative_to(FsPath.cwd())
    except ValueError:
        return path


def load_spec(path: str, raw: bytes | None = None) -> LoadedSpec:
    """Parse, validate and expand a spec file. Raises SpecError listing every problem found."""
    if raw is None:
        raw = read_spec_bytes(path)
    doc = parse_yaml(raw, path)
    resolved = FsPath(path).resolve()
    return load_document(doc, resolved.parent, (resolved,))


def load_text(text: str, name: str = "<string>", base_dir: str | os.PathLike | None = None) -> LoadedSpec:
    """A spec given as YAML text. Relative includes resolve in `base_dir` (default: the current
    directory), confined to it; errors are located as `<name>:line:col`."""
    if not isinstance(text, str):
        raise UsageError(f"error: the spec text must be a str, not {type(text).__name__}")
    raw = text.encode("utf-8", "surrogatepass")  # a lone surrogate is then reported as invalid UTF-8
    return load_document(parse_yaml(raw, name), _base(base_dir), ())


def load_mapping(data: Any, name: str = "<mapping>", base_dir: str | os.PathLike | None = None) -> LoadedSpec:
    """A spec given as Python data (dicts, lists, str, int, float, bool, None). Errors are located by
    key path: `<mapping>:nodes[2].out_channels`."""
    return load_document(document_from_data(data, name), _base(base_dir), ())


def _base(base_dir) -> FsPath:
    return FsPath(base_dir if base_dir is not None else os.getcwd()).resolve()


def load_document(doc: Document, root: FsPath, stack: tuple) -> LoadedSpec:
    """Validate and expand a parsed spec; `root` is the folder relative includes are confined to."""
    path = doc.path
    if not isinstance(doc.data, dict):
        raise SpecError(Diagnostic(doc.locate(()), "a spec must be a mapping with 'name', 'input' and 'nodes'"))
    spec, diagnostics = _validate(SpecFile, doc)
    data = doc.data
    if isinstance(data.get("name"), str) and not data["name"].isprintable():
        diagnostics.append(
            Diagnostic(doc.locate(("name",)), "the spec's name contains control characters", "use plain text")
        )

    # Even when the top level has errors, check the nodes too: every error in one run.
    resolver = _IncludeResolver(root)
    includes = spec.include if spec else data.get("include")
    if isinstance(includes, list) and all(isinstance(i, str) for i in includes):
        resolver.include(doc, includes, stack, root)
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
    stochastic = False  # any op is
    expansion = None
    if isinstance(data.get("nodes"), list):
        # After a failed include any block might have come from it: unknown blocks are not guessed at.
        expander = Expander(resolver.blocks, resolver.unavailable, quiet_unknown=resolver.incomplete)
        expander.expand(data["nodes"], Scope.top(doc))
        expansion = expander.out
        diagnostics.extend(expansion.errors)
        nodes, stochastic = _load_nodes(expansion.nodes, diagnostics)
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

    # (without a stochastic op there is no survival probability to check or give)
    spec_errors = _check_outputs(spec, doc) + (_check_survival(spec, nodes) if stochastic else [])
    if spec_errors:
        raise SpecError(spec_errors)
    if stochastic:
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


def _load_nodes(raw_nodes: list[RawNode], diagnostics: list[Diagnostic]) -> tuple[list[LoadedNode], bool]:
    """The nodes whose data validate, each with its op, and whether any op is stochastic; problems go to
    `diagnostics`.

    Nodes whose data are equal in every key but 'name' and 'inputs' (value and type, in the same key
    order) are validated once: the others get a copy of that op under their own name and inputs
    (see the loop), and all of them one number, `LoadedNode.template`, under which the graph and analysis
    share shapes and figures. The expander has already grouped the nodes of one template line bound to
    the same block arguments (RawNode.template): the data are compared only for the first of each such
    group, and for the nodes outside blocks. A node that fails validation is never shared: each one is
    validated and reports for itself."""
    seen: set[tuple[Location, str]] = set()  # problems reported (one template line: each said once)
    # A group of nodes with equal data: (LoadedNode.template, the first node's op, its class, fields and
    # fields set): what copying that op for another node reads, taken once per group.
    by_template: dict[int, tuple] = {}  # RawNode.template -> its group
    by_data: dict[tuple, tuple] = {}  # _data_key -> the same
    groups = 0  # LoadedNode.template numbers handed out
    stochastic = False
    nodes: list[LoadedNode] = []
    append = nodes.append
    for raw_node in raw_nodes:
        data, _, _, trail, template = raw_node
        first = by_template.get(template) if template is not None else None
        if first is None:
            key = _data_key(data)
            first = by_data.get(key) if key is not None else None
            if first is None:  # new data: validate them
                op = _validate_node(raw_node, diagnostics, seen)
                if op is None:
                    continue
                stochastic = stochastic or op.stochastic  # (the nodes given a copy share its class)
                group = None
                if key is not None or template is not None:
                    group, groups = groups, groups + 1
                    first = (group, op, type(op), op.__dict__, op.__pydantic_fields_set__)
                    if key is not None:
                        by_data[key] = first
                    if template is not None:
                        by_template[template] = first
                append(_new_tuple(LoadedNode, (op, trail, raw_node, group)))
                continue
            if template is not None:
                by_template[template] = first
        # What validating this node gives: its data equal the first node's in every key but 'name' and
        # 'inputs', which the expander has made a non-empty text and a list of texts, and validation takes
        # them as they are. So nothing is left to check: copy the other fields (pydantic's `model_copy`
        # without its generality, a third of a validation's cost). Like model_copy it shares the field
        # values (a `kernel: [3, 5]` list): ops are frozen and nothing changes them. Validated ops have no
        # extra or private attributes (tests compare each node's op with its own validation, which
        # compares those too).
        group, _, kind, fields, fields_set = first
        op = _new_object(kind)
        fields = fields.copy()
        fields["name"] = data["name"]
        fields["inputs"] = list(data["inputs"])
        _set_attribute(op, "__dict__", fields)
        _set_attribute(op, "__pydantic_fields_set__", set(fields_set))
        _set_attribute(op, "__pydantic_extra__", None)  # extra keys are refused
        _set_attribute(op, "__pydantic_private__", None)  # ops have no private attributes
        append(_new_tuple(LoadedNode, (op, trail, raw_node, group)))
    return nodes, stochastic


_PLAIN = frozenset({str, int, float, bool, type(None)})


def _data_key(data: dict) -> tuple | None:
    """A hashable key, equal for two nodes' data when they are equal in every key but 'name' and
    'inputs', values with their types (`8`, `8.0` and `true` differ, as they do to the strict validation),
    in the same key order; None when a value is not plain data (see expand._freeze)."""
    items = []
    for key, value in data.items():
        if key == "name" or key == "inputs":
            continue
        kind = value.__class__
        if kind in _PLAIN:
            items.append((key, kind, value))
        else:
            frozen = _freeze(value)
            if frozen is None:
                return None
            items.append((key, frozen))
    return tuple(items)


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
                    f"node '{name}': unknown op {short(op)}"
                    if text is not None
                    else f"node '{name}': 'op' must be an op name",
                    (did_you_mean(text, REGISTRY) if text else None) or f"known ops: {', '.join(sorted(REGISTRY))}",
                    node.trail,
                )
            ]
        )
        return None
    try:
        return REGISTRY[op].model_validate(data)
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


_new_object = object.__new__
_set_attribute = object.__setattr__
_new_tuple = tuple.__new__  # LoadedNode(...) without the named tuple's own __new__ (one call fewer per node)


def _check_outputs(spec: SpecFile, doc: Document) -> list[Diagnostic]:
    """`outputs: []` would silently mean "the last node": refuse it."""
    if spec.outputs == []:
        return [
            Diagnostic(
                doc.locate(("outputs",)),
                "'outputs' is empty",
                "list the output nodes, or leave 'outputs' out to use the last node",
            )
        ]
    return []


def _check_survival(spec: SpecFile, nodes: list[LoadedNode]) -> list[Diagnostic]:
    """A stochastic node needs a survival probability: its own, or the spec's `stochastic_depth:` schedule.
    (Silently taking 1.0 would report a stochastic-depth network as an ordinary one.)"""
    if spec.stochastic_depth is not None:
        return []
    errors = []
    seen: set[Location] = set()
    for node in nodes:
        if node.op.stochastic and node.op.survival is None and node.location not in seen:
            seen.add(node.location)  # one template line used by many block instances: say it once
            # Ops state the probability as survival (Huang et al.) or as drop probability p (torchvision).
            own = "survival: 0.8" if "survival" in type(node.op).model_fields else "p: 0.2"
            what = "survival probability" if own.startswith("survival") else "drop probability"
            errors.append(
                Diagnostic(
                    node.location,
                    f"node '{node.op.name}': {node.op.op} has no {what}",
                    f"give it '{own}', or add a top-level schedule that assigns one to every such node, "
                    "e.g. 'stochastic_depth: {schedule: linear, final_survival: 0.5}' (Huang et al.) or"
                    " 'stochastic_depth: {schedule: torchvision, prob: 0.2}'",
                    node.trail,
                )
            )
    return errors


def _apply_stochastic_depth(spec: SpecFile, nodes: list[LoadedNode]) -> list[LoadedNode]:
    """Give every stochastic node without its own probability the one its block's rank gets from the
    spec's `stochastic_depth:` schedule (see StochasticDepthSchedule)."""
    schedule = spec.stochastic_depth
    if schedule is None:
        return nodes
    pending = [i for i, n in enumerate(nodes) if n.op.stochastic and n.op.survival is None]
    if schedule.blocks is None:
        block_of = {i: rank for rank, i in enumerate(pending)}
        total = len(pending)
    else:
        pattern = schedule.blocks.split(".")
        blocks: dict[str, int] = {}  # block name -> index, in graph order
        for node in nodes:
            parts = node.op.name.split(".")
            if len(parts) > len(pattern) and all(p in ("*", q) for p, q in zip(pattern, parts, strict=False)):
                blocks.setdefault(".".join(parts[: len(pattern)]), len(blocks))
        block_of = {}
        outside = []
        for i in pending:
            block = ".".join(nodes[i].op.name.split(".")[: len(pattern)])
            if block in blocks and len(nodes[i].op.name.split(".")) > len(pattern):
                block_of[i] = blocks[block]
            else:
                outside.append(i)
        if outside:
            raise SpecError(
                [
                    Diagnostic(
                        nodes[i].location,
                        f"node '{nodes[i].op.name}' is not inside a block matching"
                        f" stochastic_depth.blocks '{schedule.blocks}'",
                        "give the node its own probability, or a 'blocks' pattern (one '*' per name component)"
                        " that matches the block it is in",
                        nodes[i].trail,
                    )
                    for i in outside
                ]
            )
        total = len(blocks)
    result = list(nodes)
    for i in pending:
        drop = schedule.drop_probability(block_of[i], total)
        node = result[i]
        # (a node of its own now: its op differs from its template's in the probability)
        result[i] = LoadedNode(node.op.with_drop_probability(drop), node.trail, node.raw)
    return result
