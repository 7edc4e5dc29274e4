"""Spec expressions: a small, exact arithmetic language for block arguments and op fields.

    out_channels: $inp * $t
    out_channels: "max(1, $inp // 4)"          # quoted: a comma ends a plain scalar in {flow: style}
    out_channels: "=make_divisible(32 * 0.75, 8)"   # '=' marks an expression without '$params'

A string is an expression when it starts with '=' or with a function call such as `max(`, or when it
contains a `$param` and is more than one `$param` alone (`$planes` alone is replaced by the argument
as it is, whatever its type). In node `name` and `inputs`, `$param` inside a text is interpolated
instead (`conv_$i`).

Grammar (a recursive-descent parser over a tokenizer; nothing is ever handed to eval):

    expr  := term (('+' | '-') term)*
    term  := unary (('*' | '/' | '//' | '%') unary)*
    unary := ('-' | '+') unary | atom
    atom  := INTEGER | DECIMAL | '$'NAME | NAME '(' expr (',' expr)* ')' | '(' expr ')'

Functions: min, max, ceil, floor, make_divisible(value, divisor[, min_value]).

Values are Python integers or exact fractions (fractions.Fraction), never floats: `/` divides exactly
and a decimal literal such as 0.75 is exactly 3/4 (a float block argument such as 1.1 is taken as the
decimal the user wrote, 11/10). `+ - * // %` on integers are Python's integer operations (`//` and `%`
round toward minus infinity, as in PyTorch model code). A result must be a whole number: 3 * 3 / 4 is
refused ("gives 9/4"), floor(3 * 3 / 4) is 2. `make_divisible` is torchvision's `_make_divisible`
(round to the nearest multiple of `divisor`, at least `min_value`, and never more than 10% below `value`)
computed exactly, so `make_divisible(32 * 0.75, 8)` is 24 just as torchvision's float arithmetic gives.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

from archspec.errors import did_you_mean

MAX_EXPR_CHARS = 500  # longer expressions are not architecture arithmetic
MAX_EXPR_DEPTH = 32  # nested parentheses, calls and unary signs
MAX_VALUE_BITS = 2048  # numerator/denominator size of any intermediate value (about 10**616)

Number = int | Fraction

_PARAM = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*")
_PLAIN_PARAM = re.compile(r"\$[A-Za-z_][A-Za-z0-9_]*\Z")
_TOKEN = re.compile(
    r"(?P<space>\s+)|(?P<num>[0-9]+(?:\.[0-9]+)?)|(?P<param>\$[A-Za-z_][A-Za-z0-9_]*)|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
    r"|(?P<op>//|[-+*/%(),])"
)


class ExprError(Exception):
    """A problem at character `offset` of the expression text (0-based, counted in the scalar)."""

    def __init__(self, message: str, offset: int, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.offset = offset
        self.hint = hint


class UnknownParameter(ExprError):
    def __init__(self, name: str, offset: int):
        super().__init__(f"unknown parameter '${name}'", offset)
        self.name = name


def is_plain_reference(text: str) -> bool:
    """`$name` alone: replaced by the argument's value, whatever its type (number, flag, list, text)."""
    return _PLAIN_PARAM.match(text) is not None


_CALL = re.compile(r"(min|max|ceil|floor|make_divisible)\s*\(")


def is_expression(text: str) -> bool:
    """A string that is evaluated: it starts with '=' or a function call (`max(`), or mentions a `$param`
    (and is not one alone, which is a plain reference)."""
    return text.startswith("=") or ("$" in text and not is_plain_reference(text)) or _CALL.match(text) is not None


# ---- parsing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Num:
    value: Number
    offset: int


@dataclass(frozen=True)
class Param:
    name: str
    offset: int


@dataclass(frozen=True)
class Neg:
    operand: Any
    offset: int


@dataclass(frozen=True)
class BinOp:
    op: str
    left: Any
    right: Any
    offset: int  # of the operator


@dataclass(frozen=True)
class Call:
    function: str
    args: tuple[Any, ...]
    offset: int


def _tokenize(text: str, start: int) -> list[tuple[str, str, int]]:
    tokens = []
    pos = start
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            char = text[pos]
            hint = None
            if char == "$":
                hint = "a parameter is '$' followed by its name, e.g. $planes"
            elif char == "*" and text.startswith("**", pos - 1):
                hint = "there is no power operator; multiply out"
            elif char in "<>=!":
                hint = "expressions compute numbers; there are no comparisons"
            raise ExprError(f"unexpected character {char!r}", pos, hint)
        kind = match.lastgroup
        if kind != "space":
            tokens.append((kind, match.group(), pos))
        pos = match.end()
    tokens.append(("end", "", len(text)))
    return tokens


