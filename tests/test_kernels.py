"""Each vectorized kernel equals a naive loop implementation written from the op's definition."""

from __future__ import annotations

import naive
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from archspec.ops import OP_ADAPTER, REGISTRY, MatMul, Weights
from archspec.spec.jsonschema import spec_json_schema

SETTINGS = settings(max_examples=60, deadline=None)


def make(**fields):
    return OP_ADAPTER.validate_python({"name": "n", "inputs": ["input"], **fields})


@st.composite
def conv_case(draw):
    groups = draw(st.integers(1, 3))
    cin = groups * draw(st.integers(1, 2))
    cout = groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 7))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 7))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return groups, cin, cout, (kh, kw), (sh, sw), (dh, dw), (ph, pw), (h, w), bias, seed


@SETTINGS
@given(conv_case())
def test_conv2d_matches_naive_loops(case):
    groups, cin, cout, k, s, d, p, (h, w), bias, seed = case
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, cin, h, w)).astype(np.float32)
    weight = rng.normal(size=(cout, cin // groups, *k)).astype(np.float32)
    b = rng.normal(size=(cout,)).astype(np.float32)
    op = make(
        op="conv2d",
        out_channels=cout,
        kernel=list(k),
        stride=list(s),
        padding=list(p),
        dilation=list(d),
        groups=groups,
        bias=bias,
    )
    tensors = {"weight": weight, **({"bias": b} if bias else {})}
    mm = MatMul()
    got = op.forward([x], Weights(tensors, "n"), mm)
    want = naive.conv2d(x, weight, b if bias else None, s, p, d, groups)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # The MatMul counter saw exactly out elements x (cin/groups) x kh x kw multiply-adds per image.
    assert mm.macs == 2 * want[0].size * (cin // groups) * k[0] * k[1]


@SETTINGS
@given(
    channels=st.integers(1, 6),
    multiplier=st.integers(1, 3),
    kernel=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    extra=st.tuples(st.integers(0, 5), st.integers(0, 5)),
    bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_depthwise_conv2d_matches_naive_loops(
    channels, multiplier, kernel, stride, dilation, padding, extra, bias, seed
):
    """groups == in_channels (MobileNet/EfficientNet depthwise, with a channel multiplier): the
    tap-by-tap vectorized kernel equals the loops, and every product it formed was counted."""
    extent = [dilation[a] * (kernel[a] - 1) + 1 for a in range(2)]
    h, w = (max(1, extent[a] - 2 * padding[a]) + extra[a] for a in range(2))
    cout = channels * multiplier
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, channels, h, w)).astype(np.float32)
    weight = rng.normal(size=(cout, 1, *kernel)).astype(np.float32)
    b = rng.normal(size=(cout,)).astype(np.float32)
    op = make(
        op="conv2d",
        out_channels=cout,
        kernel=list(kernel),
        stride=list(stride),
        padding=list(padding),
        dilation=list(dilation),
        groups=channels,
        bias=bias,
    )
    mm = MatMul()
    got = op.forward([x], Weights({"weight": weight, **({"bias": b} if bias else {})}, "n"), mm)
    want = naive.conv2d(x, weight, b if bias else None, stride, padding, dilation, channels)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # One multiply-add per output element and kernel tap (in_channels / groups = 1), batch of 2.
    assert mm.macs == 2 * want[0].size * kernel[0] * kernel[1]


@st.composite
def pool_case(draw):
    kh, kw = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h = draw(st.integers(max(1, kh - 2 * ph), 8))
    w = draw(st.integers(max(1, kw - 2 * pw), 8))
    return (kh, kw), (sh, sw), (ph, pw), (h, w), draw(st.booleans()), draw(st.booleans()), draw(st.integers(0, 2**16))


@SETTINGS
@given(pool_case())
def test_max_pool_matches_naive_loops(case):
    k, s, p, (h, w), ceil_mode, _, seed = case
    x = np.random.default_rng(seed).normal(size=(2, 3, h, w)).astype(np.float32)
    op = make(op="max_pool2d", kernel=list(k), stride=list(s), padding=list(p), ceil_mode=ceil_mode)
    got = op.forward([x], Weights({}, "n"), MatMul())
    want = naive.pool2d(x, "max", k, s, p, ceil_mode)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-6)


@SETTINGS
@given(pool_case())
def test_avg_pool_matches_naive_loops(case):
    k, s, p, (h, w), ceil_mode, include_pad, seed = case
    x = np.random.default_rng(seed).normal(size=(2, 3, h, w)).astype(np.float32)
    op = make(
        op="avg_pool2d",
        kernel=list(k),
        stride=list(s),
        padding=list(p),
        ceil_mode=ceil_mode,
        count_include_pad=include_pad,
    )
    got = op.forward([x], Weights({}, "n"), MatMul())
    want = naive.pool2d(x, "avg", k, s, p, ceil_mode, include_pad)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


@SETTINGS
@given(st.integers(1, 9), st.integers(1, 9), st.integers(1, 4), st.integers(1, 4), st.integers(0, 2**16))
def test_adaptive_avg_pool_matches_naive_loops(h, w, oh, ow, seed):
    x = np.random.default_rng(seed).normal(size=(1, 2, h, w)).astype(np.float32)
    op = make(op="adaptive_avg_pool2d", output_size=[oh, ow])
    got = op.forward([x], Weights({}, "n"), MatMul())
    np.testing.assert_allclose(got, naive.adaptive_avg_pool2d(x, (oh, ow)), rtol=1e-5, atol=1e-6)


@SETTINGS
@given(st.integers(1, 7), st.integers(1, 6), st.floats(0.5, 3.0), st.integers(0, 2**16))
def test_lrn_matches_naive_loops(channels, size, k, seed):
    x = np.random.default_rng(seed).normal(size=(2, channels, 3, 2)).astype(np.float32)
    op = make(op="lrn", size=size, alpha=1e-2, beta=0.75, k=k)
    got = op.forward([x], Weights({}, "n"), MatMul())
    np.testing.assert_allclose(got, naive.lrn(x, size, 1e-2, 0.75, k), rtol=1e-5)


def test_linear_matches_definition_and_counts_macs():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 5)).astype(np.float32)
    weight, bias = rng.normal(size=(4, 5)).astype(np.float32), rng.normal(size=(4,)).astype(np.float32)
    mm = MatMul()
    got = make(op="linear", out_features=4).forward([x], Weights({"weight": weight, "bias": bias}, "n"), mm)
    want = np.array([[sum(x[b, i] * weight[o, i] for i in range(5)) + bias[o] for o in range(4)] for b in range(3)])
    np.testing.assert_allclose(got, want, rtol=1e-5)
    assert mm.macs == 3 * 5 * 4  # batch x in x out


