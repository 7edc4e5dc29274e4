"""Block expansion: templates + arguments -> a flat list of named nodes, each remembering where it
came from (its line in the template and the chain of block uses), so errors point at both."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from pydantic import ValidationError

from archspec.errors import Diagnostic, Location, did_you_mean
from archspec.spec import INPUT, expr
from archspec.spec.diagnostics import format_pydantic_errors, short
from archspec.spec.schema import BlockDef, BlockUse, Repeat
from archspec.spec.yamlsafe import Document, Path

MAX_NODES = 20_000  # after expansion (ResNet-152 has about 500, ResNet-1001 about 3,700); bounds time to seconds
MAX_BLOCK_DEPTH = 16
MAX_WORK = 2_000_000  # values walked while substituting block parameters (bounds time, not just nodes)
_NOTHING_TO_SUBSTITUTE = frozenset({int, float, bool, type(None)})  # value types `_substitute` passes through
_SCALARS = frozenset({str, int, float, bool, type(None)})


class RawNode(NamedTuple):
    """An expanded node's data (parameters substituted, inputs resolved to full names). A named tuple:
    one is made per node of every load, and a tuple is made in a third of a frozen dataclass's time."""

    data: dict[str, Any]
    doc: Document
    path: Path  # where the node's mapping sits in `doc`
    trail: tuple[tuple[Location, str], ...] = ()  # block uses that produced it, outermost first
    # Nodes with the same `template` (not None) come from one template node substituted with the same
    # block arguments, or with any when it reads none of them: their data are equal but for 'name' and
    # 'inputs' (loading validates it once).
    template: int | None = None

    def locate(self, sub: Path = (), *, key: bool = False) -> Location:
        return self.doc.locate((*self.path, *sub), key=key)


@dataclass(frozen=True)
class BlockSource:
    definition: BlockDef
    raw: dict[str, Any]
    doc: Document
    path: Path


@dataclass(frozen=True)
class Scope:
    """Where a list of nodes is expanded: the spec's top level, or one instance of a block."""

    doc: Document
    base: Path  # where the node list sits in `doc`
    prefix: str  # prepended to node names: '' at the top level, 'layer1.0.' in an instance
    input: str  # the tensor that 'input' names here
    env: dict[str, Any] | None  # bound block parameters; None at the top level
    block: str | None  # the block being expanded
    trail: tuple[tuple[Location, str], ...]  # block uses that led here, outermost first
    depth: int  # blocks nested around this scope
    output: str | None = None  # the block's `output:` node (default: the last one)
    # A number standing for `env` (Expander._env_number): equal numbers, equal bound parameters. None at
    # the top level, or when they cannot be compared (then nothing is reused).
    env_key: int | None = None

    @classmethod
    def top(cls, doc: Document) -> Scope:
        return cls(doc, ("nodes",), "", INPUT, None, None, (), 0)


@dataclass
class Expansion:
    nodes: list[RawNode] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # bypassed node / block name -> tensor
    errors: list[Diagnostic] = field(default_factory=list)
    # Names of declared nodes, also those inside blocks, for "did you mean" hints.
    known_names: set[str] = field(default_factory=set)


_SPACE = re.compile(r"\s")


