"""The inference fast path (`Model.forward`) fuses each batch norm into the conv or linear before it;
measurement (`verify`) never does. Fused and unfused outputs must agree to float32 round-off on every
family that has batch norm, and the measured figures must stay those of the unfused graph."""

from __future__ import annotations

from pathlib import Path

import naive
import numpy as np
import pytest

import archspec
from archspec.reference import forward as reference

SPECS = Path(__file__).resolve().parent.parent / "specs"

# One spec per family with batch norm (and ConvNeXt's layer norm + layer scale, which have none to
# fuse), each at a small input so the whole file runs in seconds.
FAMILIES = {
    "resnet18": (3, 64, 64),
    "resnet50": (3, 64, 64),
    "resnext50_32x4d": (3, 64, 64),
    "densenet121": (3, 64, 64),
    "googlenet_torchvision": (3, 64, 64),
    "vgg11_bn": (3, 64, 64),
    "mobilenet_v2": (3, 64, 64),
    "mobilenet_v3_small": (3, 64, 64),
    "mnasnet0_5": (3, 64, 64),
    "shufflenet_v2_x0_5": (3, 64, 64),
    "efficientnet_b0": (3, 64, 64),
    "regnet_x_400mf": (3, 64, 64),
    "regnet_y_400mf": (3, 64, 64),
    "convnext_tiny": (3, 64, 64),
}


def _skipped_tensor_reads(model, x, weights, fuse: bool) -> list[str]:
    """Nodes with buffers (running statistics) whose kernel did not read them: the fused ones."""
    shapes = model.graph.infer_shapes(tuple(x.shape[1:]))
    skipped = []

    def record(name, out, w, mm):
        op = model.graph.op(name)
        if op.buffer_shapes([shapes[i] for i in op.inputs]) and not w.buffers_read:
            skipped.append(name)

    reference.run(model.graph, x, weights, on_output=record, fuse=fuse)
    return skipped


@pytest.mark.parametrize("spec", FAMILIES)
def test_fused_forward_equals_the_unfused_graph(spec):
    model = archspec.load(SPECS / f"{spec}.yaml")
    shape = FAMILIES[spec]
    weights = model.init_weights(0, shape)
    x = np.random.default_rng(1).normal(size=(2, *shape)).astype(np.float32)
    out = model.graph.outputs[0]
    unfused = reference.run(model.graph, x, weights, keep=lambda n: n == out)[out]
    fused = model.forward(x, weights)
    assert fused.shape == unfused.shape and fused.dtype == np.float32
    # float32 round-off: BN's scale is applied to the weights (or the conv output) instead of its input.
    np.testing.assert_allclose(fused, unfused, rtol=0, atol=1e-4 * float(np.abs(unfused).max()))
    skipped = _skipped_tensor_reads(model, x, weights, fuse=True)
    assert _skipped_tensor_reads(model, x, weights, fuse=False) == []  # unfused: every BN runs its kernel
    if spec != "convnext_tiny":  # every family but ConvNeXt has a conv -> batch norm pair
        assert skipped, "no batch norm was fused"


