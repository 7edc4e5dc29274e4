"""The compiled kernels of the inference fast path (archspec/ops/compiled.py, numba): each must compute
what the NumPy kernel it replaces computes, bit for bit (same sums in the same order, no fastmath), and
the definition (naive loops); and the fast path must fuse a ReLU into the kernel before it only where
that kernel's output is read by nothing else."""

from __future__ import annotations

import os
import subprocess
import sys
from unittest import mock

import naive
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import archspec
from archspec.ops import REGISTRY, MatMul, Weights, compiled, windows
from archspec.ops.base import Activation
from archspec.ops.fastpath import fast
from archspec.reference import forward as reference

RELU, RELU6, SILU = Activation(lo=0.0), Activation(lo=0.0, hi=6.0), Activation(silu=True)


@pytest.fixture(autouse=True)
def _jit_on(monkeypatch):
    """Every test here starts with the compiled kernels found (numba is a dependency of archspec)."""
    monkeypatch.delenv("ARCHSPEC_JIT", raising=False)
    kernels = compiled.kernels  # (a test may replace it)
    kernels.cache_clear()
    assert kernels() is not None, "numba is a dependency: the compiled kernels must load"
    yield
    kernels.cache_clear()


def _without_jit(run):
    """run() with the compiled kernels switched off the way a user does (ARCHSPEC_JIT=0)."""
    with mock.patch.dict(os.environ, {"ARCHSPEC_JIT": "0"}):
        compiled.kernels.cache_clear()
        try:
            assert compiled.kernels() is None
            return run()
        finally:
            compiled.kernels.cache_clear()


def _clamped(y, clamp):
    """y through an Activation (None: y itself); SiLU in float64."""
    if clamp is not None and clamp.silu:
        return y / (1 + np.exp(-y.astype(np.float64)))
    return y if clamp is None else np.minimum(np.maximum(y, clamp.lo), clamp.hi)


