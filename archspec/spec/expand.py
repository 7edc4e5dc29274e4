"""Block expansion: templates + arguments -> a flat list of named nodes, each remembering where it
came from (its line in the template and the chain of block uses), so errors point at both."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from archspec.errors import Diagnostic, Location, did_you_mean
from archspec.spec import INPUT
from archspec.spec.schema import BlockDef, BlockUse, Repeat
from archspec.spec.yamlsafe import Document, Path

MAX_NODES = 20_000  # after expansion (ResNet-152 has about 500, ResNet-1001 about 3,700); bounds time to seconds
MAX_BLOCK_DEPTH = 16
MAX_WORK = 2_000_000  # values walked while substituting block parameters (bounds time, not just nodes)
_NO_DATA = object()


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
    exc: ValidationError,
    locate,
    trail=(),
    context: str = "",
    tag: str | None = None,
    *,
    data: Any = _NO_DATA,
    model: Any = None,
) -> list[Diagnostic]:
    """One diagnostic per field, in the spec's own terms.

    `data` is the validated input: pydantic's error locations also name union branches
    ('constrained-int', 'list[...]', the op tag), which are dropped by walking the data. `model`
    (the pydantic class validated) lets an unknown key get a "did you mean" hint. Without `data`,
    `tag` (the discriminator value, e.g. the op name) is dropped from the front of each location.
    """
    by_field: dict[tuple, list[dict]] = {}
    for err in exc.errors():
        if data is _NO_DATA and tag is not None and tuple(err["loc"][:1]) == (tag,):
            err = {**err, "loc": tuple(err["loc"][1:])}
        loc = _user_loc(err, data)
        by_field.setdefault(loc, []).append(err)
    # A union's type-mismatch errors are noise when one branch matched deeper down: for
    # kernel: [3, 0] show "kernel[1] should be at least 1", not also "kernel should be an integer".
    for loc in list(by_field):
        errs = by_field[loc]
        if all(e["type"].endswith("_type") for e in errs) and any(
            other[: len(loc)] == loc and len(other) > len(loc) for other in by_field
        ):
            del by_field[loc]
    prefix = f"{context}: " if context else ""
    extras = {loc: errs for loc, errs in by_field.items() if {e["type"] for e in errs} == {"extra_forbidden"}}
    diagnostics = []
    for loc, errs in by_field.items():
        kinds = {e["type"] for e in errs}
        if loc in extras:
            allowed = _fields_at(model, loc[:-1]) if model is not None else set()
            hint = did_you_mean(loc[-1], allowed) if allowed else None
            if hint is None and allowed:
                hint = f"allowed keys here: {', '.join(sorted(allowed))}"
            diagnostics.append(Diagnostic(locate(loc, key=True), f"{prefix}unknown key '{loc[-1]}'", hint, trail))
            continue
        if "missing" in kinds:
            typos = [x[-1] for x in extras if x[:-1] == loc[:-1] and did_you_mean(x[-1], [loc[-1]])]
            hint = f"is '{typos[0]}' a misspelling of it?" if typos else None
            diagnostics.append(Diagnostic(locate(loc[:-1]), f"{prefix}missing required key '{loc[-1]}'", hint, trail))
            continue
        if not all(e["type"].endswith("_type") for e in errs):
            errs = [e for e in errs if not e["type"].endswith("_type")]  # the branch whose type matched
        phrases: list[str] = []
        hints: list[str] = []
        for e in errs:
            phrase, hint = _phrase(e)
            if phrase not in phrases:
                phrases.append(phrase)
            if hint and hint not in hints:
                hints.append(hint)
        if (
            len(loc) >= 2
            and loc[-2] == "nodes"
            and isinstance(loc[-1], int)
            and "dict_type" in {e["type"] for e in errs}
        ):
            hints.append("a node is a mapping, e.g. {name: conv1, op: conv2d, out_channels: 64, kernel: 3}")
        if (
            loc
            and loc[-1] in _PAIR_FIELDS
            and not hints
            and any(e["type"].endswith("_type") or e["type"] in ("too_long", "too_short") for e in errs)
        ):
            hints.append("write one integer for both axes, or [height, width]")
        got = _short(errs[0].get("input"))
        diagnostics.append(
            Diagnostic(
                locate(loc),
                f"{prefix}invalid value {got} for '{_label(loc)}': should be " + " or ".join(phrases),
                "; ".join(hints) or None,
                trail,
            )
        )
    return diagnostics


_PAIR_FIELDS = {"kernel", "stride", "padding", "dilation", "output_size"}
_YAML11_BOOLS = {"yes", "no", "on", "off", "y", "n", "Yes", "No", "On", "Off", "YES", "NO", "ON", "OFF", "Y", "N"}


def _user_loc(err: dict, data: Any) -> tuple:
    """The error's location in the user's data, without pydantic's union-branch labels."""
    loc = err["loc"]
    if data is _NO_DATA:  # no data to walk: drop what looks like a branch label
        return tuple(
            p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("constrained") or p in _UNION_TAGS))
        )
    kept = []
    current = data
    for i, part in enumerate(loc):
        if isinstance(current, dict) and isinstance(part, str) and part in current:
            current = current[part]
            kept.append(part)
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            current = current[part]
            kept.append(part)
        elif i == len(loc) - 1 and err["type"] == "missing":
            kept.append(part)
        elif isinstance(part, int):  # never a branch label
            kept.append(part)
            current = None
        # else: a union branch label ('constrained-int', 'list[...]', an op tag): drop it
    return tuple(kept)