def short_text(text: str, limit: int = 60) -> str:
    return text if len(text) <= limit else text[: limit - 4] + " ..."


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
        # (template node, bound parameters) -> (template node, its substituted data, work it took, token):
        # block instances with the same arguments (ResNet's 35 identical units of layer3) substitute each
        # template node once. Only clean substitutions are kept, so every error is still found and reported
        # as before. The token (a number, unique in this expansion) becomes the nodes' RawNode.template.
        # A node whose substitution read no parameter is kept under (template node, None): the same for any.
        self._substituted: dict[tuple, tuple[dict, dict, int, int]] = {}
        self._read_parameters = False  # set by a substitution that looks a parameter up
        self._env_numbers: dict[tuple, int] = {}  # _freeze(bound parameters) -> a number for it
        # Block instances without nested blocks, expanded without a problem: (block, its arguments' number)
        # -> the expansion as an _InstancePlan, replayed under the names of the next instance with the same
        # arguments (ResNet-152's 35 identical units of layer3 are expanded once). `_recording` collects
        # the steps of the instance being expanded for that; `_problems` counts every error, also those
        # not reported again (a repeated template line), so that only clean expansions are replayed.
        self._plans: dict[tuple[int, int], _InstancePlan] = {}
        self._leaf: dict[int, tuple[BlockSource, bool]] = {}
        self._recording: list[tuple] | None = None
        self._problems = 0
        self._good_names: set[str] = set()  # node names _node_name accepted (the same few recur per instance)

    # ---- helpers ----
    def _error(self, loc: Location, message: str, hint: str | None = None, trail=()) -> None:
        self._problems += 1
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
        """`value` with block parameters bound: `$name` alone is replaced by the argument (any type);
        other strings with '$' or a leading '=' are expressions (archspec/spec/expr.py)."""
        self._work += 1
        if isinstance(value, str):
            if "$" not in value and "(" not in value and not value.startswith("="):
                return value  # the common case: plain text (an op name, a mode)
            if expr.is_plain_reference(value):
                return self._lookup(value, env, doc, path, block, trail)
            if expr.is_expression(value):
                return self._evaluate(value, env, doc, path, block, trail, expr.evaluate_int)
            return value
        if isinstance(value, list):
            return [self._substitute(v, env, doc, (*path, i), block, trail) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {k: self._substitute(v, env, doc, (*path, k), block, trail) for k, v in value.items()}
        return value

    def _substitute_node(self, raw: dict, env, doc: Document, path: Path, block: str | None, trail) -> dict:
        """A template node with parameters bound. In `name` and `inputs`, `$name` inside a longer text is
        interpolated (`conv_$c` -> `conv_3`) instead of computed."""
        data = {}
        for key, value in raw.items():
            if value.__class__ in _NOTHING_TO_SUBSTITUTE:  # most values of most nodes: kernel: 3, bias: false
                self._work += 1
                data[key] = value
                continue
            where = (*path, key)
            if key == "name" and isinstance(value, str):
                data[key] = self._text(value, env, doc, where, block, trail)
            elif key == "inputs" and isinstance(value, (str, list)):
                if isinstance(value, str):
                    data[key] = self._text(value, env, doc, where, block, trail)
                else:
                    data[key] = [
                        self._text(v, env, doc, (*where, i), block, trail) if isinstance(v, str) else v
                        for i, v in enumerate(value)
                    ]
            else:
                data[key] = self._substitute(value, env, doc, where, block, trail)
        return data

    def _text(self, value: str, env, doc: Document, path: Path, block: str | None, trail) -> Any:
        self._work += 1
        if "$" not in value:
            return value
        if expr.is_plain_reference(value):
            return self._lookup(value, env, doc, path, block, trail)
        return self._evaluate(value, env, doc, path, block, trail, expr.interpolate)

    def _lookup(self, value: str, env, doc: Document, path: Path, block: str | None, trail) -> Any:
        self._read_parameters = True
        param = value[1:]
        if env is None:
            self._outside_block(value, doc.locate(path), trail)
            return value
        if param not in env:
            self._unknown_parameter(param, env, doc.locate(path), block, trail)
            return value
        return env[param]

    def _evaluate(self, text: str, env, doc: Document, path: Path, block: str | None, trail, how) -> Any:
        self._read_parameters = True  # (an expression may not name one, but it is computed with them)
        try:
            return how(text, env or {})
        except expr.UnknownParameter as exc:
            where = doc.locate_in(path, exc.offset)
            if env is None:
                self._outside_block(f"${exc.name}", where, trail)
            else:
                self._unknown_parameter(exc.name, env, where, block, trail)
        except expr.ExprError as exc:
            self._bad_reference = True
            self._error(
                doc.locate_in(path, exc.offset), f"expression '{short_text(text)}': {exc.message}", exc.hint, trail
            )
        return text

    def _outside_block(self, reference: str, where: Location, trail) -> None:
        self._bad_reference = True
        self._error(
            where,
            f"parameter reference '{reference}' outside a block",
            "'$name' values can only be used inside a block definition",
            trail,
        )

    def _unknown_parameter(self, param: str, env: dict, where: Location, block: str | None, trail) -> None:
        self._bad_reference = True
        self._error(
            where,
            f"unknown parameter '${param}' in block '{block}'",
            did_you_mean(param, env) or "declare it under the block's 'params:'",
            trail,
        )

    def _substitute_once(self, raw: dict, env_key, scope: Scope, path: Path) -> tuple[dict, int | None]:
        """`_substitute_node` for a template node, reusing an earlier instance's result when the block's
        parameters are bound to the same values (`env_key`: a number standing for _freeze(env); None: do
        not reuse). Also the
        token of that (template node, arguments) pair when the substitution was clean, else None."""
        key = (id(raw), env_key) if env_key is not None else None
        if key is not None:
            # Under these arguments, or under any: a node that reads none of its block's parameters
            # (`{name: bn1, op: batch_norm}`) substitutes the same whatever they are.
            hit = self._substituted.get(key) or self._substituted.get((id(raw), None))
            if hit is not None and hit[0] is raw:
                self._work += hit[2]  # the size limit counts the same work as without the cache
                return dict(hit[1]), hit[3]  # a fresh top-level dict: expand() sets name and inputs, pops 'when'
        work, problems = self._work, self._problems
        self._read_parameters = False
        data = self._substitute_node(raw, scope.env, scope.doc, path, scope.block, scope.trail)
        if key is not None and not self._bad_reference and self._problems == problems:
            token = len(self._substituted)
            if not self._read_parameters:
                key = (id(raw), None)
            self._substituted[key] = (raw, dict(data), self._work - work, token)
            return data, token
        return data, None

    # ---- main walk ----
    def expand(self, raw_nodes: list[Any], scope: Scope) -> str:
        """Expand `raw_nodes` (at `scope.base` in `scope.doc`); return the full name of the scope's
        output tensor (the last node's, or the block's `output:`)."""
        doc, trail = scope.doc, scope.trail
        previous = scope.input
        local: dict[str, str] = {}  # template name -> tensor
        consumed: set[str] = set()  # tensors some node of this scope reads
        produced: set[str] = set()  # tensors computed in this scope
        bypassed: list[tuple[Path, str, list[str]]] = []  # multi-input nodes switched off
        env_key = scope.env_key
        record = self._recording  # the steps of a block instance to replay later (see _expand_instance)
        self._recording = None
        for index, raw in enumerate(raw_nodes):
            path = (*scope.base, index)
            self._visited += 1
            # (the location is only looked up when a limit is hit: most nodes never need it)
            if (self.stopped or self._visited > MAX_NODES or self._work > MAX_WORK) and self._limit(
                doc.locate(path), trail
            ):
                return previous
            if not isinstance(raw, dict):  # the schema (list of mappings) has already reported it
                continue
            self._bad_reference = False
            data, template = self._substitute_once(raw, env_key, scope, path)
            name = data.get("name")
            if name.__class__ is not str or name not in self._good_names:
                name = self._node_name(data, doc, path, trail)
                if name is None:
                    continue
                self._good_names.add(name)
            full = scope.prefix + name
            self.out.known_names.add(full)
            if "inputs" in data:
                resolved = self._inputs(data, previous, full, local, scope, path)
                if resolved is None:
                    continue
            else:  # the common case: the previous node's output
                resolved = [previous]
            if "when" in data:
                when = self._when(data, full, scope, path)
                if when is None:
                    continue
            else:
                when = True
            if not when:  # bypassed: the node passes its (first) input through
                self.out.aliases[full] = local[name] = previous = resolved[0]
                if record is not None:
                    record.append((name, None, previous, None, None))
                if len(resolved) > 1:
                    bypassed.append((path, full, resolved))
                continue
            consumed.update(resolved)
            if "block" in data and "op" not in data:
                if self._bad_reference:  # reported; expanding with a '$x' argument would only cascade
                    self.out.aliases[full] = local[name] = previous = resolved[0]
                    continue
                previous = self._expand_use(data, resolved, path, full, scope)
            else:
                data["name"] = full
                data["inputs"] = resolved
                if not self._bad_reference:  # else already reported; validating '$x' would only repeat it
                    self.out.nodes.append(_new_tuple(RawNode, (data, doc, path, trail, template)))  # RawNode(...)
                    if record is not None:
                        record.append((name, data, resolved, path, template))
                previous = full
            local[name] = previous
            produced.add(previous)
        output = local.get(scope.output, previous) if scope.output is not None else previous
        self._check_bypassed(bypassed, consumed | {output}, produced, scope)
        return previous

    def _node_name(self, data: dict, doc: Document, path: Path, trail) -> str | None:
        name = data.get("name")
        if not isinstance(name, str) or not name or not name.isprintable() or _SPACE.search(name) or name == INPUT:
            what = "missing 'name'" if name is None else f"invalid node name {short(name)}"
            self._error(
                doc.locate((*path, "name")) if name is not None else doc.locate(path),
                what,
                "give every node a unique name without spaces ('input' is reserved)",
                trail,
            )
            return None
        return name

    def _inputs(self, data: dict, previous: str, full: str, local: dict, scope: Scope, path: Path) -> list[str] | None:
        """The node's inputs as full tensor names (default: the previous node); None after an error."""
        inputs = data.get("inputs")
        if inputs is None:
            return [previous]
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            self._error(
                scope.doc.locate((*path, "inputs")),
                f"node '{full}': 'inputs' must be a node name or a non-empty list of names",
                "leave 'inputs' out to take the previous node's output",
                scope.trail,
            )
            return None
        return [self._resolve(ref, scope.input, local, scope.prefix) for ref in inputs]

    def _when(self, data: dict, full: str, scope: Scope, path: Path) -> bool | None:
        """Pops 'when' from `data`: True (the node is there), False (bypassed), None after an error."""
        if scope.env is None and "when" in data:
            self._error(
                scope.doc.locate((*path, "when"), key=True),
                f"node '{full}': 'when' is only allowed on nodes inside a block",
                "remove the node (or the 'when') here; 'when: $flag' switches a block's node on and off per use",
                scope.trail,
            )
            data.pop("when")
        when = data.pop("when", True)
        if not isinstance(when, bool):
            self._error(
                scope.doc.locate((*path, "when")),
                f"node '{full}': 'when' must be true or false, got {short(when)}",
                "pass a boolean block argument, e.g. 'downsample: true'",
                scope.trail,
            )
            return None
        return when

    def _check_bypassed(self, bypassed, used: set[str], produced: set[str], scope: Scope) -> None:
        """A bypassed node passes its FIRST input through; its other inputs are dropped. When one of those
        is computed in this scope and read by nothing else, the inputs are almost surely listed in the
        wrong order (a guarded `add: [input, conv]` turns the whole block into a no-op): say so once,
        at the node, instead of one "does not lead to any output" error per orphaned layer."""
        for path, full, inputs in bypassed:
            dropped = [t for t in inputs[1:] if t in produced and t not in used and t != inputs[0]]
            if dropped:
                self._error(
                    scope.doc.locate((*path, "inputs")),
                    f"node '{full}' is bypassed ('when' is false) and passes its first input "
                    f"'{_local(inputs[0], scope)}' through, so '{_local(dropped[0], scope)}' leads nowhere",
                    f"a bypassed node passes its FIRST input through: list the main path first, "
                    f"e.g. inputs: [{', '.join(_local(t, scope) for t in (dropped[0], inputs[0]))}]",
                    scope.trail,
                )

    def _resolve(self, ref: str, scope_input: str, local: dict[str, str], prefix: str) -> str:
        if ref == INPUT:
            return scope_input
        if ref in local:
            return local[ref]
        return prefix + ref  # a node defined later in this scope; the graph checks it exists

    def _expand_use(self, data: dict, resolved: list[str], path: Path, full: str, scope: Scope) -> str:
        """A node that instantiates a block: check the use, then expand each instance in turn."""
        checked = self._check_use(data, resolved, path, full, scope)
        if checked is None:
            return resolved[0]
        use, source = checked
        repeat = use.repeat if isinstance(use.repeat, Repeat) else None
        count = repeat.count if repeat else (use.repeat or 1)
        x = resolved[0]
        used_at = scope.doc.locate(path)  # the use's line, in every instance's trail
        nodes_at = (*source.path, "nodes")
        depth, output = scope.depth + 1, source.definition.output
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
                here = (*scope.trail, (used_at, f"in block '{use.block}' instance '{instance}'"))
                if k <= 1:  # the instances after the second take the same arguments as it: bind them once
                    given = {**use.args, **(use.first if k == 0 else {})}
                    bound = self._bind(source, use.block, given, here)
                    if bound is None:
                        break
                    env_key = self._env_number(bound)
                inner = _scope(source.doc, nodes_at, instance + ".", x, bound, use.block, here, depth, output, env_key)
                x = self._expand_instance(source, inner)
                if output is not None:
                    x = self._block_output(source, use.block, instance, here)
                    if x is None:
                        x = resolved[0]
                        break
        finally:
            self._active.pop()
        self.out.aliases[full] = x
        return x

    def _env_number(self, env: dict[str, Any]) -> int | None:
        """A number standing for the bound parameters `env` (see _freeze): equal for equal values, and
        quicker to hash in the keys of the substitution cache than the values; None if not comparable."""
        frozen = _freeze(env)
        return None if frozen is None else self._env_numbers.setdefault(frozen, len(self._env_numbers))

    def _expand_instance(self, source: BlockSource, scope: Scope) -> str:
        """`self.expand(source's nodes, scope)`: one block instance; returns its output tensor.

        An instance of a block without nested blocks depends on nothing but the block, its arguments,
        its name prefix and its input tensor. When an earlier instance with the same arguments was
        expanded without a problem, this one's nodes are that expansion's with the names changed
        (`_replay`); any instance that had a problem, or might hit a size limit, is expanded afresh, so
        every error is found and reported as before."""
        if not self._is_leaf(source) or scope.env_key is None:
            return self.expand(source.raw["nodes"], scope)
        key = (id(source), scope.env_key)
        plan = self._plans.get(key)
        if (
            plan is not None
            and plan.source is source
            and not self.stopped
            and self._visited + plan.visited <= MAX_NODES
            and self._work + plan.work <= MAX_WORK
            and not scope.input.startswith(scope.prefix)
        ):
            return self._replay(plan, scope)
        problems, visited, work = self._problems, self._visited, self._work
        self._recording = steps = []
        try:
            output = self.expand(source.raw["nodes"], scope)
        finally:
            self._recording = None
        if self._problems == problems and not self.stopped and plan is None:
            plan = _InstancePlan.of(source, steps, scope, output, self._visited - visited, self._work - work)
            if plan is not None:
                self._plans[key] = plan
        return output

    def _is_leaf(self, source: BlockSource) -> bool:
        """The block's nodes use no other block (then an instance's nodes all share its trail)."""
        known = self._leaf.get(id(source))
        if known is None or known[0] is not source:
            nodes = source.raw["nodes"]
            known = self._leaf[id(source)] = (source, not any(isinstance(n, dict) and "block" in n for n in nodes))
        return known[1]

    def _replay(self, plan: _InstancePlan, scope: Scope) -> str:
        """What expanding `plan`'s block in `scope` gives (see _expand_instance): its steps, under this
        instance's names; returns the output tensor."""
        prefix, x, doc, trail = scope.prefix, scope.input, scope.doc, scope.trail
        add_name, append, aliases = self.out.known_names.add, self.out.nodes.append, self.out.aliases
        for name, data, targets, path, template in plan.steps:
            full = prefix + name
            add_name(full)
            if data is None:  # a bypassed node
                aliases[full] = x if targets is None else prefix + targets
                continue
            data = data.copy()
            data["name"] = full
            if len(targets) == 1:  # most nodes (no comprehension to call)
                target = targets[0]
                data["inputs"] = [x if target is None else prefix + target]
            else:
                data["inputs"] = [x if t is None else prefix + t for t in targets]
            append(_new_tuple(RawNode, (data, doc, path, trail, template)))  # RawNode(...), one call fewer
        self._visited += plan.visited
        self._work += plan.work
        return x if plan.output is None else prefix + plan.output

    def _check_use(self, data: dict, resolved: list[str], path: Path, full: str, scope: Scope):
        """(use, its block) when the use is valid; else None, after reporting every problem."""
        doc, trail = scope.doc, scope.trail
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
            return None
        source = self.blocks.get(use.block)
        if source is None:
            if use.block not in self.unavailable and not self.quiet_unknown:
                self._error(
                    doc.locate((*path, "block")),
                    f"unknown block '{use.block}'",
                    did_you_mean(use.block, self.blocks) or "define it under 'blocks:' or include a block library",
                    trail,
                )
            return None
        if use.block in self._active:
            chain = " -> ".join([*self._active[self._active.index(use.block) :], use.block])
            self._error(
                doc.locate((*path, "block")),
                f"block '{use.block}' uses itself ({chain})",
                "a block cannot contain itself, directly or through other blocks",
                trail,
            )
            return None
        if scope.depth >= MAX_BLOCK_DEPTH:
            self._error(
                doc.locate(path),
                f"blocks nested more than {MAX_BLOCK_DEPTH} deep",
                "flatten the block structure",
                trail,
            )
            return None
        if len(resolved) != 1:
            self._error(
                doc.locate((*path, "inputs")), f"block '{use.block}' takes one input, got {len(resolved)}", None, trail
            )
            return None
        ok = self._check_arguments(use, source, path, scope)
        repeat = use.repeat if isinstance(use.repeat, Repeat) else None
        if repeat is not None and (
            not repeat.name or not all(c.isprintable() and not c.isspace() for c in repeat.name)
        ):
            ok = False
            self._error(
                doc.locate((*path, "repeat", "name")),
                f"invalid instance name pattern {short(repeat.name)}",
                "use letters, digits, '_' or '.', with '{i}' for the instance index, e.g. 'denselayer{i}'",
                trail,
            )
        return (use, source) if ok else None

    def _check_arguments(self, use: BlockUse, source: BlockSource, path: Path, scope: Scope) -> bool:
        """Every argument is a parameter of the block, and every required parameter gets one."""
        doc = scope.doc
        defined = (*scope.trail, (source.doc.locate(source.path, key=True), f"block '{use.block}' is defined here"))
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
                        defined,
                    )
        for param, default in params.items():
            if default is None and param not in use.args and not (param in use.first and use.repeat in (None, 1)):
                ok = False
                typos = [a for a in use.args if a not in params and did_you_mean(a, [param])]
                self._error(
                    doc.locate((*path, "args"), key=True) if use.args else doc.locate(path),
                    f"block '{use.block}' needs argument '{param}'",
                    f"is '{typos[0]}' a misspelling of it?" if typos else f"add '{param}: ...' under 'args:'",
                    defined,
                )
        return ok

    def _bind(self, source: BlockSource, block: str, given: dict[str, Any], trail) -> dict[str, Any] | None:
        """The instance's parameter values: the arguments given, else the defaults. A default that is an
        expression (`squeeze: "max(1, $inp // 4)"`) is computed from the parameters declared before it."""
        bound: dict[str, Any] = {}
        for param, default in source.definition.params.items():
            if param in given:
                bound[param] = given[param]
            elif isinstance(default, str) and ("$" in default or default.startswith("=")):
                self._bad_reference = False
                where = (*source.path, "params", param)
                later = [m for m in re.finditer(r"\$([A-Za-z_]\w*)", default) if m[1] in source.definition.params]
                later = [m for m in later if m[1] not in bound]
                if later:
                    self._error(
                        source.doc.locate_in(where, later[0].start()),
                        f"block '{block}': the default of '{param}' uses '${later[0][1]}', which is not declared "
                        "before it",
                        "a default can only use the parameters listed before it under 'params:'",
                        trail,
                    )
                    return None
                bound[param] = self._substitute(default, dict(bound), source.doc, where, block, trail)
                if self._bad_reference:
                    return None
            else:
                bound[param] = default
        return bound

    def _block_output(self, source: BlockSource, block: str, instance: str, trail) -> str | None:
        """The tensor named by the block's `output:` for one instance (None after reporting it missing)."""
        output = source.definition.output
        named = f"{instance}.{output}"
        if named in self.out.known_names or self.stopped:
            return self.out.aliases.get(named, named)
        local_names = [
            n.get("name") for n in source.raw["nodes"] if isinstance(n, dict) and isinstance(n.get("name"), str)
        ]
        self._error(
            source.doc.locate((*source.path, "output")),
            f"block '{block}': output '{output}' is not one of its nodes",
            did_you_mean(output, local_names) or f"its nodes are: {', '.join(local_names)}",
            trail,
        )
        return None


