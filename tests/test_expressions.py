"""Spec expressions (archspec/spec/expr.py): exact arithmetic, torchvision's rounding, located errors."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import archspec
from archspec.errors import SpecError
from archspec.spec import expr
from archspec.spec.expr import ExprError, evaluate_int

# ---- random expression trees evaluate as Python's integer arithmetic ------------------------------------

ENV = {"a": 7, "b": -3, "c": 12, "big": 10**18}


def _leaf():
    numbers = st.integers(min_value=0, max_value=10**6).map(lambda n: (str(n), n))
    params = st.sampled_from(sorted(ENV)).map(lambda name: (f"${name}", ENV[name]))
    return numbers | params


def _combine(children):
    def binary(op):
        return st.tuples(children, children).map(lambda pair: (f"({pair[0][0]}) {op} ({pair[1][0]})", op, pair))

    def apply(item):
        text, op, ((_, x), (_, y)) = item
        if op in ("//", "%") and y == 0:
            return (text, None)  # division by zero: the evaluator must refuse it
        if x is None or y is None:
            return (text, None)
        value = {"+": x + y, "-": x - y, "*": x * y, "//": x // y if y else None, "%": x % y if y else None}[op]
        return (text, value)

    ops = st.sampled_from(["+", "-", "*", "//", "%"]).flatmap(binary).map(apply)
    neg = children.map(lambda c: (f"-({c[0]})", None if c[1] is None else -c[1]))
    calls = st.tuples(st.sampled_from(["min", "max"]), st.lists(children, min_size=2, max_size=4)).map(
        lambda t: (
            f"{t[0]}({', '.join(c[0] for c in t[1])})",
            None if any(c[1] is None for c in t[1]) else (min if t[0] == "min" else max)(c[1] for c in t[1]),
        )
    )
    return ops | neg | calls


TREES = st.recursive(_leaf(), _combine, max_leaves=12)


@settings(max_examples=300, deadline=None)
@given(TREES)
def test_random_expressions_equal_python_integer_arithmetic(tree):
    text, expected = tree
    if len(text) > expr.MAX_EXPR_CHARS or text.count("(") > expr.MAX_EXPR_DEPTH:
        return
    if expected is None:
        with pytest.raises(ExprError, match="division by zero"):
            evaluate_int(text, ENV)
    elif abs(expected).bit_length() <= expr.MAX_VALUE_BITS:
        assert evaluate_int(text, ENV) == expected


def test_precedence_and_associativity():
    # Written-out Python values: 2 + 3 * 4 = 14; 20 - 5 - 3 = 12; 7 // 2 * 2 = 6; -7 // 2 = -4; -7 % 3 = 2.
    cases = {
        "2 + 3 * 4": 14,
        "20 - 5 - 3": 12,
        "7 // 2 * 2": 6,
        "-7 // 2": -4,
        "-7 % 3": 2,
        "--3": 3,
        "(2 + 3) * 4": 20,
    }
    for text, value in cases.items():
        assert evaluate_int(text, {}) == value, text


# ---- make_divisible, ceil and floor reproduce torchvision on the values its models use --------------------


def torchvision_make_divisible(v: float, divisor: int, min_value: int | None = None) -> int:
    """The formula of torchvision.models._utils._make_divisible (and mnasnet's _round_to_multiple_of),
    in Python floats as torchvision computes it: the independent oracle."""
    min_value = min_value or divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


# Channel counts and multipliers from torchvision's model builders (efficientnet.py _efficientnet_conf,
# mnasnet.py _get_depths, mobilenetv2.py, mobilenetv3.py).
EFFICIENTNET_CHANNELS = [32, 16, 24, 40, 80, 112, 192, 320]
EFFICIENTNET_WIDTHS = ["1.0", "1.1", "1.2", "1.4", "1.6", "1.8", "2.0"]
EFFICIENTNET_LAYERS = [1, 2, 2, 3, 3, 4, 1]
EFFICIENTNET_DEPTHS = ["1.0", "1.1", "1.2", "1.4", "1.8", "2.2", "2.6", "3.1"]
MNASNET_DEPTHS = [32, 16, 24, 40, 80, 96, 192, 320]
MNASNET_ALPHAS = ["0.5", "0.75", "1.0", "1.3"]


@pytest.mark.parametrize(
    ("channels", "widths"), [(EFFICIENTNET_CHANNELS, EFFICIENTNET_WIDTHS), (MNASNET_DEPTHS, MNASNET_ALPHAS)]
)
def test_make_divisible_matches_torchvision(channels, widths):
    for width in widths:
        for c in channels:
            want = torchvision_make_divisible(c * float(width), 8)
            assert evaluate_int(f"make_divisible({c} * {width}, 8)", {}) == want, (c, width)
            assert evaluate_int("make_divisible($c * $w, 8)", {"c": c, "w": float(width)}) == want
            # and the expansion to 6x the adjusted width (EfficientNet's MBConv)
            adjusted = want * 6
            assert evaluate_int(f"make_divisible({want} * 6, 8)", {}) == torchvision_make_divisible(adjusted, 8)


def test_make_divisible_rounding_cases():
    # By hand: 24 + 4 = 28, 28 // 8 * 8 = 24 (= 24, not below 0.9 * 24): 24.
    assert evaluate_int("make_divisible(24, 8)", {}) == 24
    # 12 + 4 = 16 -> 16; 16 >= 10.8: 16 (rounds half up).
    assert evaluate_int("make_divisible(12, 8)", {}) == 16
    # 3 + 4 = 7 -> 0, max(8, 0) = 8.
    assert evaluate_int("make_divisible(3, 8)", {}) == 8
    # 92 + 4 = 96 -> 96... and 91: 95 // 8 * 8 = 88; 88 >= 81.9: 88.
    assert evaluate_int("make_divisible(91, 8)", {}) == 88
    # min_value: make_divisible(3, 8, 1): 7 // 8 * 8 = 0 -> max(1, 0) = 1; 1 < 2.7 -> 1 + 8 = 9.
    assert evaluate_int("make_divisible(3, 8, 1)", {}) == 9
    # 0.9 rule: v = 100, divisor 32: 116 // 32 * 32 = 96 >= 90: 96; v = 110: 126 // 32 * 32 = 96 < 99 -> 128.
    assert evaluate_int("make_divisible(100, 32)", {}) == 96
    assert evaluate_int("make_divisible(110, 32)", {}) == 128
    for x in range(1, 300):
        assert evaluate_int(f"make_divisible({x}, 8)", {}) == torchvision_make_divisible(x, 8)


def test_ceil_of_depth_multipliers_matches_torchvision():
    for mult in EFFICIENTNET_DEPTHS:
        for n in EFFICIENTNET_LAYERS:
            assert evaluate_int(f"ceil({n} * {mult})", {}) == math.ceil(n * float(mult)), (n, mult)
            assert evaluate_int("ceil($n * $m)", {"n": n, "m": float(mult)}) == math.ceil(n * float(mult))


def test_decimals_are_exact_not_binary_floats():
    # 0.1 * 30 is exactly 3 (in binary floats 0.1 * 30 = 3.0000000000000004, whose ceil is 4).
    assert evaluate_int("ceil(0.1 * 30)", {}) == 3
    assert evaluate_int("3 * 3 / 9", {}) == 1  # '/' is exact; a whole result is fine
    assert evaluate_int("floor(3 * 3 / 4)", {}) == 2  # 9/4 rounded down


# ---- errors: message and offset of the offending token ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "offset"),
    [
        ("$a * $t", "unknown parameter '$t'", 5),
        ("$a // ($b + 3)", "division by zero", 7),
        ("$a % 0", "division by zero", 5),
        ("max(1, $a", "expected ')', found the end of the expression", 9),
        ("($a + 1", "expected ')', found the end of the expression", 7),
        ("$a * 3 / 5", "the result 21/5 is not a whole number", 0),
        ("=$a * 3 / 5", "the result 21/5 is not a whole number", 1),
        ("$a $c", "unexpected '$c'", 3),
        ("2 ** 3", "expected a number, a $parameter or '(', found '*'", 3),
        ("maks(1, 2)", "unknown function 'maks'", 0),
        ("$a + #", "unexpected character '#'", 5),
        ("$flag * 2", "parameter '$flag' is true, not a number", 0),
        ("$text + 1", "parameter '$text' is 'abc', not a number", 0),
        ("ceil(1, 2)", "ceil() takes 1 arguments, got 2", 0),
        ("make_divisible(10, 0)", "make_divisible: the divisor must be a positive integer, got 0", 0),
        ("(" * 40 + "1" + ")" * 40, "expression nested more than 32 levels deep", 32),
        ("1 + " * 200 + "1", "expression longer than 500 characters", 0),
        ("=", "expected a number, a $parameter or '(', found the end of the expression", 1),
    ],
)
def test_expression_errors(text, message, offset):
    with pytest.raises(ExprError) as info:
        evaluate_int(text, {**ENV, "flag": True, "text": "abc"})
    assert info.value.message == message
    assert info.value.offset == offset


def test_huge_values_are_refused_not_computed():
    text = "*".join(["$big"] * 70)  # 10**1260 needs about 4,200 bits
    with pytest.raises(ExprError, match="value too large"):
        evaluate_int(text, ENV)


def test_what_is_an_expression():
    assert expr.is_plain_reference("$planes") and not expr.is_expression("$planes")
    assert expr.is_expression("$inp * $t") and expr.is_expression("=24") and expr.is_expression("max(1, 2)")
    assert not expr.is_expression("relu") and not expr.is_expression("maximum")


# ---- end to end: a block written with expressions --------------------------------------------------------

MBCONV = """name: mb
input: [16, 8, 8]
blocks:
  inverted_residual:
    doc: MobileNetV2 / EfficientNet style, widths computed from the input width
    params: {inp: null, t: 6, out: null, hidden: $inp * $t, squeeze: "max(1, $inp // 4)"}
    nodes:
      - {name: expand_$t, op: conv2d, out_channels: $hidden, kernel: 1, bias: false}
      - {name: dw, op: conv2d, out_channels: $hidden, groups: $hidden, kernel: 3, padding: 1, bias: false}
      - {name: se_reduce, op: conv2d, out_channels: $squeeze, kernel: 1}
      - {name: project, op: conv2d, out_channels: "make_divisible($out * 0.75, 8)", kernel: 1, bias: false}
nodes:
  - {name: b, block: inverted_residual, args: {inp: 16, out: 32}}
  - {name: head, op: conv2d, out_channels: "=make_divisible(1280 * 3 / 4, 8)", kernel: 1, bias: false}
"""


def test_block_with_expressions_end_to_end(write_spec):
    analysis = archspec.load(write_spec(MBCONV)).analyze()
    layers = {layer.name: layer for layer in analysis.layers}
    # hidden = 16 * 6 = 96; the node name interpolates $t: expand_6.
    assert layers["b.expand_6"].output_shape == (96, 8, 8)
    assert layers["b.expand_6"].params == 96 * 16  # 1x1, no bias
    assert layers["b.dw"].params == 96 * 1 * 3 * 3  # depthwise: one 3x3 filter per channel
    # squeeze = max(1, 16 // 4) = 4: 4 * 96 weights + 4 biases.
    assert layers["b.se_reduce"].params == 4 * 96 + 4
    # project: make_divisible(32 * 0.75 = 24, 8) = 24 channels from 4.
    assert layers["b.project"].output_shape == (24, 8, 8) and layers["b.project"].params == 24 * 4
    # head: 1280 * 3 / 4 = 960, divisible by 8: 960 channels.
    assert layers["head"].output_shape == (960, 8, 8)


def located(write_spec, text: str) -> list[str]:
    with pytest.raises(SpecError) as info:
        archspec.load(write_spec(text))
    return [d.render() for d in info.value.diagnostics]


def test_errors_point_into_the_scalar(write_spec):
    text = MBCONV.replace("$inp * $t,", "$inp * $tt,").replace('"max(1, $inp // 4)"', '"max(1, $inp // (4 - 4))"')
    path = write_spec(text)
    errors = located(write_spec, text)
    # line 6: `    params: {inp: null, t: 6, out: null, hidden: $inp * $tt, squeeze: "max(1, $inp // (4 - 4))"}`
    line = text.splitlines()[5]
    col_tt = line.index("$tt") + 1
    assert errors[0].startswith(f"{path}:6:{col_tt}: error: unknown parameter '$tt' in block 'inverted_residual'")
    assert "did you mean '$t'?" in errors[0] or "did you mean 't'?" in errors[0]


def test_division_by_zero_is_located(write_spec):
    text = MBCONV.replace('"max(1, $inp // 4)"', '"max(1, $inp // ($t - 6))"')
    path = write_spec(text)
    errors = located(write_spec, text)
    line = text.splitlines()[5]
    col = line.index("$t - 6") + 1  # the divisor's first token
    assert errors == [
        f"{path}:6:{col}: error: expression 'max(1, $inp // ($t - 6))': division by zero\n"
        f"  {path}:13:5: note: in block 'inverted_residual' instance 'b'"
    ]


def test_unquoted_comma_in_flow_style_gets_a_hint(write_spec):
    text = MBCONV.replace('"make_divisible($out * 0.75, 8)"', "make_divisible($out * 0.75, 8)")
    errors = located(write_spec, text)
    assert len(errors) == 1
    assert "expected ')', found the end of the expression" in errors[0]
    assert 'quote an expression that contains a comma: "max(1, $c // 4)"' in errors[0]


def test_expression_at_top_level_needs_no_block(write_spec):
    text = MBCONV.replace('"=make_divisible(1280 * 3 / 4, 8)"', "$width * 2")
    errors = located(write_spec, text)
    line = text.splitlines()[13]
    assert f":14:{line.index('$width') + 1}: error: parameter reference '$width' outside a block" in errors[0]


def test_result_must_be_an_integer_where_the_field_wants_one(write_spec):
    text = MBCONV.replace('"=make_divisible(1280 * 3 / 4, 8)"', '"=1280 * 3 / 7"')
    errors = located(write_spec, text)
    assert "expression '=1280 * 3 / 7': the result 3840/7 is not a whole number" in errors[0]
    assert "hint: round it: floor(...), ceil(...) or make_divisible(..., 8)" in errors[0]


def test_plain_reference_keeps_its_type(write_spec):
    # `$flag` alone is still the boolean argument (for `when:`); `$text` alone is still text.
    text = MBCONV.replace("bias: false}\nnodes:", "bias: $flag}\nnodes:").replace("squeeze: ", "flag: false, squeeze: ")
    analysis = archspec.load(write_spec(text)).analyze()
    assert {layer.name: layer for layer in analysis.layers}["b.project"].params == 24 * 4
