"""Untrusted YAML -> plain Python data, with a source position for every key and value.

Why not `yaml.safe_load`: it keeps the last of two duplicate keys silently, expands alias bombs,
and applies YAML 1.1 scalar rules (`no` -> False, `010` -> 8, `1:20` -> 80). We use PyYAML only as
a *parser* (a stream of events; libyaml's C parser when installed, else PyYAML's pure-Python one)
and build the data ourselves: no object construction at all. Anchors, aliases, explicit tags and
duplicate keys are refused, and plain scalars are resolved with YAML 1.2 core-schema rules. Numbers
that read one way in YAML 1.1 and another in 1.2 (leading zeros, sexagesimal) are refused rather
than guessed. Size, nesting and value-count limits are checked while parsing, before any work.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any

import yaml
from yaml.events import (
    AliasEvent,
    DocumentEndEvent,
    DocumentStartEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
    StreamStartEvent,
)

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
# Characters outside YAML's printable set (YAML 1.2, section 5.1).
_NOT_YAML = re.compile("[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NULLS = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_INF_NAN = re.compile(r"[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN)")
_NUMBER_START = frozenset("0123456789+-.")  # how every pattern above (ints, floats, base 60, inf) starts


@dataclass
class Document:
    """Parsed data plus where each part of it came from."""

    data: Any
    path: str
    # Where each value and key starts: a Location, or a packed mark in `path` (see `_location`).
    value_at: dict[Path, Location | int] = field(default_factory=dict)
    key_at: dict[Path, Location | int] = field(default_factory=dict)
    # Problems that do not stop parsing (duplicate keys, ambiguous scalars): all reported together.
    errors: list[Diagnostic] = field(default_factory=list)
    # Scalars written in quotes: their text starts one column after the quote.
    quoted: set[Path] = field(default_factory=set)
    # Python data (document_from_data): locations are key paths, made when first asked for like the above.
    key_paths: bool = False

    def locate_in(self, where: Path, offset: int) -> Location:
        """The column `offset` characters into the scalar at `where` (for a token of an expression).
        Exact for one-line scalars without escapes, which is how expressions are written."""
        start = self.locate(where)
        if where not in self.value_at:
            return start
        return replace(start, col=start.col + offset + (1 if tuple(where) in self.quoted else 0))

    def locate(self, where: Path, *, key: bool = False) -> Location:
        """The most precise known location for `where` (falls back to its parents)."""
        table = self.key_at if key else self.value_at
        probe = tuple(where)
        while probe:
            if probe in table:
                return self._location(table, probe)
            if probe in self.value_at:
                return self._location(self.value_at, probe)
            probe = probe[:-1]
        return self._location(self.value_at, ()) if () in self.value_at else Location(self.path, 1, 1)

    def _location(self, table: dict, where: Path) -> Location:
        # A parsed file records each mark as one int (`_packed`), made into a Location when first asked
        # for and kept for the next asker: a 20,000-line spec has 160,000 values, most never reported, and
        # an int is neither an allocation nor an object the garbage collector has to walk.
        place = table[where]
        if not isinstance(place, Location):
            if self.key_paths:  # Python data: the mark is the value's number, located by its key path
                place = table[where] = KeyPathLocation(self.path, place, 1, _key_path(where))
            else:
                place = table[where] = Location(self.path, place >> _COLUMN_BITS, place & _COLUMN_MASK)
        return place


@dataclass(frozen=True)
class KeyPathLocation(Location):
    """A place in a spec given as Python data: its key path (`nodes[2].out_channels`), not a line.
    `line` keeps the data's order for sorting; `col` > 1 is a character inside a string value."""

    key_path: str = ""

    def __str__(self) -> str:
        where = f"{self.path}:{self.key_path}" if self.key_path else self.path
        return f"{where}:{self.col}" if self.col > 1 else where