def test_fused_conv_batch_norm_relu_matches_the_definition():
    """conv (no bias) -> BN -> ReLU, fused, against naive loops and BN's formula written out."""
    spec = {
        "name": "cbr",
        "input": [3, 7, 7],
        "nodes": [
            {"name": "conv", "op": "conv2d", "out_channels": 4, "kernel": 3, "stride": 2, "padding": 1, "bias": False},
            {"name": "bn", "op": "batch_norm", "eps": 1e-3},
            {"name": "relu", "op": "relu"},
            {"name": "dw", "op": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1, "groups": 4},
            {"name": "bn2", "op": "batch_norm"},
            {"name": "pw", "op": "conv2d", "out_channels": 5, "kernel": 1},
            {"name": "bn3", "op": "batch_norm"},
        ],
    }
    model = archspec.load(spec)
    weights = model.init_weights(3)
    x = np.random.default_rng(4).normal(size=(2, 3, 7, 7)).astype(np.float32)

    def bn(y, name, eps=1e-5):
        g, b, m, v = (
            weights[f"{name}.{t}"].reshape(1, -1, 1, 1) for t in ("weight", "bias", "running_mean", "running_var")
        )
        return (y - m) / np.sqrt(v + eps) * g + b

    y = bn(naive.conv2d(x, weights["conv.weight"], None, (2, 2), (1, 1), (1, 1), 1), "bn", 1e-3)
    y = np.maximum(y, 0)
    y = bn(naive.conv2d(y, weights["dw.weight"], weights["dw.bias"], (1, 1), (1, 1), (1, 1), 4), "bn2")
    y = bn(naive.conv2d(y, weights["pw.weight"], weights["pw.bias"], (1, 1), (0, 0), (1, 1), 1), "bn3")
    np.testing.assert_allclose(model.forward(x, weights), y, rtol=1e-5, atol=1e-5)
    assert sorted(_skipped_tensor_reads(model, x, weights, fuse=True)) == ["bn", "bn2", "bn3"]


def test_a_batch_norm_whose_input_is_read_twice_is_not_fused():
    """The conv's own output is needed unscaled by the add: its batch norm must run on its own."""
    spec = {
        "name": "shared",
        "input": [2, 5, 5],
        "nodes": [
            {"name": "conv", "op": "conv2d", "out_channels": 2, "kernel": 3, "padding": 1},
            {"name": "bn", "op": "batch_norm"},
            {"name": "sum", "op": "add", "inputs": ["conv", "bn"]},
        ],
    }
    model = archspec.load(spec)
    weights = model.init_weights(0)
    x = np.random.default_rng(0).normal(size=(1, 2, 5, 5)).astype(np.float32)
    conv = naive.conv2d(x, weights["conv.weight"], weights["conv.bias"], (1, 1), (1, 1), (1, 1), 1)
    g, b, m, v = (weights[f"bn.{t}"].reshape(1, -1, 1, 1) for t in ("weight", "bias", "running_mean", "running_var"))
    np.testing.assert_allclose(
        model.forward(x, weights), conv + (conv - m) / np.sqrt(v + 1e-5) * g + b, rtol=1e-5, atol=1e-5
    )
    assert _skipped_tensor_reads(model, x, weights, fuse=True) == []


@pytest.mark.parametrize("spec", ["resnet18", "mobilenet_v2", "densenet121"])
def test_measurement_stays_unfused(spec):
    """verify's figures come from `measure`, which runs every batch norm's own kernel: its params and
    buffers are read there, and the conv MACs are those of the unscaled products."""
    model = archspec.load(SPECS / f"{spec}.yaml")
    shape = FAMILIES[spec]
    analysis = model.analyze(shape, batch=2)
    weights = model.init_weights(0, shape)
    x = np.random.default_rng(1).normal(size=(2, *shape)).astype(np.float32)
    measured = reference.measure(model.graph, x, weights)
    for layer in analysis.layers:
        got = measured[layer.name]
        assert (got.shape, got.params, got.buffers, got.macs, got.activations) == (
            layer.output_shape,
            layer.params,
            layer.buffers,
            layer.macs,
            layer.activations,
        ), layer.name
    assert any(layer.buffers for layer in analysis.layers)  # there were batch norms to measure