class _Parser:
    def __init__(self, text: str, start: int):
        self.text = text
        self.tokens = _tokenize(text, start)
        self.pos = 0
        self.depth = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.pos]

    def take(self) -> tuple[str, str, int]:
        token = self.tokens[self.pos]
        self.pos += 1
        return token

    def expect(self, text: str, hint: str | None = None) -> None:
        kind, got, offset = self.peek()
        if got != text or kind != "op":
            found = "the end of the expression" if kind == "end" else f"'{got}'"
            raise ExprError(f"expected '{text}', found {found}", offset, hint)
        self.pos += 1

    def parse(self):
        tree = self.expr()
        kind, got, offset = self.peek()
        if kind != "end":
            hint = "a ')' without its '('?" if got == ")" else "an operator (+ - * / // %) is missing?"
            raise ExprError(f"unexpected '{got}'", offset, hint)
        return tree

    def expr(self):
        left = self.term()
        while self.peek()[1] in ("+", "-") and self.peek()[0] == "op":
            _, op, offset = self.take()
            left = BinOp(op, left, self.term(), offset)
        return left

    def term(self):
        left = self.unary()
        while self.peek()[1] in ("*", "/", "//", "%") and self.peek()[0] == "op":
            _, op, offset = self.take()
            left = BinOp(op, left, self.unary(), offset)
        return left

    def _deeper(self, offset: int) -> None:
        self.depth += 1
        if self.depth > MAX_EXPR_DEPTH:
            raise ExprError(f"expression nested more than {MAX_EXPR_DEPTH} levels deep", offset)

    def unary(self):
        kind, text, offset = self.peek()
        if kind == "op" and text in ("-", "+"):
            self.take()
            self._deeper(offset)
            operand = self.unary()
            self.depth -= 1
            return Neg(operand, offset) if text == "-" else operand
        return self.atom()

    def atom(self):
        kind, text, offset = self.take()
        if kind == "num":
            return Num(Fraction(text) if "." in text else int(text), offset)
        if kind == "param":
            return Param(text[1:], offset)
        if kind == "name":
            if text not in FUNCTIONS:
                raise ExprError(
                    f"unknown function '{text}'",
                    offset,
                    did_you_mean(text, FUNCTIONS)
                    or (
                        f"parameters start with '$': ${text}"
                        if self.peek()[1] != "("
                        else f"functions: {', '.join(sorted(FUNCTIONS))}"
                    ),
                )
            self.expect("(", f"call it: {text}(...)")
            self._deeper(offset)
            args = [self.expr()]
            while self.peek()[1] == "," and self.peek()[0] == "op":
                self.take()
                args.append(self.expr())
            self.expect(")", _FLOW_HINT if self.peek()[0] == "end" else None)
            self.depth -= 1
            return Call(text, tuple(args), offset)
        if kind == "op" and text == "(":
            self._deeper(offset)
            inner = self.expr()
            self.expect(")")
            self.depth -= 1
            return inner
        found = "the end of the expression" if kind == "end" else f"'{text}'"
        hint = "there is no power operator; multiply out" if text == "*" and self.text[offset - 1] == "*" else None
        raise ExprError(f"expected a number, a $parameter or '(', found {found}", offset, hint)


_FLOW_HINT = 'inside {...} or [...], quote an expression that contains a comma: "max(1, $c // 4)"'


@lru_cache(maxsize=4096)  # templates are evaluated once per block instance: parse each text once
def parse(text: str):
    """The syntax tree of `text` (a leading '=' is skipped); raises ExprError with the offending offset."""
    if len(text) > MAX_EXPR_CHARS:
        raise ExprError(f"expression longer than {MAX_EXPR_CHARS} characters", 0, "split it over block parameters")
    start = 1 if text.startswith("=") else 0
    return _Parser(text, start).parse()


# ---- evaluation --------------------------------------------------------------------------------------


def _show(value: Number) -> str:
    if isinstance(value, int) or value.denominator == 1:
        return str(int(value))
    return f"{value.numerator}/{value.denominator}"