def _phrase(err: dict) -> tuple[str, str | None]:
    """What the value should be, in a few words, and an optional hint about the given value."""
    kind, ctx, value = err["type"], err.get("ctx") or {}, err.get("input")
    hint = None
    if kind == "int_type":
        if isinstance(value, float) and value.is_integer():
            hint = f"write {int(value)}: a decimal point or exponent (like 1e3) makes a float"
        elif isinstance(value, bool):
            hint = "true/false are booleans, not numbers"
        elif isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            hint = "remove the quotes"
        return "a valid integer", hint
    if kind == "float_type":
        return "a number", "remove the quotes" if isinstance(value, str) and _is_number(value) else None
    if kind == "bool_type":
        if isinstance(value, str) and value in _YAML11_BOOLS:
            hint = f"YAML 1.2 reads '{value}' as text; write true or false"
        return "true or false", hint
    if kind == "string_type":
        return "a string", "quote it" if isinstance(value, (int, float, bool)) else None
    if kind == "list_type":
        return "a list", None
    if kind in ("dict_type", "model_type", "model_attributes_type"):
        return "a mapping", None
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        word = {
            "greater_than_equal": "at least",
            "greater_than": "greater than",
            "less_than_equal": "at most",
            "less_than": "less than",
        }[kind]
        bound = next(iter(ctx.values()))
        return f"{word} {_num(bound)}", None
    if kind == "too_short":
        n = ctx.get("min_length")
        return f"a list of at least {n} item{'s' if n != 1 else ''} (got {ctx.get('actual_length')})", None
    if kind == "too_long":
        n = ctx.get("max_length")
        return f"a list of at most {n} item{'s' if n != 1 else ''} (got {ctx.get('actual_length')})", None
    if kind == "literal_error":
        return f"one of {ctx.get('expected')}", None
    message = err["msg"].removeprefix("Input should be ").removeprefix("Value error, ")
    return message, None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _num(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 5] + " ...]" if text[0] == "[" else text[: limit - 4] + " ..."


def _label(loc: tuple) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "value"


