"""Block expansion: templates + arguments -> a flat list of named nodes, each remembering where it
came from (its line in the template and the chain of block uses), so errors point at both."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from archspec.errors import Diagnostic, Location, did_you_mean
from archspec.spec.schema import BlockDef, BlockUse, Repeat
from archspec.spec.yamlsafe import Document, Path

MAX_NODES = 50_000  # after expansion; ResNet-152 has about 500
MAX_BLOCK_DEPTH = 16
RESERVED = "input"


@dataclass(frozen=True)
class RawNode:
    """An expanded node's data (parameters substituted, inputs resolved to full names)."""

    data: dict[str, Any]
    doc: Document
    path: Path  # where the node's mapping sits in `doc`
    trail: tuple[tuple[Location, str], ...] = ()  # block uses that produced it, outermost first

    def locate(self, sub: Path = (), *, key: bool = False) -> Location:
        return self.doc.locate((*self.path, *sub), key=key)


@dataclass(frozen=True)
class BlockSource:
    definition: BlockDef
    raw: dict[str, Any]
    doc: Document
    path: Path


@dataclass
class Expansion:
    nodes: list[RawNode] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # bypassed node / block name -> tensor
    errors: list[Diagnostic] = field(default_factory=list)
    # Names of declared nodes, also those inside blocks, for "did you mean" hints.
    known_names: set[str] = field(default_factory=set)


def format_pydantic_errors(
    exc: ValidationError, locate, trail=(), context: str = "", tag: str | None = None
) -> list[Diagnostic]:
    """One diagnostic per field: union branches (e.g. int | [h, w]) are folded into one message;
    `tag` is the discriminator value (the op name) that pydantic puts first in each location."""
    by_field: dict[tuple, list[dict]] = {}
    for err in exc.errors():
        raw_loc = tuple(err["loc"])
        if tag is not None and raw_loc[:1] == (tag,):
            raw_loc = raw_loc[1:]
        loc = tuple(
            part
            for part in raw_loc
            if not (isinstance(part, str) and ("[" in part or part.startswith("constrained") or part in _UNION_TAGS))
        )
        by_field.setdefault(loc, []).append(err)
    diagnostics = []
    for loc, errs in by_field.items():
        kinds = {e["type"] for e in errs}
        label = ".".join(str(p) for p in loc) or "value"
        prefix = f"{context}: " if context else ""
        if kinds == {"extra_forbidden"}:
            message = f"{prefix}unknown key '{loc[-1]}'"
            diagnostics.append(Diagnostic(locate(loc, key=True), message, None, trail))
            continue
        if "missing" in kinds:
            diagnostics.append(
                Diagnostic(locate(loc[:-1]), f"{prefix}missing required key '{loc[-1]}'", None, trail)
            )
            continue
        messages = []
        for e in errs:
            msg = e["msg"].removeprefix("Input should be ").removeprefix("Value error, ")
            if msg not in messages:
                messages.append(msg)
        got = errs[0].get("input")
        diagnostics.append(
            Diagnostic(
                locate(loc),
                f"{prefix}invalid value {got!r} for '{label}': should be " + " or ".join(messages),
                None,
                trail,
            )
        )
    return diagnostics


_UNION_TAGS = {"int", "str", "float", "bool", "list", "Repeat", "dict", "none"}


