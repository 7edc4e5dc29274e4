"""Issue 7's ops: each vectorized kernel equals a loop written from PyTorch's documented formula
(tests/naive.py), and its static rules agree with what the kernel does."""

from __future__ import annotations

import math

import naive
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import archspec
from archspec.ops import OP_ADAPTER, MatMul, ShapeError, Weights
from archspec.ops.activation import erfc
from archspec.verify import verify_spec

SETTINGS = settings(max_examples=60, deadline=None)
META = {"source": "test"}


def make(**fields):
    return OP_ADAPTER.validate_python({"name": "n", "inputs": ["input"], **fields})


def run(op, *xs, tensors=None):
    mm = MatMul()
    w = Weights(tensors or {}, "n")
    return op.forward(list(xs), w, mm), w, mm


# Finite float32 values, with the activations' interesting points (0, +-3, +-6) and large magnitudes.
VALUES = st.one_of(
    st.sampled_from([0.0, -0.0, 3.0, -3.0, 6.0, -6.0, 1e-3, -1e-3, 40.0, -40.0, 100.0, -100.0]),
    st.floats(-12, 12, width=32),
)
MAPS = arrays(
    np.float32, st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)), elements=VALUES
)


ACTIVATIONS = {
    "relu6": ({"op": "relu6"}, naive.relu6),
    "sigmoid": ({"op": "sigmoid"}, naive.sigmoid),
    "hardsigmoid": ({"op": "hardsigmoid"}, naive.hardsigmoid),
    "hardswish": ({"op": "hardswish"}, naive.hardswish),
    "silu": ({"op": "silu"}, naive.silu),
    "gelu": ({"op": "gelu"}, naive.gelu),
    "gelu_tanh": ({"op": "gelu", "approximate": "tanh"}, naive.gelu_tanh),
}


@pytest.mark.parametrize("name", ACTIVATIONS)
@SETTINGS
@given(x=MAPS)
def test_activation_matches_its_definition(name, x):
    fields, fn = ACTIVATIONS[name]
    op = make(**fields)
    got, w, mm = run(op, x)
    want = naive.elementwise(x, fn)
    assert got.dtype == np.float32 and got.shape == x.shape
    # float32 round-off of the result (and of the float32 formula's intermediate steps)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)
    assert mm.macs == 0 and w.trainable_read == {}
    assert op.output_shape([x.shape[1:]]) == x.shape[1:]
    assert op.macs([x.shape[1:]], x.shape[1:]) == 0 and op.param_shapes([x.shape[1:]]) == {}
    if op.in_place:  # the in-place kernel writes the same numbers into its input
        y = x.copy()
        out = op.forward_in_place(y)
        assert out is y or out.base is y
        np.testing.assert_array_equal(y, got)


def test_in_place_activations_are_torchvisions():
    """torchvision builds ReLU6, SiLU and Hardswish with inplace=True (Conv2dNormActivation);
    Sigmoid, Hardsigmoid (in its SE gates) and GELU run out of place."""
    in_place = {name for name, (fields, _) in ACTIVATIONS.items() if make(**fields).in_place}
    assert in_place == {"relu6", "silu", "hardswish"}


def test_erfc_is_accurate_to_float32_round_off():
    x = np.concatenate([np.linspace(-26, 26, 200_001), [0.0, 1e-8, -1e-8, 0.5, -0.5]])
    want = np.array([math.erfc(v) for v in x])
    got = erfc(x)
    assert np.all(np.abs(got - want) <= 1.2e-7 * want)  # Numerical Recipes' bound for erfcc


@SETTINGS
@given(st.floats(-30, 30))
def test_erfc_on_any_point(v):
    assert abs(erfc(np.array([v]))[0] - math.erfc(v)) <= 1.2e-7 * math.erfc(v)