def _unwrap(annotation: Any) -> list[Any]:
    """Annotated / Optional / union -> the plain types inside."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _unwrap(get_args(annotation)[0])
    if origin in (Union, UnionType):
        return [t for arg in get_args(annotation) for t in _unwrap(arg)]
    return [annotation]


def _fields_at(model: Any, path: tuple) -> set[str]:
    """Field names of the pydantic model(s) reached from `model` by following `path`."""
    current = [model]
    for part in path:
        following = []
        for annotation in current:
            for t in _unwrap(annotation):
                if isinstance(t, type) and issubclass(t, BaseModel):
                    if isinstance(part, str) and part in t.model_fields:
                        following.append(t.model_fields[part].annotation)
                elif get_origin(t) is list and isinstance(part, int):
                    following.extend(get_args(t)[:1])
                elif get_origin(t) is dict and isinstance(part, str):
                    following.extend(get_args(t)[1:2])
        current = following
    keys: set[str] = set()
    for annotation in current:
        for t in _unwrap(annotation):
            if isinstance(t, type) and issubclass(t, BaseModel):
                keys |= set(t.model_fields)
    return keys


_UNION_TAGS = {"int", "str", "float", "bool", "list", "Repeat", "dict", "none"}


class Expander:
    """Expands one spec's node list. Collects every error it can instead of stopping at the first."""

    def __init__(self, blocks: dict[str, BlockSource], unavailable: set[str] | None = None, quiet_unknown=False):
        self.blocks = blocks
        # Blocks whose definition failed (already reported): uses of them stay quiet. After a failed
        # include (quiet_unknown) any unknown block might have come from it, so none is reported.
        self.unavailable = unavailable or set()
        self.quiet_unknown = quiet_unknown
        self.out = Expansion()
        self._reported: set[tuple[Location, str]] = set()
        self._active: list[str] = []  # blocks being expanded, outermost first (recursion check)
        self._visited = 0  # nodes visited, including bypassed ones and block uses
        self._work = 0  # values walked by substitution
        self.stopped = False  # a size limit was hit: stop expanding, report it once
        self._bad_reference = False  # set by _substitute when a '$param' could not be resolved

    # ---- helpers ----
    def _error(self, loc: Location, message: str, hint: str | None = None, trail=()) -> None:
        if (loc, message) in self._reported:  # the same template line, used again: say it once
            return
        self._reported.add((loc, message))
        self.out.errors.append(Diagnostic(loc, message, hint, tuple(trail)))

    def _limit(self, loc: Location, trail) -> bool:
        """True (after reporting once) when expansion has grown past the limits."""
        if not self.stopped and (self._visited > MAX_NODES or self._work > MAX_WORK):
            self.stopped = True
            self._error(
                loc,
                f"the spec expands to more than {MAX_NODES:,} nodes"
                if self._visited > MAX_NODES
                else f"expanding the blocks takes more than {MAX_WORK:,} steps",
                "lower the 'repeat' counts or the nesting of blocks",
                trail,
            )
        return self.stopped

    def _substitute(self, value: Any, env: dict[str, Any] | None, doc: Document, path: Path, block: str | None, trail):
        self._work += 1
        if isinstance(value, str) and value.startswith("$"):
            param = value[1:]
            if env is None:
                self._bad_reference = True
                self._error(
                    doc.locate(path),
                    f"parameter reference '{value}' outside a block",
                    "'$name' values can only be used inside a block definition",
                    trail,
                )
                return value
            if param not in env:
                self._bad_reference = True
                self._error(
                    doc.locate(path),
                    f"unknown parameter '{value}' in block '{block}'",
                    did_you_mean(param, env) or "declare it under the block's 'params:'",
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
            self._visited += 1
            if self._limit(doc.locate(path), trail):
                return previous
            if not isinstance(raw, dict):  # the schema (list of mappings) has already reported it
                continue
            self._bad_reference = False
            data = self._substitute(raw, env, doc, path, block, trail)
            name = data.get("name")
            if (
                not isinstance(name, str)
                or not name
                or any(ch.isspace() or not ch.isprintable() for ch in name)
                or name == INPUT
            ):
                what = "missing 'name'" if name is None else f"invalid node name {_short(name)}"
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
            if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
                self._error(
                    doc.locate((*path, "inputs")),
                    f"node '{full}': 'inputs' must be a node name or a non-empty list of names",
                    "leave 'inputs' out to take the previous node's output",
                    trail,
                )
                continue
            resolved = [self._resolve(ref, scope_input, local, prefix) if explicit else ref for ref in inputs]

            if env is None and "when" in data:
                self._error(
                    doc.locate((*path, "when"), key=True),
                    f"node '{full}': 'when' is only allowed on nodes inside a block",
                    "remove the node (or the 'when') here; 'when: $flag' switches a block's node on and off per use",
                    trail,
                )
                data.pop("when")
            when = data.pop("when", True)
            if not isinstance(when, bool):
                self._error(
                    doc.locate((*path, "when")),
                    f"node '{full}': 'when' must be true or false, got {_short(when)}",
                    "pass a boolean block argument, e.g. 'downsample: true'",
                    trail,
                )
                continue
            if not when:  # bypassed: the node passes its (first) input through
                self.out.aliases[full] = resolved[0]
                local[name] = resolved[0]
                previous = resolved[0]
                continue

            if "block" in data and "op" not in data:
                if self._bad_reference:  # reported; expanding with a '$x' argument would only cascade
                    self.out.aliases[full] = local[name] = previous = resolved[0]
                    continue
                previous = self._expand_use(data, resolved, doc, path, full, env, trail, depth)
                local[name] = previous
                continue
            data["name"] = full
            data["inputs"] = resolved
            if not self._bad_reference:  # else already reported; validating '$x' would only repeat it
                self.out.nodes.append(RawNode(data, doc, path, trail))
            local[name] = full
            previous = full
        return previous

    def _resolve(self, ref: str, scope_input: str, local: dict[str, str], prefix: str) -> str:
        if ref == INPUT:
            return scope_input
        if ref in local:
            return local[ref]
        return prefix + ref  # a node defined later in this scope; the graph checks it exists

    def _expand_use(self, data, resolved, doc, path, full, env, trail, depth) -> str:
        if isinstance(data.get("inputs"), str):  # one name, as op nodes accept it
            data = {**data, "inputs": [data["inputs"]]}
        try:
            use = BlockUse.model_validate(data)
        except ValidationError as exc:
            for diagnostic in format_pydantic_errors(
                exc,
                lambda loc, key=False: doc.locate((*path, *loc), key=key),
                trail,
                context=f"block use '{full}'",
                data=data,
                model=BlockUse,
            ):
                self._error(diagnostic.location, diagnostic.message, diagnostic.hint, diagnostic.related)
            return resolved[0]
        source = self.blocks.get(use.block)
        if source is None:
            if use.block not in self.unavailable and not self.quiet_unknown:
                self._error(
                    doc.locate((*path, "block")),
                    f"unknown block '{use.block}'",
                    did_you_mean(use.block, self.blocks) or "define it under 'blocks:' or include a block library",
                    trail,
                )
            return resolved[0]
        if use.block in self._active:
            chain = " -> ".join([*self._active[self._active.index(use.block) :], use.block])
            self._error(
                doc.locate((*path, "block")),
                f"block '{use.block}' uses itself ({chain})",
                "a block cannot contain itself, directly or through other blocks",
                trail,
            )
            return resolved[0]
        if depth >= MAX_BLOCK_DEPTH:
            self._error(
                doc.locate(path),
                f"blocks nested more than {MAX_BLOCK_DEPTH} deep",
                "flatten the block structure",
                trail,
            )
            return resolved[0]
        if len(resolved) != 1:
            self._error(
                doc.locate((*path, "inputs")), f"block '{use.block}' takes one input, got {len(resolved)}", None, trail
            )
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
            if default is None and param not in use.args and not (param in use.first and use.repeat in (None, 1)):
                ok = False
                typos = [a for a in use.args if a not in params and did_you_mean(a, [param])]
                self._error(
                    doc.locate((*path, "args"), key=True) if use.args else doc.locate(path),
                    f"block '{use.block}' needs argument '{param}'",
                    f"is '{typos[0]}' a misspelling of it?" if typos else f"add '{param}: ...' under 'args:'",
                    (*trail, (template_loc, f"block '{use.block}' is defined here")),
                )
        repeat = use.repeat if isinstance(use.repeat, Repeat) else None
        if repeat is not None and (
            not repeat.name or not all(c.isprintable() and not c.isspace() for c in repeat.name)
        ):
            ok = False
            self._error(
                doc.locate((*path, "repeat", "name")),
                f"invalid instance name pattern {_short(repeat.name)}",
                "use letters, digits, '_' or '.', with '{i}' for the instance index, e.g. 'denselayer{i}'",
                trail,
            )
        if not ok:
            return resolved[0]
        count = repeat.count if repeat else (use.repeat or 1)
        x = resolved[0]
        self._active.append(use.block)
        try:
            for k in range(count):
                if self.stopped:
                    break
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
                    named = f"{instance}.{source.definition.output}"
                    x = self.out.aliases.get(named, named)
                    if named not in self.out.known_names and not self.stopped:
                        local_names = [
                            n.get("name")
                            for n in source.raw["nodes"]
                            if isinstance(n, dict) and isinstance(n.get("name"), str)
                        ]
                        self._error(
                            source.doc.locate((*source.path, "output")),
                            f"block '{use.block}': output '{source.definition.output}' is not one of its nodes",
                            did_you_mean(source.definition.output, local_names)
                            or f"its nodes are: {', '.join(local_names)}",
                            here,
                        )
                        break
        finally:
            self._active.pop()
        self.out.aliases[full] = x
        return x
