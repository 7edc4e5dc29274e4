"""pydantic validation errors -> diagnostics in the spec's own terms (one per field, with hints)."""

from __future__ import annotations

from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from archspec.errors import Diagnostic, did_you_mean

_NO_DATA = object()


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
        got = short(errs[0].get("input"))
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


def short(value: Any, limit: int = 60) -> str:
    """repr(value), cut to `limit` characters for a message."""
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