class Expander:
    """Expands one spec's node list. Collects every error it can instead of stopping at the first."""

    def __init__(self, blocks: dict[str, BlockSource]):
        self.blocks = blocks
        self.out = Expansion()

    # ---- helpers ----
    def _error(self, loc: Location, message: str, hint: str | None = None, trail=()) -> None:
        self.out.errors.append(Diagnostic(loc, message, hint, tuple(trail)))

    def _substitute(self, value: Any, env: dict[str, Any] | None, doc: Document, path: Path, block: str | None, trail):
        if isinstance(value, str) and value.startswith("$"):
            param = value[1:]
            if env is None:
                self._error(
                    doc.locate(path),
                    f"parameter reference '{value}' outside a block",
                    "'$name' values can only be used inside a block definition",
                    trail,
                )
                return value
            if param not in env:
                self._error(
                    doc.locate(path),
                    f"unknown parameter '{value}' in block '{block}'",
                    did_you_mean(param, env) or f"declare it under the block's 'params:'",
                    trail,
                )
                return value
            return env[param]
        if isinstance(value, list):
            return [self._substitute(v, env, doc, (*path, i), block, trail) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self._substitute(v, env, doc, (*path, k), block, trail) for k, v in value.items()}
        return value

    # ---- main walk ----
    def expand(
        self,
        raw_nodes: list[Any],
        doc: Document,
        base: Path,
        prefix: str,
        scope_input: str,
        env: dict[str, Any] | None,
        block: str | None,
        trail: tuple[tuple[Location, str], ...],
        depth: int,
    ) -> str:
        """Expand `raw_nodes` (at `base` in `doc`); return the full name of the last tensor."""
        previous = scope_input
        local: dict[str, str] = {}
        for index, raw in enumerate(raw_nodes):
            path = (*base, index)
            if len(self.out.nodes) > MAX_NODES:
                self._error(
                    doc.locate(path),
                    f"the spec expands to more than {MAX_NODES:,} nodes",
                    "lower the 'repeat' counts",
                    trail,
                )
                return previous
            if not isinstance(raw, dict):
                self._error(doc.locate(path), "a node must be a mapping with 'name' and 'op' (or 'block')", None, trail)
                continue
            data = self._substitute(raw, env, doc, path, block, trail)
            name = data.get("name")
            if not isinstance(name, str) or not name or any(ch.isspace() for ch in name) or name == RESERVED:
                what = "missing 'name'" if name is None else f"invalid node name {name!r}"
                self._error(
                    doc.locate((*path, "name")) if name is not None else doc.locate(path),
                    what,
                    "give every node a unique name without spaces ('input' is reserved)",
                    trail,
                )
                continue
            full = prefix + name
            self.out.known_names.add(full)
            inputs = data.get("inputs")
            if inputs is None:
                inputs = [previous]
                explicit = False
            else:
                if isinstance(inputs, str):
                    inputs = [inputs]
                explicit = True
            if not isinstance(inputs, list) or not all(isinstance(i, str) for i in inputs):
                self._error(doc.locate((*path, "inputs")), "'inputs' must be a node name or a list of names", None, trail)
                continue
            resolved = [self._resolve(ref, scope_input, local, prefix) if explicit else ref for ref in inputs]

            when = data.pop("when", True)
            if not isinstance(when, bool):
                self._error(doc.locate((*path, "when")), f"'when' must be true or false, got {when!r}", None, trail)
                continue
            if not when:  # bypassed: the node passes its (first) input through
                self.out.aliases[full] = resolved[0]
                local[name] = resolved[0]
                previous = resolved[0]
                continue

            if "block" in data and "op" not in data:
                previous = self._expand_use(data, resolved, doc, path, full, env, trail, depth)
                local[name] = previous
                continue
            data["name"] = full
            data["inputs"] = resolved
            self.out.nodes.append(RawNode(data, doc, path, trail))
            local[name] = full
            previous = full
        return previous

    def _resolve(self, ref: str, scope_input: str, local: dict[str, str], prefix: str) -> str:
        if ref == RESERVED:
            return scope_input
        if ref in local:
            return local[ref]
        return prefix + ref  # a node defined later in this scope; the graph checks it exists

    def _expand_use(self, data, resolved, doc, path, full, env, trail, depth) -> str:
        try:
            use = BlockUse.model_validate(data)
        except ValidationError as exc:
            self.out.errors.extend(
                format_pydantic_errors(exc, lambda loc, key=False: doc.locate((*path, *loc), key=key), trail)
            )
            return resolved[0]
        source = self.blocks.get(use.block)
        if source is None:
            self._error(
                doc.locate((*path, "block")),
                f"unknown block '{use.block}'",
                did_you_mean(use.block, self.blocks) or "define it under 'blocks:' or include a block library",
                trail,
            )
            return resolved[0]
        if depth >= MAX_BLOCK_DEPTH:
            self._error(
                doc.locate(path),
                f"blocks nested more than {MAX_BLOCK_DEPTH} deep (does block '{use.block}' use itself?)",
                None,
                trail,
            )
            return resolved[0]
        if len(resolved) != 1:
            self._error(doc.locate((*path, "inputs")), f"block '{use.block}' takes one input, got {len(resolved)}", None, trail)
            return resolved[0]
        template_loc = source.doc.locate(source.path, key=True)
        params = source.definition.params
        ok = True
        for section in ("args", "first"):
            for arg in getattr(use, section):
                if arg not in params:
                    ok = False
                    self._error(
                        doc.locate((*path, section, arg), key=True),
                        f"block '{use.block}' has no parameter '{arg}'",
                        did_you_mean(arg, params) or f"its parameters are: {', '.join(params) or 'none'}",
                        (*trail, (template_loc, f"block '{use.block}' is defined here")),
                    )
        for param, default in params.items():
            if default is None and param not in use.args and not (
                param in use.first and use.repeat in (None, 1)
            ):
                ok = False
                self._error(
                    doc.locate((*path, "args"), key=True) if use.args else doc.locate(path),
                    f"block '{use.block}' needs argument '{param}'",
                    f"add '{param}: ...' under 'args:'",
                    (*trail, (template_loc, f"block '{use.block}' is defined here")),
                )
        if not ok:
            return resolved[0]
        repeat = use.repeat if isinstance(use.repeat, Repeat) else None
        count = repeat.count if repeat else (use.repeat or 1)
        x = resolved[0]
        for k in range(count):
            if use.repeat is None:
                instance = full
            else:
                fmt = repeat.name if repeat else "{i}"
                start = repeat.start if repeat else 0
                instance = f"{full}.{fmt.replace('{i}', str(start + k))}"
            bound = dict(params)
            bound.update(use.args)
            if k == 0:
                bound.update(use.first)
            here = (*trail, (doc.locate(path), f"in block '{use.block}' instance '{instance}'"))
            x = self.expand(
                source.raw["nodes"],
                source.doc,
                (*source.path, "nodes"),
                instance + ".",
                x,
                bound,
                use.block,
                here,
                depth + 1,
            )
            if source.definition.output is not None:
                x = f"{instance}.{source.definition.output}"
                x = self.out.aliases.get(x, x)
        self.out.aliases[full] = x
        return x