@settings(max_examples=60, deadline=None)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 19),
    size=st.tuples(st.integers(1, 11), st.integers(1, 11)),
    # the kernels' own fast paths (3 x 3, and 5 wide) as often as all other sizes together
    kernel=st.one_of(st.sampled_from([(3, 3), (5, 5), (3, 5)]), st.tuples(st.integers(1, 5), st.integers(1, 5))),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    dilation=st.tuples(st.integers(1, 2), st.integers(1, 2)),
    padding=st.tuples(st.integers(0, 3), st.integers(0, 3)),
    bias=st.booleans(),
    clamp=st.sampled_from([None, RELU, RELU6, SILU]),
    channels_last_input=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_compiled_depthwise_conv_is_numpys_kernel_and_the_definition(
    batch, channels, size, kernel, stride, dilation, padding, bias, clamp, channels_last_input, seed
):
    for axis in range(2):  # the dilated window must fit in the padded input
        assume(size[axis] + 2 * padding[axis] >= dilation[axis] * (kernel[axis] - 1) + 1)
    op = REGISTRY["conv2d"](
        name="dw",
        op="conv2d",
        out_channels=channels,
        kernel=list(kernel),
        stride=list(stride),
        dilation=list(dilation),
        padding=list(padding),
        groups=channels,
        bias=bias,
    )
    rng = np.random.default_rng(seed)
    tensors = {k: rng.normal(size=s).astype(np.float32) for k, s in op.param_shapes([(channels, *size)]).items()}
    x = rng.normal(size=(batch, *size, channels)).astype(np.float32).transpose(0, 3, 1, 2)
    if not channels_last_input:
        x = np.ascontiguousarray(x)

    def run():
        with fast():
            return op.forward_fused([x], Weights(tensors, "dw"), MatMul(), None, clamp)

    got = run()
    numpy_kernel = _without_jit(run)
    if clamp is SILU:  # with SiLU the sums are fused multiply-adds (SILU_FASTMATH): other roundings
        np.testing.assert_allclose(got, numpy_kernel, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, numpy_kernel)
    want = naive.conv2d(x, tensors["weight"], tensors.get("bias"), stride, padding, dilation, channels)
    np.testing.assert_allclose(got, _clamped(want, clamp), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(
    ("kernel", "stride", "dilation", "clamp"),
    [
        (3, 1, 1, RELU6),  # MobileNetV2's depthwise layers
        (3, 2, 1, RELU6),
        (5, 1, 1, None),  # EfficientNet's (SiLU runs on its own)
        (5, 2, 1, None),
        (3, 1, 2, RELU),
        ([3, 5], 1, 1, None),
    ],
)
def test_compiled_depthwise_layers_of_the_shipped_families(kernel, stride, dilation, clamp):
    """Sizes where most pixels are inside the input (the kernel's register-held sums) and the border
    ones are not: bit for bit NumPy's kernel, and the definition."""
    channels, size = 24, 13
    padding = [dilation * (k - 1) // 2 for k in ([kernel] * 2 if isinstance(kernel, int) else kernel)]
    op = REGISTRY["conv2d"](
        name="dw",
        op="conv2d",
        out_channels=channels,
        kernel=kernel,
        stride=stride,
        dilation=dilation,
        padding=padding,
        groups=channels,
    )
    rng = np.random.default_rng(7)
    tensors = {k: rng.normal(size=s).astype(np.float32) for k, s in op.param_shapes([(channels, size, size)]).items()}
    x = rng.normal(size=(1, size, size, channels)).astype(np.float32).transpose(0, 3, 1, 2)

    def run():
        with fast():
            return op.forward_fused([x], Weights(tensors, "dw"), MatMul(), None, clamp)

    got = run()
    np.testing.assert_array_equal(got, _without_jit(run))
    strides, dilations = op.stride, op.dilation
    want = naive.conv2d(x, tensors["weight"], tensors["bias"], (strides,) * 2, padding, (dilations,) * 2, channels)
    np.testing.assert_allclose(got, _clamped(want, clamp), rtol=1e-5, atol=1e-5)


@settings(max_examples=80, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 17), st.integers(1, 40)),
    channels_last=st.booleans(),
    scale=st.booleans(),
    bias=st.booleans(),
    clamp=st.sampled_from([None, RELU, RELU6, Activation(-1.5, 2.0)]),
    specials=st.booleans(),
    residual=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_compiled_epilogue_is_numpys_passes_bit_for_bit(
    shape, channels_last, scale, bias, clamp, specials, residual, seed
):
    rng = np.random.default_rng(seed)
    out = (rng.normal(size=shape) * 8).astype(np.float32)
    if specials:  # NaN stays NaN through a clamp, as through np.maximum and np.clip; infinities clamp
        out.flat[rng.integers(0, out.size, 3)] = [np.nan, np.inf, -np.inf]
    channels = shape[2] if channels_last else shape[1]
    vectors = {
        "scale": rng.normal(size=channels).astype(np.float32) if scale else None,
        "bias": rng.normal(size=channels).astype(np.float32) if bias else None,
    }

    other = rng.normal(size=shape).astype(np.float32) if residual else None

    def run():
        y = out.copy()
        with fast():
            compiled.epilogue(y, vectors["scale"], vectors["bias"], clamp, channels_last, residual=other)
        return y

    got = run()
    np.testing.assert_array_equal(got, _without_jit(run))
    # and the formula, written out with explicit broadcasting
    along = (1, 1, channels) if channels_last else (1, channels, 1)
    want = out.copy()
    if scale:
        want = want * vectors["scale"].reshape(along)
    if bias:
        want = want + vectors["bias"].reshape(along)
    if residual:
        want = want + other
    np.testing.assert_array_equal(got, _clamped(want, clamp))
    if residual:
        assert not np.shares_memory(got, other)


def test_measurement_never_runs_compiled_code(monkeypatch):
    """Outside the fast path the epilogue is NumPy's, whatever kernels() says."""
    called = []
    monkeypatch.setattr(compiled, "kernels", lambda: called.append(1))
    y = np.ones((1, 2, 3), dtype=np.float32)
    compiled.epilogue(y, None, np.array([1.0, -5.0], dtype=np.float32), RELU)
    np.testing.assert_array_equal(y, [[[2, 2, 2], [0, 0, 0]]])
    assert called == []


def test_without_numba_the_kernels_are_numpys(monkeypatch):
    """numba missing (an import that fails) gives None, and the callers keep their NumPy kernels."""
    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` now raises ImportError
    monkeypatch.delitem(sys.modules, "archspec.ops._jit_kernels", raising=False)
    monkeypatch.delattr(archspec.ops, "_jit_kernels", raising=False)
    compiled.kernels.cache_clear()
    assert compiled.kernels() is None


def _fusions(expected: dict) -> dict:
    """A fusion plan written as {producer: (affine, activation[, add, residual])}."""
    return {name: reference.Fusion(*followers) for name, followers in expected.items()}


def _conv_relu_spec(read_twice: bool, keep_bn: bool) -> dict:
    nodes = [
        {"name": "c1", "op": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "bias": False},
        {"name": "bn1", "op": "batch_norm"},
        {"name": "r1", "op": "relu"},
        {"name": "c2", "op": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "groups": 4},
        {"name": "r2", "op": "relu6"},
    ]
    if read_twice:  # the add needs c2's output before its ReLU6
        nodes.append({"name": "sum", "op": "add", "inputs": ["c2", "r2"]})
    nodes += [
        {"name": "fc_in", "op": "flatten"},
        {"name": "fc", "op": "linear", "out_features": 3},
        {"name": "r3", "op": "relu"},
    ]
    spec = {"name": "fusions", "input": [2, 5, 5], "nodes": nodes}
    if keep_bn:
        spec["outputs"] = ["bn1", "r3"]
    return spec


@pytest.mark.parametrize(
    ("read_twice", "keep_bn", "want"),
    [
        (False, False, {"c1": ("bn1", "r1"), "c2": (None, "r2"), "fc": (None, "r3")}),
        # c2's output is read by the add too: nothing may change it
        (True, False, {"c1": ("bn1", "r1"), "fc": (None, "r3")}),
        # bn1 is an output of its own: it runs as itself, and the ReLU after it on its own
        (False, True, {"c1": ("bn1", None), "c2": (None, "r2"), "fc": (None, "r3")}),
    ],
)
def test_which_followers_a_kernel_absorbs(read_twice, keep_bn, want):
    model = archspec.load(_conv_relu_spec(read_twice, keep_bn))
    graph = model.graph
    plan = reference._absorbers(graph, list(graph.order), lambda n: n in graph.outputs, set())
    assert plan == _fusions(want)


@pytest.mark.parametrize(("read_twice", "keep_bn"), [(False, False), (True, False), (False, True)])
def test_fused_relus_give_the_unfused_output_without_running_their_kernels(monkeypatch, read_twice, keep_bn):
    model = archspec.load(_conv_relu_spec(read_twice, keep_bn))
    weights = model.init_weights(2)
    x = np.random.default_rng(3).normal(size=(2, 2, 5, 5)).astype(np.float32)
    outputs = model.graph.outputs
    unfused = reference.run(model.graph, x, weights, keep=lambda n: n in outputs)
    ran = []
    for name in ("ReLU", "ReLU6"):
        cls = type(REGISTRY[name.lower()].model_construct())
        for method in ("forward", "forward_in_place"):
            original = getattr(cls, method)

            def spy(self, *args, _original=original):
                ran.append(self.name)
                return _original(self, *args)

            monkeypatch.setattr(cls, method, spy)
    with fast():
        fused = reference.run(model.graph, x, weights, keep=lambda n: n in outputs, fuse=True)
    for name in outputs:
        np.testing.assert_allclose(fused[name], unfused[name], rtol=1e-5, atol=1e-5)
    absorbed = {"r1", "r2", "r3"} - ({"r2"} if read_twice else set()) - ({"r1"} if keep_bn else set())
    assert sorted(ran) == sorted({"r1", "r2", "r3"} - absorbed)


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 9), st.integers(1, 6), st.integers(1, 6)),
    layouts=st.sampled_from(["first", "last", "mixed", "strided"]),
    clamp=st.sampled_from([RELU, RELU6]),
    seed=st.integers(0, 2**16),
)
def test_add_then_clamp_is_numpys_add_and_relu_bit_for_bit(shape, layouts, clamp, seed):
    """Dense inputs laid out alike take the compiled pass; the rest (layouts that differ, a strided
    view) NumPy's add and clamp. Either way: the sum, clamped."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    first = rng.normal(size=shape).astype(np.float32)
    last = rng.normal(size=(n, h, w, c)).astype(np.float32).transpose(0, 3, 1, 2)
    a, b = {
        "first": (first, first[:, ::-1].copy()),
        "last": (last, last + 1),
        "mixed": (first, last),
        "strided": (rng.normal(size=(n, c, h, 2 * w)).astype(np.float32)[..., ::2], first),
    }[layouts]
    op = REGISTRY["add"](name="sum", op="add", inputs=["a", "b"])
    with fast():
        got = op.forward_fused([a, b], Weights({}, "sum"), MatMul(), None, clamp)
    np.testing.assert_array_equal(got, _clamped(a + b, clamp))
    assert got.shape == shape and got.dtype == np.float32
    # the inputs are left as they were (the sum is a new array)
    assert not np.shares_memory(got, a) and not np.shares_memory(got, b)


def _bn(weights, name, y):
    g, b, m, v = (
        weights[f"{name}.{t}"].reshape(1, -1, 1, 1) for t in ("weight", "bias", "running_mean", "running_var")
    )
    return (y - m) / np.sqrt(v + 1e-5) * g + b


@pytest.mark.parametrize("kernel", [1, 3])  # 1x1: the add in the epilogue's pass; 3x3 (Winograd): one more pass
@pytest.mark.parametrize("swapped", [False, True])  # the add's inputs in either order
def test_a_conv_absorbs_its_batch_norm_the_residual_add_and_the_relu(monkeypatch, kernel, swapped):
    """A residual block's conv -> batch norm -> add(., identity) -> ReLU runs as the conv's kernel: the add and
    the ReLU never run, and the output is the block's formula."""
    add_inputs = ["input", "bn1"] if swapped else ["bn1", "input"]
    spec = {
        "name": "block",
        "input": [32, 6, 6],
        "nodes": [
            {"name": "c1", "op": "conv2d", "out_channels": 32, "kernel": kernel, "padding": kernel // 2, "bias": False},
            {"name": "bn1", "op": "batch_norm"},
            {"name": "sum", "op": "add", "inputs": add_inputs},
            {"name": "out", "op": "relu"},
        ],
    }
    model = archspec.load(spec)
    graph = model.graph
    assert reference._absorbers(graph, list(graph.order), lambda n: n in graph.outputs, set()) == _fusions(
        {"c1": ("bn1", "out", "sum", "input")}
    )
    ran = []
    for op_name in ("add", "relu"):
        cls = type(REGISTRY[op_name].model_construct())
        for method in ("forward", "forward_fused", "forward_in_place"):
            if hasattr(cls, method):
                monkeypatch.setattr(cls, method, lambda self, *a, **k: ran.append(self.name))
    weights = model.init_weights(1)
    x = np.random.default_rng(2).normal(size=(2, 32, 6, 6)).astype(np.float32)
    y = naive.conv2d(x, weights["c1.weight"], None, (1, 1), (kernel // 2,) * 2, (1, 1), 1)
    want = np.maximum(_bn(weights, "bn1", y) + x, 0)
    np.testing.assert_allclose(model.forward(x, weights), want, rtol=1e-4, atol=1e-4)
    assert ran == []


def test_a_downsampling_block_adds_in_its_shortcut_conv():
    """ResNet's first block of a stage: conv -> bn -> [shortcut conv -> bn] -> add -> ReLU, the shortcut last
    in the spec (torchvision's order). The main branch's conv cannot take the add (the shortcut does not exist
    yet when it runs); the shortcut's conv takes it, with the main branch's output as the residual."""
    spec = {
        "name": "down",
        "input": [8, 6, 6],
        "nodes": [
            {"name": "c1", "op": "conv2d", "out_channels": 16, "kernel": 3, "stride": 2, "padding": 1, "bias": False},
            {"name": "bn1", "op": "batch_norm"},
            {
                "name": "ds",
                "op": "conv2d",
                "out_channels": 16,
                "kernel": 1,
                "stride": 2,
                "bias": False,
                "inputs": ["input"],
            },
            {"name": "bnd", "op": "batch_norm"},
            {"name": "sum", "op": "add", "inputs": ["bn1", "bnd"]},
            {"name": "out", "op": "relu"},
        ],
    }
    model = archspec.load(spec)
    graph = model.graph
    assert reference._absorbers(graph, list(graph.order), lambda n: n in graph.outputs, set()) == _fusions(
        {"c1": ("bn1", None), "ds": ("bnd", "out", "sum", "bn1")}
    )
    weights = model.init_weights(3)
    x = np.random.default_rng(4).normal(size=(1, 8, 6, 6)).astype(np.float32)
    main = _bn(weights, "bn1", naive.conv2d(x, weights["c1.weight"], None, (2, 2), (1, 1), (1, 1), 1))
    shortcut = _bn(weights, "bnd", naive.conv2d(x, weights["ds.weight"], None, (2, 2), (0, 0), (1, 1), 1))
    np.testing.assert_allclose(model.forward(x, weights), np.maximum(main + shortcut, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    ("nodes", "want"),
    [
        # two convs into one add: the one that runs later takes it, the other's output as its residual
        (
            [
                {"name": "c1", "op": "conv2d", "out_channels": 4, "kernel": 1},
                {"name": "c2", "op": "conv2d", "out_channels": 4, "kernel": 1, "inputs": ["input"]},
                {"name": "sum", "op": "add", "inputs": ["c1", "c2"]},
                {"name": "out", "op": "relu"},
            ],
            {"c2": (None, "out", "sum", "c1")},
        ),
        # the conv's output is also read by something else: nothing may change it
        (
            [
                {"name": "c1", "op": "conv2d", "out_channels": 4, "kernel": 1},
                {"name": "sum", "op": "add", "inputs": ["c1", "input"]},
                {"name": "both", "op": "add", "inputs": ["sum", "c1"]},
            ],
            {},
        ),
        # a sum of three: not a residual add
        (
            [
                {"name": "c1", "op": "conv2d", "out_channels": 4, "kernel": 1},
                {"name": "sum", "op": "add", "inputs": ["c1", "input", "input"]},
            ],
            {},
        ),
    ],
)
def test_which_residual_adds_a_conv_absorbs(nodes, want):
    model = archspec.load({"name": "adds", "input": [4, 3, 3], "nodes": nodes})
    graph = model.graph
    plan = reference._absorbers(graph, list(graph.order), lambda n: n in graph.outputs, set())
    assert {k: v for k, v in plan.items() if v.add is not None} == _fusions(want)
    weights = model.init_weights(0)
    x = np.random.default_rng(1).normal(size=(2, 4, 3, 3)).astype(np.float32)
    out = graph.outputs[0]
    unfused = reference.run(graph, x, weights, keep=lambda n: n == out)[out]
    np.testing.assert_allclose(model.forward(x, weights), unfused, rtol=1e-5, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 2), st.integers(1, 9), st.integers(1, 6), st.integers(1, 6)),
    layout=st.sampled_from(["first", "last", "strided"]),
    clamp=st.sampled_from([RELU, RELU6]),
    seed=st.integers(0, 2**16),
)
def test_a_batch_norm_and_its_relu_in_one_pass_are_the_two_kernels(shape, layout, clamp, seed):
    """DenseNet's concat -> batch norm -> ReLU: the norm absorbs the ReLU; the result must be its own
    kernel's output clamped, bit for bit, in any input layout, and the input must be left alone."""
    rng = np.random.default_rng(seed)
    n, c, h, w = shape
    x = {
        "first": rng.normal(size=shape),
        "last": rng.normal(size=(n, h, w, c)).transpose(0, 3, 1, 2),
        "strided": rng.normal(size=(n, c, h, 2 * w))[..., ::2],
    }[layout].astype(np.float32)
    before = x.copy()
    op = REGISTRY["batch_norm"](name="bn", op="batch_norm")
    tensors = {k: op.init_tensor(k, s, rng).astype(np.float32) for k, s in op.param_shapes([(c, h, w)]).items()}
    tensors |= {k: op.init_tensor(k, s, rng).astype(np.float32) for k, s in op.buffer_shapes([(c, h, w)]).items()}
    with fast():
        got = op.forward_fused([x], Weights(tensors, "bn"), MatMul(), None, clamp)
    want = _clamped(op.forward([x], Weights(tensors, "bn"), MatMul()), clamp)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(x, before)
    mean, var = tensors["running_mean"], tensors["running_var"]
    formula = (x - mean.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + 1e-5)
    formula = formula * tensors["weight"].reshape(1, -1, 1, 1) + tensors["bias"].reshape(1, -1, 1, 1)
    np.testing.assert_allclose(got, _clamped(formula, clamp), rtol=1e-5, atol=1e-5)


def test_a_batch_norm_after_a_concat_absorbs_its_relu():
    spec = {
        "name": "dense",
        "input": [2, 5, 5],
        "nodes": [
            {"name": "c1", "op": "conv2d", "out_channels": 3, "kernel": 3, "padding": 1},
            {"name": "cat", "op": "concat", "inputs": ["input", "c1"]},
            {"name": "bn", "op": "batch_norm"},
            {"name": "relu", "op": "relu"},
            {"name": "c2", "op": "conv2d", "out_channels": 2, "kernel": 1},
        ],
    }
    model = archspec.load(spec)
    graph = model.graph
    assert reference._absorbers(graph, list(graph.order), lambda n: n in graph.outputs, set()) == _fusions(
        {"bn": (None, "relu")}
    )  # c1's output goes to the concat: nothing absorbed there
    weights = model.init_weights(4)
    x = np.random.default_rng(5).normal(size=(2, 2, 5, 5)).astype(np.float32)
    unfused = reference.run(graph, x, weights, keep=lambda n: n == "c2")["c2"]
    np.testing.assert_allclose(model.forward(x, weights), unfused, rtol=1e-5, atol=1e-5)


def _exact_silu(x: np.ndarray) -> np.ndarray:
    x64 = x.astype(np.float64)
    with np.errstate(over="ignore"):
        return x64 / (1 + np.exp(-x64))


def _unit(exact: np.ndarray) -> np.ndarray:
    """The unit in the last place of float32 at each exact value: 2^(e - 24) for |exact| in [2^(e - 1), 2^e),
    and 2^-149 among the subnormal numbers."""
    _, exponent = np.frexp(exact)
    return np.ldexp(1.0, np.maximum(exponent - 24, -149))


def _ulps(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    """|got - exact| in units of the last place of float32 at the exact value."""
    return np.abs(got.astype(np.float64) - exact) / _unit(exact)


# Where exp(-x) overflows float32 (x below -ln(3.4e38) = -88.72) x / (1 + exp(-x)) is -0, in NumPy's
# formula as in the compiled one (and PyTorch's), though the exact value is a tiny normal number.
SILU_OVERFLOW = float(np.float32(-88.7228))


def test_compiled_silu_is_within_two_and_a_half_ulps_of_the_exact_value():
    """The bound is an error budget written out by hand, not a measured figure: exp(-v) rounded within about
    1 ulp (Cephes' expf polynomial on |f| <= ln 2 / 2, its 2^n scaling exact), then 1 + exp(-v) and the
    division each one rounding (0.5 ulp each): 2 ulp, plus a little for the float32 reduction of -v / ln 2.
    (NumPy's own four passes, with one more rounding, reach 3.46 on this grid.)"""
    x = np.linspace(SILU_OVERFLOW, 100, 2_000_001, dtype=np.float32)
    x = np.concatenate([x, -x[x < 0], np.float32(2.0) ** np.arange(-149, 7, dtype=np.float32)])
    x = np.concatenate([x, -x])
    x = x[x >= SILU_OVERFLOW]
    with fast():
        got = compiled.silu_compiled(x)
    assert got is not None and got.dtype == np.float32
    assert _ulps(got, _exact_silu(x)).max() <= 2.5


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(SILU_OVERFLOW, allow_nan=False, allow_infinity=False, width=32), min_size=1, max_size=50))
def test_compiled_silu_of_any_float_is_within_two_and_a_half_ulps(values):
    x = np.array(values, dtype=np.float32)
    with fast():
        got = compiled.silu_compiled(x.copy(), in_place=True)
    assert _ulps(got, _exact_silu(x)).max() <= 2.5


def test_compiled_silu_limits_are_numpys():
    """NaN stays NaN; silu(inf) = inf; silu(-inf) = -inf / inf = NaN; below the overflow, -0; -0 stays -0."""
    x = np.array([np.nan, np.inf, -np.inf, -89.0, -100.0, -3e38, -0.0, 0.0], dtype=np.float32)
    with fast():
        got = compiled.silu_compiled(x)
    with np.errstate(invalid="ignore"):  # (NumPy's -inf / inf)
        want = _without_jit(lambda: REGISTRY["silu"](name="s", op="silu").forward([x], Weights({}, "s"), MatMul()))
    np.testing.assert_array_equal(got, want)
    assert np.array_equal(np.signbit(got), np.signbit(want))


@pytest.mark.parametrize("layout", ["first", "last"])
def test_the_epilogue_applies_silu(layout):
    """A conv's epilogue with SiLU: y = source * scale + bias (LLVM may fuse the multiply-add, see
    SILU_FASTMATH: y is then rounded once or twice), then SiLU within 2.5 ulps of exact; and close to
    NumPy's passes."""
    rng = np.random.default_rng(11)
    shape = (2, 7, 30) if layout == "first" else (2, 30, 7)
    source = (rng.normal(size=shape) * 6).astype(np.float32)
    scale, bias = rng.normal(size=(2, 7)).astype(np.float32)
    along = (1, -1, 1) if layout == "first" else (1, 1, -1)
    product = source.astype(np.float64) * scale.reshape(along)  # exact: float32 products fit in float64
    exact = _exact_silu(product + bias.reshape(along))
    out = np.empty_like(source)
    with fast():
        compiled.epilogue(out, scale, bias, SILU, layout == "last", source=source)
    # y's roundings (at most 1 ulp of the larger term each) move SiLU by at most 1.1 times as much (|silu'| < 1.1)
    rounding = 2 * 1.1 * np.finfo(np.float32).eps * (np.abs(product) + np.abs(bias.reshape(along)))
    assert (np.abs(out - exact) <= 2.5 * _unit(exact) + rounding).all()
    numpy_out = np.empty_like(source)
    _without_jit(lambda: compiled.epilogue(numpy_out, scale, bias, SILU, layout == "last", source=source))
    np.testing.assert_allclose(out, numpy_out, rtol=1e-6, atol=1e-6)


def test_a_conv_absorbs_its_batch_norm_and_silu(monkeypatch):
    """EfficientNet's conv -> batch norm -> SiLU chains (pointwise, depthwise, and a squeeze-and-excitation
    conv with a bias straight into SiLU) run as their convs' kernels: the SiLU kernels never run, and the
    output is the unfused graph's."""
    spec = {
        "name": "mbconv",
        "input": [4, 9, 9],
        "nodes": [
            {"name": "expand", "op": "conv2d", "out_channels": 12, "kernel": 1, "bias": False},
            {"name": "bn1", "op": "batch_norm"},
            {"name": "act1", "op": "silu"},
            {"name": "dw", "op": "conv2d", "out_channels": 12, "kernel": 5, "padding": 2, "groups": 12, "bias": False},
            {"name": "bn2", "op": "batch_norm"},
            {"name": "act2", "op": "silu"},
            {"name": "squeeze", "op": "adaptive_avg_pool2d", "output_size": 1},
            {"name": "fc1", "op": "conv2d", "out_channels": 3, "kernel": 1},
            {"name": "act3", "op": "silu"},
            {"name": "fc2", "op": "conv2d", "out_channels": 12, "kernel": 1},
            {"name": "gate", "op": "sigmoid"},
            {"name": "scaled", "op": "mul", "inputs": ["act2", "gate"]},
            {"name": "project", "op": "conv2d", "out_channels": 4, "kernel": 1, "bias": False},
            {"name": "bn3", "op": "batch_norm"},
        ],
    }
    model = archspec.load(spec)
    graph = model.graph
    assert reference._absorbers(graph, list(graph.order), lambda n: n in graph.outputs, set()) == _fusions(
        {
            "expand": ("bn1", "act1"),
            "dw": ("bn2", "act2"),  # (act2's output is read twice: it is dw's fused output)
            "fc1": (None, "act3"),
            "fc2": ("gate", None),  # planned as an affine; the sigmoid's channel_affine says no at run time
            "project": ("bn3", None),
        }
    )
    weights = model.init_weights(3)
    x = np.random.default_rng(4).normal(size=(2, 4, 9, 9)).astype(np.float32)
    unfused = reference.run(graph, x, weights, keep=lambda n: n == "bn3")["bn3"]
    silu = type(REGISTRY["silu"].model_construct())
    ran = []
    for method in ("forward", "forward_in_place"):
        monkeypatch.setattr(silu, method, lambda self, *args: ran.append(self.name))
    np.testing.assert_allclose(model.forward(x, weights), unfused, rtol=1e-5, atol=1e-5)
    assert ran == []


def test_verify_never_imports_numba(tmp_path):
    """Measurement takes none of the fast path's kernels, so `verify` must not even import numba (0.3 s):
    a 3x3 conv wide enough for Winograd, a depthwise conv and a SiLU, verified in a fresh process."""
    spec = tmp_path / "wide.yaml"
    spec.write_text(
        "name: wide\n"
        "input: [32, 14, 14]\n"
        "nodes:\n"
        "  - {name: c1, op: conv2d, out_channels: 32, kernel: 3, padding: 1}\n"
        "  - {name: dw, op: conv2d, out_channels: 32, kernel: 3, padding: 1, groups: 32}\n"
        "  - {name: act, op: silu}\n"
    )
    code = (
        "import sys\n"
        "from archspec.verify import verify_spec\n"
        f"report = verify_spec({str(spec)!r}, samples=20)\n"
        "print('numba' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "False"


@settings(max_examples=60, deadline=None)
@given(
    channels=st.integers(1, 40),
    affine=st.booleans(),
    eps=st.sampled_from([1e-5, 1e-3, 0.1]),
    seed=st.integers(0, 2**16),
)
def test_compiled_batch_norm_affine_is_numpys_bit_for_bit(channels, affine, eps, seed):
    """A batch norm's (scale, shift) at inference, asked by every fused conv on every call: the compiled
    form computes NumPy's operations in NumPy's order (float64, rounded once)."""
    rng = np.random.default_rng(seed)
    op = REGISTRY["batch_norm"](name="bn", op="batch_norm", affine=affine, eps=eps)
    tensors = {"running_mean": rng.normal(size=channels), "running_var": rng.uniform(0.01, 3, size=channels)}
    if affine:
        tensors |= {"weight": rng.normal(size=channels), "bias": rng.normal(size=channels)}
    tensors = {k: v.astype(np.float32) for k, v in tensors.items()}
    with fast():
        scale, shift = op.channel_affine(Weights(tensors, "bn"), channels)
    numpy_scale, numpy_shift = op.channel_affine(Weights(tensors, "bn"), channels)  # (outside the fast path)
    np.testing.assert_array_equal(scale, numpy_scale)
    np.testing.assert_array_equal(shift, numpy_shift)
    assert scale.dtype == shift.dtype == np.float32
    gamma = tensors["weight"].astype(np.float64) if affine else 1.0
    want = gamma / np.sqrt(tensors["running_var"].astype(np.float64) + eps)
    np.testing.assert_allclose(scale, want, rtol=1e-7)


@settings(max_examples=80, deadline=None)
@given(
    batch=st.integers(1, 2),
    channels=st.integers(1, 3),
    size=st.tuples(st.integers(1, 12), st.integers(1, 12)),
    kernel=st.tuples(st.integers(1, 4), st.integers(1, 4)),
    stride=st.tuples(st.integers(1, 3), st.integers(1, 3)),
    padding=st.tuples(st.integers(0, 2), st.integers(0, 2)),
    ceil_mode=st.booleans(),
    specials=st.lists(st.sampled_from([np.nan, np.inf, -np.inf]), max_size=3),
    seed=st.integers(0, 2**16),
)
def test_compiled_max_pooling_is_numpys_bit_for_bit_and_the_definition(
    batch, channels, size, kernel, stride, padding, ceil_mode, specials, seed
):
    """The compiled max pool (one pass, no padded copy) against NumPy's running maximum over strided views
    and against naive loops, NaN and infinities included (a NaN in a window makes that window's maximum NaN,
    as np.maximum and torch do)."""
    assume(all(padding[a] <= kernel[a] // 2 for a in range(2)))  # PyTorch's limit on a pool's padding
    assume(all(size[a] + 2 * padding[a] >= kernel[a] for a in range(2)))
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, channels, *size)).astype(np.float32)
    for value in specials:
        x.flat[rng.integers(x.size)] = value
    numpy = _without_jit(lambda: windows.window_max(x, kernel, stride, padding, ceil_mode))
    with fast():
        fast_out = windows.window_max(x, kernel, stride, padding, ceil_mode)
    calls = []
    original = compiled.kernels().max_pool
    with fast(), mock.patch.object(compiled.kernels(), "max_pool", lambda *a: calls.append(1) or original(*a)):
        windows.window_max(x, kernel, stride, padding, ceil_mode)
    assert calls == [1]  # the compiled kernel ran
    np.testing.assert_array_equal(fast_out, numpy)  # NaN where NumPy has NaN, equal elsewhere
    # The definition: NaN where a window holds a NaN (naive loops over the NaN mask), else its largest value.
    has_nan = naive.pool2d(np.isnan(x).astype(np.float64), "max", kernel, stride, padding, ceil_mode) > 0
    largest = naive.pool2d(np.where(np.isnan(x), -np.inf, x), "max", kernel, stride, padding, ceil_mode)
    np.testing.assert_array_equal(fast_out, np.where(has_nan, np.nan, largest).astype(np.float32))


def test_max_pooling_outside_the_fast_path_is_numpys(monkeypatch):
    called = []
    monkeypatch.setattr(compiled, "kernels", lambda: called.append(1))
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(windows.window_max(x, (2, 2), (2, 2), (0, 0), False), [[[[5, 7], [13, 15]]]])
    assert called == []