@st.composite
def mul_case(draw):
    n, c, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["same", "gate_first", "gate_second"]))
    gate = (n, c, 1, 1)
    shapes = {
        "same": ((n, c, h, w), (n, c, h, w)),
        "gate_first": (gate, (n, c, h, w)),
        "gate_second": ((n, c, h, w), gate),
    }
    a_shape, b_shape = shapes[kind]
    a = draw(arrays(np.float32, a_shape, elements=st.floats(-5, 5, width=32)))
    b = draw(arrays(np.float32, b_shape, elements=st.floats(-5, 5, width=32)))
    return a, b


@SETTINGS
@given(mul_case())
def test_mul_matches_its_definition(case):
    a, b = case
    op = make(op="mul", inputs=["a", "b"])
    got, _, mm = run(op, a, b)
    want = naive.mul(a, b)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    assert op.output_shape([a.shape[1:], b.shape[1:]]) == want.shape[1:]
    assert mm.macs == 0


def test_mul_refuses_shapes_that_do_not_broadcast_as_a_gate():
    op = make(op="mul", inputs=["a", "b"])
    for a, b in [((4, 8, 8), (2, 1, 1)), ((4, 8, 8), (4, 8, 1)), ((4, 8, 8), (4, 4, 4)), ((4,), (4, 1, 1))]:
        with pytest.raises(ShapeError):
            op.output_shape([a, b])


def test_mul_probe_is_a_sum():
    """0 * anything = 0: the probe's baseline (all-zero inputs) would hide that a lit map pixel
    matters when the gate is 0, so the probe runs a sum of the same inputs."""
    op, count = make(op="mul", inputs=["a", "b"]).probe()
    gate, lit = np.zeros((1, 1, 1, 1), np.float32), np.ones((1, 1, 2, 2), np.float32)
    assert count == 1 and np.array_equal(op.forward([gate, lit], Weights({}, "n"), MatMul()), lit)


def _small_maps(max_channels: int):
    """float32 N x C x H x W arrays with values in [-4, 4]: 1-2 images, up to 3 x 3 pixels."""
    dims = st.tuples(st.integers(1, 2), st.integers(1, max_channels), st.integers(1, 3), st.integers(1, 3))
    return arrays(np.float32, dims, elements=st.floats(-4, 4, width=32))


@SETTINGS
@given(_small_maps(5), st.sampled_from([1e-5, 1e-6, 1e-3]), st.booleans(), st.booleans(), st.integers(0, 2**16))
def test_layer_norm_matches_its_definition(x, eps, affine, flat, seed):
    if flat:
        x = x.reshape(x.shape[0], -1)
    c = x.shape[1]
    rng = np.random.default_rng(seed)
    weight, bias = rng.uniform(0.5, 1.5, c).astype(np.float32), rng.normal(size=c).astype(np.float32)
    op = make(op="layer_norm", eps=eps, affine=affine)
    got, w, _ = run(op, x, tensors={"weight": weight, "bias": bias} if affine else {})
    want = naive.layer_norm(x, weight if affine else None, bias, eps)
    # A constant pixel over few channels normalizes 0 / sqrt(eps): float32 leaves round-off of the
    # mean there, scaled by 1 / sqrt(eps).
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-3)
    assert op.param_shapes([x.shape[1:]]) == ({"weight": (c,), "bias": (c,)} if affine else {})
    assert sum(w.trainable_read.values()) == (2 * c if affine else 0)
    assert op.rf_rule([x.shape[1:]]) == ("global" if flat else "pointwise")


@SETTINGS
@given(_small_maps(4), st.sampled_from([1e-5, 1e-6, 1e-3]), st.booleans(), st.integers(0, 2**16))
def test_layer_norm_over_the_image_matches_its_definition(x, eps, affine, seed):
    shape = x.shape[1:]
    rng = np.random.default_rng(seed)
    weight, bias = rng.uniform(0.5, 1.5, shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
    op = make(op="layer_norm", eps=eps, affine=affine, over="image")
    got, w, _ = run(op, x, tensors={"weight": weight, "bias": bias} if affine else {})
    want = naive.layer_norm_image(x, weight if affine else None, bias, eps)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-3)  # a constant image: round-off / sqrt(eps)
    assert op.param_shapes([shape]) == ({"weight": shape, "bias": shape} if affine else {})
    assert sum(w.trainable_read.values()) == (2 * x[0].size if affine else 0)
    assert op.rf_rule([shape]) == "global" and op.size_dependent
    assert op.train_saves([shape], shape).saved[1].elements == 1  # one mean (and rstd) per image