@pytest.mark.parametrize(
    "nodes",
    [
        # one input channel: a 1x1 conv's input is both channel-first and channels-last
        [
            {"name": "pw", "op": "conv2d", "out_channels": 2, "kernel": 1},
            {"name": "sum", "op": "add", "inputs": ["pw", "pw"]},
        ],
        # a depthwise conv (channels-last on the inference path) straight into a flatten
        [{"name": "dw", "op": "conv2d", "out_channels": 1, "kernel": 3, "groups": 1, "padding": 1}],
        [
            {"name": "dw", "op": "conv2d", "out_channels": 2, "kernel": 3, "groups": 1, "padding": 1},
            {"name": "dw2", "op": "conv2d", "out_channels": 2, "kernel": 3, "groups": 2, "padding": 1},
        ],
    ],
)
def test_verify_sees_channel_first_arrays_and_the_fast_path_the_same_numbers(nodes):
    """Measurement keeps arrays channel-first (a flatten stays a view, as the memory model says); the
    inference path may keep a depthwise output channels-last, and gives the same numbers."""
    from archspec.verify import verify_model

    spec = {
        "name": "layouts",
        "input": [1, 6, 6],
        "nodes": [*nodes, {"name": "flat", "op": "flatten"}, {"name": "fc", "op": "linear", "out_features": 3}],
    }
    model = archspec.load(spec)
    assert verify_model(model, "layouts", samples=2).passed
    weights = model.init_weights(0)
    x = np.random.default_rng(0).normal(size=(2, 1, 6, 6)).astype(np.float32)
    unfused = reference.run(model.graph, x, weights, keep=lambda n: n == "fc")["fc"]
    np.testing.assert_allclose(model.forward(x, weights), unfused, rtol=1e-5, atol=1e-5)


def test_winograd_and_in_place_tap_sums_in_a_whole_network(monkeypatch):
    """Layers big enough for the fast path's other conv kernels: a 16-channel 3x3 conv on a 56 x 56 map
    (too few channels for Winograd: taps summed, added in place by BLAS when found) and a 256 -> 256 3x3
    conv at 28 x 28 (Winograd),
    each followed by a batch norm it absorbs. Model.forward must agree with the unfused graph, and each
    kernel must have run where the rules in archspec/ops/conv.py send those layers."""
    from archspec.ops import blas
    from archspec.ops.conv import Conv2d

    spec = {
        "name": "wide",
        "input": [16, 56, 56],
        "nodes": [
            {"name": "c1", "op": "conv2d", "out_channels": 16, "kernel": 3, "padding": 1, "bias": False},
            {"name": "bn1", "op": "batch_norm"},
            {"name": "r1", "op": "relu"},
            {"name": "c2", "op": "conv2d", "out_channels": 256, "kernel": 3, "stride": 2, "padding": 1},
            {"name": "r2", "op": "relu"},
            {"name": "c3", "op": "conv2d", "out_channels": 256, "kernel": 3, "padding": 1, "bias": False},
            {"name": "bn3", "op": "batch_norm"},
            {"name": "pool", "op": "adaptive_avg_pool2d", "output_size": 1},
        ],
    }
    model = archspec.load(spec)
    weights = model.init_weights(5)
    x = np.random.default_rng(6).normal(size=(1, 16, 56, 56)).astype(np.float32)
    taken: dict[str, list[str]] = {"winograd": [], "tap_sum": []}
    for kernel in taken:
        original = getattr(Conv2d, f"_{kernel}")

        def spy(self, *args, _original=original, _kernel=kernel):
            taken[_kernel].append(self.name)
            return _original(self, *args)

        monkeypatch.setattr(Conv2d, f"_{kernel}", spy)
    accumulated = []
    original_accumulate = blas.gemm_accumulate
    monkeypatch.setattr(blas, "gemm_accumulate", lambda *a: accumulated.append(1) or original_accumulate(*a))
    out = model.graph.outputs[0]
    unfused = reference.run(model.graph, x, weights, keep=lambda n: n == out)[out]
    assert taken == {"winograd": [], "tap_sum": []}  # measurement's path: im2col everywhere
    fused = model.forward(x, weights)
    np.testing.assert_allclose(fused, unfused, rtol=0, atol=1e-5 * float(np.abs(unfused).max()))
    assert taken == {"winograd": ["c3"], "tap_sum": ["c1"]}
    # 8 of c1's 9 taps are added in place, when BLAS's gemm was found in this process.
    assert len(accumulated) == (8 if blas.available(np.float32) else 0)