def _key_path(where: Path) -> str:
    text = ""
    for part in where:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def document_from_data(data: Any, name: str = "<mapping>") -> Document:
    """A `Document` for a spec given as Python data, with the same limits and scalar rules as a file
    (depth, value count, integer size, finite floats); every value is located by its key path."""
    doc = Document(None, name, key_paths=True)
    count = 0
    errors: list[Diagnostic] = []

    def build(value: Any, where: Path, depth: int) -> Any:
        nonlocal count
        count += 1
        doc.value_at[where] = count  # its key path, made only if reported (Document._location)
        if depth > MAX_DEPTH:
            raise SpecError(Diagnostic(doc.locate(where), f"nesting deeper than {MAX_DEPTH} levels"))
        if count > MAX_YAML_NODES:
            raise SpecError(Diagnostic(doc.locate(where), f"more than {MAX_YAML_NODES:,} values in one spec"))
        if isinstance(value, dict):
            result = {}
            for key, item in value.items():
                if not isinstance(key, str):
                    errors.append(Diagnostic(doc.locate(where), f"key {key!r} is not a string", "spec keys are names"))
                    continue
                doc.key_at[(*where, key)] = count
                result[key] = build(item, (*where, key), depth + 1)
            return result
        if isinstance(value, (list, tuple)):
            return [build(item, (*where, i), depth + 1) for i, item in enumerate(value)]
        if isinstance(value, bool) or value is None or isinstance(value, str):
            return value
        if isinstance(value, int):
            if abs(value) > MAX_INT:
                errors.append(Diagnostic(doc.locate(where), "number is too large (the limit is 10**18)"))
            return value
        if isinstance(value, float):
            if not math.isfinite(value):
                errors.append(Diagnostic(doc.locate(where), f"'{value}' is not a finite number", "use a finite value"))
            return value
        errors.append(
            Diagnostic(
                doc.locate(where),
                f"unsupported value of type {type(value).__name__}",
                "use dicts, lists, str, int, float, bool and None",
            )
        )
        return None

    if not isinstance(data, dict):
        raise SpecError(
            Diagnostic(KeyPathLocation(name, 1, 1), "a spec must be a mapping with 'name', 'input' and 'nodes'")
        )
    doc.data = build(data, (), 1)
    if errors:
        raise SpecError(errors)
    return doc


def _loc(path: str, mark: yaml.Mark) -> Location:
    return Location(path, mark.line + 1, mark.column + 1)


# A mark packed into one int: the 1-based line above the 1-based column. Columns stay below 2**21 (a file
# has at most MAX_FILE_BYTES = 2**20 bytes).
_COLUMN_BITS = 21
_COLUMN_MASK = (1 << _COLUMN_BITS) - 1


def _packed(mark: yaml.Mark) -> int:
    return (mark.line + 1) << _COLUMN_BITS | (mark.column + 1)


# libyaml's event parser is ~20x faster than the pure-Python one (a 1 MiB file in well under a second).
_EVENT_LOADER = getattr(yaml, "CSafeLoader", None) if yaml.__with_libyaml__ else None
_EVENT_LOADER = _EVENT_LOADER or yaml.SafeLoader