def test_layer_norm_over_the_image_by_hand():
    # One image of 2 x 1 x 2 values [[1, 3]], [[5, 7]]: mean 4, biased variance (9 + 1 + 1 + 9) / 4 = 5.
    x = np.array([1.0, 3.0, 5.0, 7.0], np.float32).reshape(1, 2, 1, 2)
    weight = np.array([1.0, 2.0, 1.0, 1.0], np.float32).reshape(2, 1, 2)
    bias = np.array([0.0, 0.0, 0.0, 0.5], np.float32).reshape(2, 1, 2)
    got, _, _ = run(make(op="layer_norm", eps=1e-6, over="image"), x, tensors={"weight": weight, "bias": bias})
    s = 1 / math.sqrt(5 + 1e-6)
    np.testing.assert_allclose(got.ravel(), [-3 * s, -1 * s * 2, 1 * s, 3 * s + 0.5], rtol=1e-6)
    # 2 x (2 x 1 x 2) params; a static analysis counts them
    spec = {
        "name": "t",
        "input": [2, 1, 2],
        "metadata": META,
        "nodes": [{"name": "n", "op": "layer_norm", "over": "image"}],
    }
    assert archspec.load(spec).analyze().totals.params == 8


def test_layer_norm_by_hand():
    # One pixel, channels [1, 3]: mean 2, biased variance 1; eps 0 would give [-1, 1].
    x = np.array([1.0, 3.0], np.float32).reshape(1, 2, 1, 1)
    tensors = {"weight": np.array([2.0, 1.0], np.float32), "bias": np.array([0.5, 0.0], np.float32)}
    got, _, _ = run(make(op="layer_norm", eps=1e-6), x, tensors=tensors)
    s = 1 / math.sqrt(1 + 1e-6)
    np.testing.assert_allclose(got.ravel(), [-s * 2 + 0.5, s], rtol=1e-6)


@SETTINGS
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)),
        elements=st.floats(-3, 3, width=32),
    ),
    st.integers(1, 5),
    st.booleans(),
    st.integers(0, 2**16),
)
def test_per_pixel_linear_matches_its_definition(x, out, bias, seed):
    n, c, h, w = x.shape
    rng = np.random.default_rng(seed)
    weight, b = rng.normal(size=(out, c)).astype(np.float32), rng.normal(size=out).astype(np.float32)
    op = make(op="linear", out_features=out, bias=bias, per_pixel=True)
    got, weights, mm = run(op, x, tensors={"weight": weight, **({"bias": b} if bias else {})})
    np.testing.assert_allclose(got, naive.linear_per_pixel(x, weight, b if bias else None), rtol=1e-5, atol=1e-5)
    assert mm.macs == n * h * w * c * out  # every pixel: in x out multiply-adds
    assert op.macs([(c, h, w)], (out, h, w)) == h * w * c * out
    assert op.output_shape([(c, h, w)]) == (out, h, w)
    assert op.rf_rule([(c, h, w)]) == "pointwise" and not op.size_dependent
    assert make(op="linear", out_features=out).size_dependent  # the plain layer is unchanged


def test_linear_refuses_the_wrong_kind_of_input():
    with pytest.raises(ShapeError, match="flatten") as refused:
        make(op="linear", out_features=3).output_shape([(4, 2, 2)])
    assert "per_pixel" in refused.value.hint
    with pytest.raises(ShapeError, match="C x H x W"):
        make(op="linear", out_features=3, per_pixel=True).output_shape([(4,)])


@SETTINGS
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(0, 2**16))
def test_channel_shuffle_matches_its_definition(groups, per_group, h, seed):
    x = np.random.default_rng(seed).normal(size=(2, groups * per_group, h, 2)).astype(np.float32)
    op = make(op="channel_shuffle", groups=groups)
    got, _, _ = run(op, x)
    np.testing.assert_array_equal(got, naive.channel_shuffle(x, groups))
    assert op.probe()[1] == groups