def _scope(doc, base, prefix, input, env, block, trail, depth, output, env_key) -> Scope:
    """`Scope(doc, base, ...)` (every field, in order) without the frozen __init__'s one
    object.__setattr__ per field: one is made per block instance."""
    scope = _new_object(Scope)
    fields = {
        "doc": doc,
        "base": base,
        "prefix": prefix,
        "input": input,
        "env": env,
        "block": block,
        "trail": trail,
        "depth": depth,
        "output": output,
        "env_key": env_key,
    }
    _set_attribute(scope, "__dict__", fields)
    return scope


_NOT_LOCAL = object()
_new_tuple = tuple.__new__
_new_object = object.__new__
_set_attribute = object.__setattr__


@dataclass(frozen=True)
class _InstancePlan:
    """A block instance's expansion with its names taken apart: each tensor is the instance's input
    (None) or one of its own, named by the text after the instance's prefix ('conv1' of 'layer3.1.conv1').

    steps: per node, in order, (local name, data, input tensors, path, template) for a node, and (local
    name, None, the tensor it passes through, None, None) for a bypassed one."""

    source: BlockSource
    steps: tuple[tuple, ...]
    output: str | None
    visited: int  # nodes the instance counts towards MAX_NODES
    work: int  # and substitution steps towards MAX_WORK

    @classmethod
    def of(cls, source: BlockSource, steps: list[tuple], scope: Scope, output: str, visited: int, work: int):
        """The plan of an instance expanded in `scope`, or None when one of its tensors is neither its
        input nor named with its prefix (or its input is, which would make the two ambiguous)."""
        prefix, x = scope.prefix, scope.input
        if x.startswith(prefix):
            return None

        def local(tensor: str):
            if tensor == x:
                return None
            return tensor[len(prefix) :] if tensor.startswith(prefix) else _NOT_LOCAL

        taken = []
        for name, data, targets, path, template in steps:
            if data is None:
                targets = local(targets)
                if targets is _NOT_LOCAL:
                    return None
            else:
                targets = [local(t) for t in targets]
                if _NOT_LOCAL in targets:
                    return None
                data = data.copy()  # the first instance's node keeps its own
            taken.append((name, data, targets, path, template))
        output = local(output)
        if output is _NOT_LOCAL:
            return None
        return cls(source, tuple(taken), output, visited, work)


def _freeze(value: Any) -> Any:
    """A hashable key equal only for values that substitute identically: each scalar with its type (True,
    1 and 1.0 are equal in Python but not to the strict validation), lists and mappings in order. None
    when a value is of another type (then nothing is reused)."""
    if value.__class__ in _SCALARS or isinstance(value, (str, int, float, bool)) or value is None:
        return (type(value), value)
    if isinstance(value, list):
        items = tuple(_freeze(v) for v in value)
        return None if None in items else (list, items)
    if isinstance(value, dict):
        items = tuple([(k, _freeze(v)) for k, v in value.items()])
        return None if any(v is None for _, v in items) else (dict, items)
    return None


def _local(tensor: str, scope: Scope) -> str:
    """A tensor's name as the scope's template writes it."""
    if tensor == scope.input:
        return INPUT
    return tensor.removeprefix(scope.prefix)