class _Builder:
    """Builds plain data from parser events; refuses aliases, anchors, tags and runaway size."""

    def __init__(self, text: str, doc: Document):
        # The parser's events one by one: what `yaml.parse` yields, without its generator and a check_event
        # call per event (a tenth of parsing a spec).
        self.loader = _EVENT_LOADER(text)
        self.next_event = self.loader.get_event
        self.doc = doc
        self.count = 0

    def _refuse(self, mark: yaml.Mark, message: str, hint: str | None = None) -> None:
        raise SpecError(Diagnostic(_loc(self.doc.path, mark), message, hint))

    def document(self) -> Any:
        try:
            return self._document()
        finally:
            self.loader.dispose()

    def _document(self) -> Any:
        event = self.next_event()
        assert isinstance(event, StreamStartEvent)
        event = self.next_event()
        if isinstance(event, StreamEndEvent):
            return _EMPTY
        assert isinstance(event, DocumentStartEvent)
        data = self.value(self.next_event(), (), 1)
        assert isinstance(self.next_event(), DocumentEndEvent)
        event = self.next_event()
        if not isinstance(event, StreamEndEvent):
            self._refuse(
                event.start_mark,
                "invalid YAML: expected a single document, but found another document",
                "a spec is a single YAML document; remove the '---' separator and what follows",
            )
        return data

    def value(self, event, where: Path, depth: int) -> Any:
        self.count += 1
        if (
            event.__class__ is not ScalarEvent
            or event.anchor is not None
            or event.tag is not None
            or depth > MAX_DEPTH
            or self.count > MAX_YAML_NODES
        ):
            self._check(event, depth)  # the one test above passes most values (plain scalars) at once
        mark = event.start_mark
        self.doc.value_at[where] = _packed(mark)
        if event.__class__ is ScalarEvent:
            if event.style in ("'", '"'):
                self.doc.quoted.add(where)
            try:
                return _scalar(event.value, event.style, self.doc.path, mark)
            except SpecError as exc:  # keep going: report every bad scalar in one run
                self.doc.errors.extend(exc.diagnostics)
                return event.value
        if event.__class__ is SequenceStartEvent:
            items = []
            while (event := self.next_event()).__class__ is not SequenceEndEvent:
                items.append(self.value(event, (*where, len(items)), depth + 1))
            return items
        if event.__class__ is MappingStartEvent:
            return self.mapping(where, depth)
        self._refuse(mark, f"invalid YAML: unexpected {type(event).__name__}")  # pragma: no cover
        return None

    def _check(self, event, depth: int) -> None:
        """Refuse aliases, anchors, tags (but the non-specific '!' on a scalar), depth and size."""
        if isinstance(event, AliasEvent):
            self._refuse(
                event.start_mark,
                f"YAML alias '*{event.anchor}' is not allowed",
                "aliases can expand exponentially; define a block and use it instead",
            )
        if event.anchor is not None:
            self._refuse(
                event.start_mark,
                f"YAML anchor '&{event.anchor}' is not allowed",
                "define a block under 'blocks:' and instantiate it instead of anchoring",
            )
        if event.tag is not None and not (isinstance(event, ScalarEvent) and event.tag == "!"):
            self._refuse(
                event.start_mark,
                f"YAML tag '{event.tag}' is not allowed",
                "archspec specs are plain data; remove the tag",
            )
        if depth > MAX_DEPTH:
            self._refuse(
                event.start_mark,
                f"nesting deeper than {MAX_DEPTH} levels",
                "flatten the structure; a spec needs only a few levels",
            )
        if self.count > MAX_YAML_NODES:
            self._refuse(
                event.start_mark,
                f"more than {MAX_YAML_NODES:,} YAML values in one file",
                "use blocks with 'repeat' instead of writing layers out",
            )

    def mapping(self, where: Path, depth: int) -> dict[str, Any]:
        result: dict[str, Any] = {}
        key_at = self.doc.key_at
        while (event := self.next_event()).__class__ is not MappingEndEvent:
            if event.__class__ is not ScalarEvent or event.value == "<<" or event.anchor or event.tag:
                self._refuse(
                    event.start_mark,
                    "mapping keys must be plain names",
                    "merge keys ('<<'), complex keys, anchors and tags on keys are not supported",
                )
            key, mark = event.value, event.start_mark
            here = (*where, key)
            if key in result:
                first = self.doc.locate(here, key=True)
                line, col = mark.line + 1, mark.column + 1
                self.doc.errors.append(
                    Diagnostic(
                        Location(self.doc.path, line, col),
                        f"duplicate key '{key}' (first defined at line {first.line}"
                        + (f", column {first.col})" if first.line == line else ")"),
                        "remove one of them; YAML would silently keep only the last",
                    )
                )
                self.value(self.next_event(), (*here, "<duplicate>"), depth + 1)  # checked, then dropped
                continue
            key_at[here] = _packed(mark)
            result[key] = self.value(self.next_event(), here, depth + 1)
        return result