def _number(value: Any, name: str, offset: int) -> Number:
    """A block argument as an exact number (bools, text, lists and null are not numbers)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ExprError(f"parameter '${name}' is {_describe(value)}, not a number", offset)
    if isinstance(value, float):
        return Fraction(repr(value))  # the decimal the user wrote: 1.1 is 11/10, not the nearest binary float
    return value


def _checked(value: Number, offset: int) -> Number:
    if isinstance(value, Fraction):
        if value.denominator == 1:
            value = value.numerator
        elif value.denominator.bit_length() > MAX_VALUE_BITS or value.numerator.bit_length() > MAX_VALUE_BITS:
            raise ExprError("value too large", offset)
    if isinstance(value, int) and value.bit_length() > MAX_VALUE_BITS:
        raise ExprError("value too large", offset)
    return value


def _make_divisible(offset: int, value: Number, divisor: Number, min_value: Number | None = None) -> int:
    """torchvision's _make_divisible in exact arithmetic:
    new = max(min_value, int(value + divisor / 2) // divisor * divisor); add divisor if new < 0.9 * value."""
    if not isinstance(divisor, int) or divisor < 1:
        raise ExprError(f"make_divisible: the divisor must be a positive integer, got {_show(divisor)}", offset)
    floor_to = divisor if min_value is None else min_value
    new = max(floor_to, int(value + Fraction(divisor, 2)) // divisor * divisor)  # int() truncates, as in Python
    if new < Fraction(9, 10) * value:
        new += divisor
    return new


def _call(node: Call, args: list[Number]) -> Number:
    low, high = FUNCTIONS[node.function]
    if not low <= len(args) <= high:
        wanted = f"{low}" if low == high else f"{low} or {high}" if high < 100 else f"at least {low}"
        raise ExprError(
            f"{node.function}() takes {wanted} arguments, got {len(args)}", node.offset, _SIGNATURES[node.function]
        )
    if node.function == "min":
        return min(args)
    if node.function == "max":
        return max(args)
    if node.function == "ceil":
        return math.ceil(args[0])
    if node.function == "floor":
        return math.floor(args[0])
    return _make_divisible(node.offset, *args)


FUNCTIONS = {"min": (2, 1000), "max": (2, 1000), "ceil": (1, 1), "floor": (1, 1), "make_divisible": (2, 3)}
_SIGNATURES = {
    "min": "min(a, b, ...)",
    "max": "max(a, b, ...)",
    "ceil": "ceil(x) rounds up: ceil($n * 1.1)",
    "floor": "floor(x) rounds down: floor($n * 3 / 4)",
    "make_divisible": "make_divisible(value, divisor) or make_divisible(value, divisor, min_value)",
}


def _start(node) -> int:
    """Offset of the first character of a subexpression (its leftmost token)."""
    while isinstance(node, BinOp):
        node = node.left
    return node.offset


def _evaluate(node, env: dict[str, Any]) -> Number:
    if isinstance(node, Num):
        return node.value
    if isinstance(node, Param):
        if node.name not in env:
            raise UnknownParameter(node.name, node.offset)
        return _number(env[node.name], node.name, node.offset)
    if isinstance(node, Neg):
        return -_evaluate(node.operand, env)
    if isinstance(node, Call):
        return _checked(_call(node, [_evaluate(arg, env) for arg in node.args]), node.offset)
    left, right = _evaluate(node.left, env), _evaluate(node.right, env)
    op = node.op
    if op in ("/", "//", "%") and right == 0:
        raise ExprError("division by zero", _start(node.right))
    if op == "+":
        result = left + right
    elif op == "-":
        result = left - right
    elif op == "*":
        result = left * right
    elif op == "/":
        result = Fraction(left) / right
    elif op == "//":
        result = left // right
    else:
        result = left % right
    return _checked(result, node.offset)


def evaluate(text: str, env: dict[str, Any]) -> Number:
    """The exact value of expression `text` with `$name` bound by `env`; raises ExprError."""
    return _evaluate(parse(text), env)


def evaluate_int(text: str, env: dict[str, Any]) -> int:
    """Like `evaluate`, but the result must be a whole number (every field archspec computes is)."""
    value = evaluate(text, env)
    if isinstance(value, Fraction):  # _checked turns whole fractions into int
        raise ExprError(
            f"the result {_show(value)} is not a whole number",
            1 if text.startswith("=") else 0,
            "round it: floor(...), ceil(...) or make_divisible(..., 8)",
        )
    return value


def interpolate(text: str, env: dict[str, Any]) -> str:
    """`$name` (or `${name}`) inside a node name or input reference, replaced by a number or text."""
    pieces = []
    pos = 0
    for match in re.finditer(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)|\$", text):
        pieces.append(text[pos : match.start()])
        name = match.group(1) or match.group(2)
        if name is None:
            raise ExprError("'$' must be followed by a parameter name", match.start())
        if name not in env:
            raise UnknownParameter(name, match.start())
        value = env[name]
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise ExprError(
                f"parameter '${name}' is {_describe(value)}; only a number or text can be part of a name",
                match.start(),
            )
        pieces.append(str(value))
        pos = match.end()
    pieces.append(text[pos:])
    return "".join(pieces)


def _describe(value: Any) -> str:
    if value is True or value is False:
        return "true" if value else "false"
    if value is None:
        return "null"
    text = repr(value)
    return text if len(text) <= 40 else text[:36] + " ..."


def first_param(text: str) -> tuple[str, int] | None:
    """The first `$name` in `text` and its offset (for 'outside a block' errors)."""
    match = _PARAM.search(text)
    return (match.group(), match.start()) if match else None