def test_batch_norm_uses_running_statistics():
    x = np.array([[[[1.0]], [[3.0]]]], dtype=np.float32)  # (1, 2, 1, 1)
    tensors = {
        "weight": np.array([2.0, 1.0], np.float32),
        "bias": np.array([0.5, 0.0], np.float32),
        "running_mean": np.array([1.0, 1.0], np.float32),
        "running_var": np.array([4.0, 1.0], np.float32),
    }
    w = Weights(tensors, "bn")
    got = make(op="batch_norm", eps=1e-5).forward([x], w, MatMul())
    # channel 0: (1 - 1)/sqrt(4) * 2 + 0.5 = 0.5; channel 1: (3 - 1)/sqrt(1) * 1 + 0 = 2
    np.testing.assert_allclose(got.ravel(), [0.5, 2.0 / np.sqrt(1 + 1e-5)], rtol=1e-6)
    assert w.trainable_read == {"weight": 2, "bias": 2}
    assert w.buffers_read == {"running_mean": 2, "running_var": 2}


def test_schema_tags_equal_registry_keys():
    schema = spec_json_schema()
    mapping = schema["$defs"]
    tags = set()
    for definition in mapping.values():
        op = definition.get("properties", {}).get("op")
        if op and "const" in op:
            tags.add(op["const"])
    assert tags == set(REGISTRY)