_EMPTY = object()


def _scalar(text: str, style: str | None, path: str, mark: yaml.Mark) -> Any:
    if style:  # quoted or block scalar: always a string (plain style is None, or '' from libyaml)
        return text
    if text in _NULLS:
        return None
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if text[0] not in _NUMBER_START:  # a word (conv2d, relu, ...): none of the number patterns below
        return text
    if len(text) < 19 and text.isascii() and text.isdigit() and (text[0] != "0" or len(text) == 1):
        return int(text)  # the common number: decimal, no sign, no leading zero, below the 10**18 limit
    loc = _loc(path, mark)
    if _INT.fullmatch(text) or _INT_HEX.fullmatch(text) or _INT_OCT.fullmatch(text):
        digits = text.lstrip("+-")
        if len(digits) > 20:  # checked before int(): Python refuses to parse very long digit strings
            value = None
        else:
            value = (
                int(text, 16) if digits.startswith("0x") else int(text[2:], 8) if digits.startswith("0o") else int(text)
            )
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


_EMPTY_HINTS = {
    "spec": ("spec file is empty", "a spec needs at least 'name', 'input' and 'nodes'"),
    "library": ("block library is empty", "a block library needs 'blocks:', e.g. blocks: {unit: {nodes: [...]}}"),
}


def parse_yaml(raw: bytes, path: str, what: str = "spec") -> Document:
    """Parse untrusted bytes into a `Document`; raise `SpecError` with a location on any problem.
    `what` ("spec" or "library") words the messages about an empty file."""
    if len(raw) > MAX_FILE_BYTES:
        raise SpecError(
            Diagnostic(
                Location(path, 1, 1),
                f"file is {len(raw):,} bytes; the limit is {MAX_FILE_BYTES:,}",
                "split it with 'include:' or use blocks with 'repeat'",
            )
        )
    text = _decode(raw, path)
    bad = _NOT_YAML.search(text)
    if bad:  # YAML allows no control characters but tab and line breaks; say where, not just "invalid"
        before = text[: bad.start()]
        line, col = before.count("\n") + 1, bad.start() - (before.rfind("\n") + 1) + 1
        what = "NUL characters" if bad.group() == "\x00" else f"the control character U+{ord(bad.group()):04X}"
        raise SpecError(
            Diagnostic(
                Location(path, line, col),
                f"file contains {what}, which YAML does not allow",
                "remove it; is this a binary file?",
            )
        )
    if not text.strip():
        raise SpecError(Diagnostic(Location(path, 1, 1), *_EMPTY_HINTS[what]))
    doc = Document(None, path)
    try:
        data = _Builder(text, doc).document()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = _loc(path, mark) if mark else Location(path, 1, 1)
        problem = exc.problem or exc.context or "invalid YAML"
        related: tuple = ()
        if exc.context and exc.context_mark and exc.problem_mark and exc.context_mark.line != exc.problem_mark.line:
            related = ((_loc(path, exc.context_mark), f"{exc.context}, which starts here"),)  # an unclosed {
        hint = None
        lines = text.splitlines()
        if mark and mark.line < len(lines) and "\t" in lines[mark.line]:
            hint = "indent with spaces; YAML does not allow tab characters for indentation"
        raise SpecError(Diagnostic(where, f"invalid YAML: {problem}", hint, related)) from None
    except yaml.YAMLError as exc:  # e.g. a character YAML does not allow, without a position
        raise SpecError(Diagnostic(Location(path, 1, 1), f"invalid YAML: {exc}")) from None
    if data is _EMPTY:
        message, hint = _EMPTY_HINTS[what]
        raise SpecError(Diagnostic(Location(path, 1, 1), message.replace("is empty", "has no content"), hint))
    doc.data = data
    if doc.errors:
        raise SpecError(doc.errors)
    return doc