def test_channel_shuffle_by_hand_and_needs_divisible_channels():
    # 6 channels, 2 groups: [0 1 2 | 3 4 5] -> 0 3 1 4 2 5
    x = np.arange(6, dtype=np.float32).reshape(1, 6, 1, 1)
    got, _, _ = run(make(op="channel_shuffle", groups=2), x)
    assert got.ravel().tolist() == [0, 3, 1, 4, 2, 5]
    with pytest.raises(ShapeError, match="divisible"):
        make(op="channel_shuffle", groups=4).output_shape([(6, 2, 2)])


@SETTINGS
@given(st.integers(1, 9), st.integers(1, 4), st.data())
def test_channel_chunk_matches_torch_chunk(channels, chunks, data):
    size = -(-channels // chunks)
    count = -(-channels // size)  # torch.chunk may return fewer pieces than asked for
    index = data.draw(st.integers(0, count - 1))
    x = np.random.default_rng(channels).normal(size=(2, channels, 2, 3)).astype(np.float32)
    op = make(op="channel_chunk", chunks=chunks, index=index)
    got, _, _ = run(op, x)
    want = naive.channel_chunk(x, chunks, index)
    np.testing.assert_array_equal(got, want)
    assert op.output_shape([x.shape[1:]]) == want.shape[1:]
    assert np.shares_memory(got, x)  # a view, as torch.chunk returns
    with pytest.raises(ShapeError, match="does not exist"):
        make(op="channel_chunk", chunks=chunks, index=count).output_shape([x.shape[1:]])


def test_channel_chunk_by_hand():
    # torch.chunk(5 channels, 3): pieces of ceil(5 / 3) = 2 channels: [0 1] [2 3] [4]
    shapes = [make(op="channel_chunk", chunks=3, index=i).output_shape([(5, 1, 1)]) for i in range(3)]
    assert shapes == [(2, 1, 1), (2, 1, 1), (1, 1, 1)]
    # 6 channels in 4 chunks: pieces of 2, so only 3 exist
    with pytest.raises(ShapeError):
        make(op="channel_chunk", chunks=4, index=3).output_shape([(6, 1, 1)])


def test_layer_scale_and_drop_path_kernels():
    x = np.random.default_rng(0).normal(size=(2, 3, 2, 2)).astype(np.float32)
    gamma = np.array([1e-6, 2.0, -1.0], np.float32).reshape(3, 1, 1)
    got, w, mm = run(make(op="layer_scale"), x, tensors={"": gamma})
    np.testing.assert_array_equal(got, x * gamma)
    assert w.trainable_read == {"": 3} and mm.macs == 0
    dropped, _, _ = run(make(op="drop_path", p=0.3), x)
    assert dropped is x  # torchvision's StochasticDepth returns its input at inference
    huang, _, _ = run(make(op="stochastic_depth", survival=0.7), x)
    np.testing.assert_allclose(huang, 0.7 * x, rtol=1e-6)  # Huang et al. scale at test time


# ---- whole specs ----------------------------------------------------------------------------------

SE_BLOCK = [
    {"name": "conv", "op": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1},
    {"name": "act", "op": "silu"},
    {"name": "pool", "op": "adaptive_avg_pool2d", "output_size": 1},
    {"name": "fc1", "op": "conv2d", "out_channels": 2, "kernel": 1},
    {"name": "relu", "op": "relu"},
    {"name": "fc2", "op": "conv2d", "out_channels": 4, "kernel": 1},
    {"name": "gate", "op": "sigmoid"},
    {"name": "scale", "op": "mul", "inputs": ["gate", "act"]},
    {"name": "project", "op": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1},
]


def test_squeeze_and_excitation_block(write_spec):
    path = write_spec({"name": "se", "input": [3, 16, 16], "metadata": META, "nodes": SE_BLOCK})
    model = archspec.load(path)
    layers = {layer.name: layer for layer in model.analyze().layers}
    # conv 3x3: 4 x 3 x 9 + 4 = 112; fc1: 2 x 4 + 2 = 10; fc2: 4 x 2 + 4 = 12; project: 4 x 4 x 9 + 4 = 148
    assert [layers[n].params for n in ("conv", "fc1", "fc2", "project")] == [112, 10, 12, 148]
    assert layers["scale"].output_shape == (4, 16, 16) and layers["scale"].macs == 0
    # The unit after the gate keeps its local field (3, then 5 after the second 3x3 conv) and is
    # flagged as also receiving global context through the gate.
    rf, after = layers["scale"].receptive_field, layers["project"].receptive_field
    assert rf.size() == (3, 3) and rf.context
    assert after.size() == (5, 5) and after.context
    assert not layers["act"].receptive_field.context
    report = verify_spec(path)
    assert report.passed, report


def _mini_convnext(prob=None):
    """One ConvNeXt block (CNBlock) with torchvision's module names: block.0 depthwise 7x7 conv,
    block.2 LayerNorm (channels-last), block.3 Linear dim -> 4 dim, block.4 GELU, block.5 Linear
    4 dim -> dim, layer_scale, stochastic_depth; block.1 and block.6 are torchvision's Permutes."""
    block = [
        {"name": "f.0.block.0", "op": "conv2d", "out_channels": 4, "kernel": 7, "padding": 3, "groups": 4},
        {"name": "f.0.block.2", "op": "layer_norm", "eps": 1e-6},
        {"name": "f.0.block.3", "op": "linear", "out_features": 16, "per_pixel": True},
        {"name": "f.0.block.4", "op": "gelu"},
        {"name": "f.0.block.5", "op": "linear", "out_features": 4, "per_pixel": True},
        {"name": "f.0.layer_scale", "op": "layer_scale"},
        {"name": "f.0.stochastic_depth", "op": "drop_path", **({"p": prob} if prob is not None else {})},
        {"name": "f.0.add", "op": "add", "inputs": ["input", "f.0.stochastic_depth"]},
    ]
    return {"name": "cnblock", "input": [4, 9, 9], "metadata": META, "nodes": block}


def test_convnext_block_loads_a_torchvision_style_state_dict(write_spec):
    model = archspec.load(write_spec(_mini_convnext(prob=0.1)))
    analysis = model.analyze()
    layers = {layer.name: layer for layer in analysis.layers}
    # Linear 4 -> 16 per pixel on 9 x 9: 81 x 4 x 16 = 5,184 MACs; 16 x 4 + 16 = 80 params.
    assert (layers["f.0.block.3"].macs, layers["f.0.block.3"].params) == (5_184, 80)
    assert layers["f.0.layer_scale"].params == 4 and dict(layers["f.0.layer_scale"].param_tensors) == {"": 4}
    weights = model.init_weights(0)
    assert "f.0.layer_scale" in weights and weights["f.0.layer_scale"].shape == (4, 1, 1)
    assert "f.0.block.3.weight" in weights and weights["f.0.block.3.weight"].shape == (16, 4)  # (out, in)
    x = np.random.default_rng(1).normal(size=(2, 4, 9, 9)).astype(np.float32)
    got = model.forward(x, weights)
    # The block from its definition, with the naive kernels.
    t = naive.conv2d(x, weights["f.0.block.0.weight"], weights["f.0.block.0.bias"], (1, 1), (3, 3), (1, 1), 4)
    t = naive.layer_norm(t, weights["f.0.block.2.weight"], weights["f.0.block.2.bias"], 1e-6)
    t = naive.linear_per_pixel(t, weights["f.0.block.3.weight"], weights["f.0.block.3.bias"])
    t = naive.elementwise(t, naive.gelu)
    t = naive.linear_per_pixel(t, weights["f.0.block.5.weight"], weights["f.0.block.5.bias"])
    want = x + naive.mul(t, weights["f.0.layer_scale"][None])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    missing = {k: v for k, v in weights.items() if k != "f.0.layer_scale"}
    with pytest.raises(archspec.ArchspecError, match=r"missing tensor 'f\.0\.layer_scale'"):
        model.forward(x, missing)
    assert verify_spec(model.graph.spec.path).passed


def _blocks_spec(schedule, stochastic_blocks, blocks=4):
    """`blocks` residual blocks features.1.<i>; only those in `stochastic_blocks` have a drop_path
    node (as EfficientNet's blocks without a residual connection have none)."""
    nodes = [{"name": "features.0.0", "op": "conv2d", "out_channels": 2, "kernel": 3, "padding": 1}]
    previous = "features.0.0"
    for i in range(blocks):
        body = f"features.1.{i}.block.0"
        nodes.append({"name": body, "op": "conv2d", "inputs": [previous], "out_channels": 2, "kernel": 3, "padding": 1})
        if i in stochastic_blocks:
            nodes.append({"name": f"features.1.{i}.stochastic_depth", "op": "drop_path"})
            nodes.append({"name": f"features.1.{i}.add", "op": "add", "inputs": [previous, nodes[-1]["name"]]})
        previous = nodes[-1]["name"]
    return {"name": "sd", "input": [2, 8, 8], "metadata": META, "stochastic_depth": schedule, "nodes": nodes}


def test_torchvision_schedule_counts_every_block(write_spec):
    """EfficientNet: p_i = prob * i / N over all N blocks (i from 0), also those without a residual."""
    spec = _blocks_spec({"schedule": "torchvision", "prob": 0.2, "blocks": "features.*.*"}, {1, 2, 3})
    model = archspec.load(write_spec(spec))
    probs = {n.op.name: n.op.p for n in model.graph.nodes.values() if n.op.stochastic}
    # 0.2 * 1 / 4, 0.2 * 2 / 4, 0.2 * 3 / 4
    assert probs == pytest.approx({f"features.1.{i}.stochastic_depth": 0.2 * i / 4 for i in (1, 2, 3)})
    sd = model.analyze().stochastic_depth
    assert sd.blocks == 3 and sd.expected_active_blocks == pytest.approx(0.95 + 0.9 + 0.85)
    assert verify_spec(model.graph.spec.path).passed


def test_torchvision_schedule_convnext_denominator(write_spec):
    """ConvNeXt: p_i = prob * i / (N - 1), so the last block gets prob itself."""
    schedule = {"schedule": "torchvision", "prob": 0.1, "denominator": "blocks_minus_one"}
    model = archspec.load(write_spec(_blocks_spec(schedule, {0, 1, 2}, blocks=3)))
    probs = [n.op.p for n in model.graph.nodes.values() if n.op.stochastic]
    assert probs == pytest.approx([0.0, 0.05, 0.1])


def test_huang_schedule_still_gives_survival(write_spec):
    model = archspec.load(write_spec(_blocks_spec({"schedule": "linear", "final_survival": 0.5}, {0, 1, 2, 3})))
    # drop_path nodes take the schedule too; block l of 4 survives with 1 - l / 4 * 0.5
    assert [n.op.survival for n in model.graph.nodes.values() if n.op.stochastic] == pytest.approx(
        [0.875, 0.75, 0.625, 0.5]
    )


def test_schedule_block_pattern_must_match(write_spec):
    spec = _blocks_spec({"schedule": "torchvision", "prob": 0.2, "blocks": "stages.*"}, {1})
    with pytest.raises(archspec.ArchspecError, match="not inside a block matching"):
        archspec.load(write_spec(spec))


def test_inception_v3_style_asymmetric_kernels_and_pool_options(write_spec):
    """Inception-v3's 1x7 and 7x1 convolutions (padding [0, 3] and [3, 0]), its BatchNorm eps 0.001,
    and average pooling with and without padding in the divisor: analyzed, verified and run."""
    nodes = [
        {"name": "a", "op": "conv2d", "out_channels": 3, "kernel": [1, 7], "padding": [0, 3], "bias": False},
        {"name": "a_bn", "op": "batch_norm", "eps": 0.001},
        {"name": "b", "op": "conv2d", "out_channels": 3, "kernel": [7, 1], "padding": [3, 0], "bias": False},
        {"name": "p1", "op": "avg_pool2d", "kernel": 3, "stride": 1, "padding": 1},
        {"name": "p2", "op": "avg_pool2d", "kernel": 3, "stride": 1, "padding": 1, "count_include_pad": False},
    ]
    path = write_spec({"name": "inc", "input": [2, 9, 11], "metadata": META, "nodes": nodes})
    model = archspec.load(path)
    layers = {layer.name: layer for layer in model.analyze().layers}
    assert layers["a"].output_shape == (3, 9, 11) and layers["b"].output_shape == (3, 9, 11)
    assert layers["a"].params == 3 * 2 * 7 and layers["a"].macs == 9 * 11 * 3 * 2 * 7
    assert layers["a"].receptive_field.size() == (1, 7) and layers["b"].receptive_field.size() == (7, 7)
    # each 3x3 stride-1 pool adds 2: 7 -> 9 -> 11
    assert layers["p1"].receptive_field.size() == (9, 9) and layers["p2"].receptive_field.size() == (11, 11)
    assert verify_spec(path).passed
    weights = model.init_weights(0)
    x = np.random.default_rng(0).normal(size=(1, 2, 9, 11)).astype(np.float32)
    t = naive.conv2d(x, weights["a.weight"], None, (1, 1), (0, 3), (1, 1), 1)
    mean, var = weights["a_bn.running_mean"], weights["a_bn.running_var"]
    t = (t - mean[:, None, None]) / np.sqrt(var[:, None, None] + 0.001) * weights["a_bn.weight"][:, None, None]
    t = t + weights["a_bn.bias"][:, None, None]
    t = naive.conv2d(t, weights["b.weight"], None, (1, 1), (3, 0), (1, 1), 1)
    t = naive.pool2d(t, "avg", (3, 3), (1, 1), (1, 1), False, True)
    t = naive.pool2d(t, "avg", (3, 3), (1, 1), (1, 1), False, False)
    np.testing.assert_allclose(model.forward(x, weights), t, rtol=1e-4, atol=1e-5)


def test_every_new_op_verifies_in_one_spec(write_spec):
    """A small spec using every op of issue 7 passes `archspec verify` (numbers, live memory,
    receptive fields with the gate flag, stochastic depth)."""
    nodes = [
        *SE_BLOCK,
        {"name": "h", "op": "hardswish"},
        {"name": "h6", "op": "relu6"},
        {"name": "g", "op": "gelu", "approximate": "tanh"},
        {"name": "hs", "op": "hardsigmoid"},
        {"name": "ln", "op": "layer_norm"},
        {"name": "lin", "op": "linear", "out_features": 6, "per_pixel": True},
        {"name": "ls", "op": "layer_scale"},
        {"name": "dp", "op": "drop_path", "p": 0.2},
        {"name": "shuffle", "op": "channel_shuffle", "groups": 3},
        {"name": "x1", "op": "channel_chunk", "chunks": 2, "index": 0},
        {"name": "x2", "op": "channel_chunk", "chunks": 2, "index": 1, "inputs": ["shuffle"]},
        {"name": "branch", "op": "conv2d", "out_channels": 3, "kernel": 3, "padding": 1, "inputs": ["x2"]},
        {"name": "cat", "op": "concat", "inputs": ["x1", "branch"]},
        {"name": "res", "op": "add", "inputs": ["cat", "lin"]},
        {"name": "gap", "op": "adaptive_avg_pool2d", "output_size": 1},
        {"name": "norm", "op": "layer_norm", "eps": 1e-6},
        {"name": "flat", "op": "flatten"},
        {"name": "fc", "op": "linear", "out_features": 5},
    ]
    path = write_spec({"name": "all", "input": [3, 12, 12], "metadata": META, "nodes": nodes})
    report = verify_spec(path)
    assert report.passed, report
    layers = {layer.name: layer for layer in archspec.load(path).analyze().layers}
    assert layers["branch"].receptive_field.context  # downstream of the gate
