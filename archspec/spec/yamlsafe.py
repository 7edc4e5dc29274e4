"""Untrusted YAML -> plain Python data, with a source position for every key and value.

Why not `yaml.safe_load`: it keeps the last of two duplicate keys silently, expands alias bombs,
and applies YAML 1.1 scalar rules (`no` -> False, `010` -> 8, `1:20` -> 80). We use PyYAML only to
*compose* the node tree (no object construction at all), reject anchors, aliases, explicit tags and
duplicate keys, and resolve plain scalars with YAML 1.2 core-schema rules. Numbers that read one
way in YAML 1.1 and another in 1.2 (leading zeros, sexagesimal) are refused rather than guessed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.events import AliasEvent, ScalarEvent

from archspec.errors import Diagnostic, Location, SpecError

MAX_FILE_BYTES = 1 << 20  # 1 MiB: the largest shipped spec is a few KiB.
MAX_DEPTH = 32  # nesting levels; a spec needs about six.
MAX_YAML_NODES = 200_000  # scalars + collections in one file, before any block expansion.
MAX_INT = 10**18  # larger literals are typos or attacks; products of them are still computed exactly.

Path = tuple[str | int, ...]

_INT = re.compile(r"[-+]?(0|[1-9][0-9]*)")
_INT_LEADING_ZERO = re.compile(r"[-+]?0[0-9]+")
_INT_HEX = re.compile(r"0x[0-9a-fA-F]+")
_INT_OCT = re.compile(r"0o[0-7]+")
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_SEXAGESIMAL = re.compile(r"[-+]?[0-9]+(:[0-5]?[0-9])+(\.[0-9]*)?")
_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_INF_NAN = re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")


@dataclass
class Document:
    """Parsed data plus where each part of it came from."""

    data: Any
    path: str
    value_at: dict[Path, Location] = field(default_factory=dict)
    key_at: dict[Path, Location] = field(default_factory=dict)
    # Problems that do not stop parsing (duplicate keys, ambiguous scalars): all reported together.
    errors: list[Diagnostic] = field(default_factory=list)

    def locate(self, where: Path, *, key: bool = False) -> Location:
        """The most precise known location for `where` (falls back to its parents)."""
        table = self.key_at if key else self.value_at
        probe = tuple(where)
        while probe:
            if probe in table:
                return table[probe]
            if probe in self.value_at:
                return self.value_at[probe]
            probe = probe[:-1]
        return self.value_at.get((), Location(self.path, 1, 1))


def _loc(path: str, mark: yaml.Mark) -> Location:
    return Location(path, mark.line + 1, mark.column + 1)


class _NoAliasComposer(yaml.SafeLoader):
    """Composes nodes only; refuses aliases, anchors, explicit tags and runaway nesting."""

    def __init__(self, stream: str, path: str):
        super().__init__(stream)
        self._path = path
        self._depth = 0
        self._count = 0

    def _refuse(self, mark: yaml.Mark, message: str, hint: str) -> None:
        raise SpecError(Diagnostic(_loc(self._path, mark), message, hint))

    def compose_node(self, parent, index):  # noqa: ANN001 - PyYAML's signature
        event = self.peek_event()
        if isinstance(event, AliasEvent):
            self._refuse(
                event.start_mark,
                f"YAML alias '*{event.anchor}' is not allowed",
                "aliases can expand exponentially; define a block and use it instead",
            )
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self._refuse(
                event.start_mark,
                f"YAML anchor '&{anchor}' is not allowed",
                "define a block under 'blocks:' and instantiate it instead of anchoring",
            )
        tag = getattr(event, "tag", None)
        if tag is not None and not (isinstance(event, ScalarEvent) and tag == "!"):
            self._refuse(
                event.start_mark,
                f"YAML tag '{tag}' is not allowed",
                "archspec specs are plain data; remove the tag",
            )
        self._depth += 1
        self._count += 1
        if self._depth > MAX_DEPTH:
            self._refuse(
                event.start_mark,
                f"nesting deeper than {MAX_DEPTH} levels",
                "flatten the structure; a spec needs only a few levels",
            )
        if self._count > MAX_YAML_NODES:
            self._refuse(
                event.start_mark,
                f"more than {MAX_YAML_NODES} YAML values in one file",
                "use blocks with 'repeat' instead of writing layers out",
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _scalar(node: yaml.ScalarNode, loc: Location) -> Any:
    text = node.value
    if node.style is not None:  # quoted or block scalar: always a string
        return text
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if _INT.fullmatch(text) or _INT_HEX.fullmatch(text) or _INT_OCT.fullmatch(text):
        digits = text.lstrip("+-")
        if len(digits) > 20:  # checked before int(): Python refuses to parse very long digit strings
            value = None
        else:
            value = int(text, 16) if digits.startswith("0x") else int(text[2:], 8) if digits.startswith("0o") else int(text)
        if value is None or abs(value) > MAX_INT:
            raise SpecError(
                Diagnostic(
                    loc,
                    f"number {text if len(text) <= 30 else text[:27] + '...'} is too large (the limit is 10**18)",
                    "no layer, shape or count needs a number this big; check for a typo",
                )
            )
        return value
    if _INT_LEADING_ZERO.fullmatch(text):
        raise SpecError(
            Diagnostic(
                loc,
                f"ambiguous number '{text}' (YAML 1.1 reads it as octal, YAML 1.2 as decimal)",
                f"write {text.lstrip('+-').lstrip('0')[:30] or '0'} for decimal, or quote it if you mean a string",
            )
        )
    if _SEXAGESIMAL.fullmatch(text):
        raise SpecError(
            Diagnostic(
                loc,
                f"ambiguous value '{text}' (YAML 1.1 reads it as a base-60 number)",
                "quote it if you mean a string",
            )
        )
    if _INF_NAN.fullmatch(text):
        raise SpecError(Diagnostic(loc, f"'{text}' is not a finite number", "use a finite value"))
    if _FLOAT.fullmatch(text):
        value = float(text)
        if math.isinf(value):
            raise SpecError(Diagnostic(loc, f"'{text}' is too large for a floating-point number", "use a finite value"))
        return value
    return text


def _convert(node: yaml.Node, where: Path, doc: Document) -> Any:
    loc = _loc(doc.path, node.start_mark)
    doc.value_at[where] = loc
    if isinstance(node, yaml.ScalarNode):
        try:
            return _scalar(node, loc)
        except SpecError as exc:  # keep going: report every bad scalar in one run
            doc.errors.extend(exc.diagnostics)
            return node.value
    if isinstance(node, yaml.SequenceNode):
        return [_convert(item, (*where, i), doc) for i, item in enumerate(node.value)]
    if isinstance(node, yaml.MappingNode):
        result: dict[str, Any] = {}
        first_seen: dict[str, Location] = {}
        for key_node, value_node in node.value:
            key_loc = _loc(doc.path, key_node.start_mark)
            if not isinstance(key_node, yaml.ScalarNode) or key_node.value == "<<":
                doc.errors.append(
                    Diagnostic(
                        key_loc,
                        "mapping keys must be plain names",
                        "merge keys ('<<') and complex keys are not supported",
                    )
                )
                continue
            key = key_node.value
            if key in first_seen:
                doc.errors.append(
                    Diagnostic(
                        key_loc,
                        f"duplicate key '{key}' (first defined at line {first_seen[key].line})",
                        "remove one of them; YAML would silently keep only the last",
                    )
                )
                continue
            first_seen[key] = key_loc
            doc.key_at[(*where, key)] = key_loc
            result[key] = _convert(value_node, (*where, key), doc)
        return result
    raise SpecError(Diagnostic(loc, f"unsupported YAML node {type(node).__name__}"))


def _decode(raw: bytes, path: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = raw[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        raise SpecError(
            Diagnostic(
                Location(path, line, col),
                f"file is not valid UTF-8 (byte 0x{raw[exc.start]:02x})",
                "save the spec as UTF-8 text",
            )
        ) from None


def parse_yaml(raw: bytes, path: str) -> Document:
    """Parse untrusted bytes into a `Document`; raise `SpecError` with a location on any problem."""
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(
            Diagnostic(
                Location(path, 1, 1),
                f"file is {len(raw):,} bytes; the limit is {MAX_FILE_BYTES:,}",
                "split it with 'include:' or use blocks with 'repeat'",
            )
        )
    text = _decode(raw, path)
    if "\x00" in text:
        raise SpecError(Diagnostic(Location(path, 1, 1), "file contains NUL characters"))
    if not text.strip():
        raise SpecError(
            Diagnostic(
                Location(path, 1, 1),
                "spec file is empty",
                "a spec needs at least 'name', 'input' and 'nodes'",
            )
        )
    loader = _NoAliasComposer(text, path)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _loc(path, mark) if mark else Location(path, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        hint = None
        if "'\\t'" in problem:
            hint = "indent with spaces; YAML does not allow tab characters for indentation"
        elif "another document" in problem:
            hint = "a spec is a single YAML document; remove the '---' separator and what follows"
        raise SpecError(Diagnostic(where, f"invalid YAML: {problem}", hint)) from None
    except yaml.YAMLError as exc:
        raise SpecError(Diagnostic(Location(path, 1, 1), f"invalid YAML: {exc}")) from None
    finally:
        loader.dispose()
    doc = Document(None, path)
    if node is None:
        raise SpecError(Diagnostic(Location(path, 1, 1), "spec file has no content"))
    doc.data = _convert(node, (), doc)
    if doc.errors:
        raise SpecError(doc.errors)
    return doc
