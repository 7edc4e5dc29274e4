"""On random valid graphs built from the op registry, every static number equals what the NumPy
forward pass measures (shapes, params, buffers, MACs, activations, receptive fields)."""

from __future__ import annotations

import itertools
import tempfile
from pathlib import Path

import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import archspec
from archspec.errors import SpecError
from archspec.verify import verify_model


def _layer(draw, name, channels):
    kind = draw(
        st.sampled_from(
            [
                *("conv", "conv", "relu", "bn", "maxpool", "avgpool", "lrn", "dropout", "identity", "pad", "adaptive"),
                *("activation", "layer_norm", "softmax", "shuffle", "chunk", "per_pixel", "layer_scale"),
            ]
        )
    )
    if kind == "activation":
        act = draw(st.sampled_from(["relu6", "sigmoid", "hardsigmoid", "hardswish", "silu", "gelu"]))
        node = {"name": name, "op": act}
        if act == "gelu":
            node["approximate"] = draw(st.sampled_from(["none", "tanh"]))
        return node, channels
    if kind == "layer_norm":  # channel-mixing
        return {"name": name, "op": "layer_norm", "eps": draw(st.sampled_from([1e-5, 1e-6]))}, channels
    if kind == "softmax":  # softmax over the channels of a map: channel-mixing
        return {"name": name, "op": "softmax"}, channels
    if kind == "shuffle":
        groups = draw(st.sampled_from([g for g in (1, 2, 3) if channels % g == 0]))
        return {"name": name, "op": "channel_shuffle", "groups": groups}, channels
    if kind == "chunk":
        chunks = draw(st.integers(1, 2))
        size = -(-channels // chunks)
        index = draw(st.integers(0, -(-channels // size) - 1))
        return {"name": name, "op": "channel_chunk", "chunks": chunks, "index": index}, min(
            size, channels - index * size
        )
    if kind == "per_pixel":
        out = draw(st.integers(1, 4))
        return {"name": name, "op": "linear", "out_features": out, "per_pixel": True}, out
    if kind == "layer_scale":
        return {"name": name, "op": "layer_scale"}, channels
    if kind == "conv":
        k = draw(st.sampled_from([1, 2, 3, 5]))
        d = draw(st.sampled_from([1, 1, 2]))
        s = draw(st.sampled_from([1, 1, 2]))
        groups = draw(st.sampled_from([1, 2])) if channels % 2 == 0 else 1
        out = groups * draw(st.integers(1, 3))
        node = {
            "name": name,
            "op": "conv2d",
            "out_channels": out,
            "kernel": k,
            "stride": s,
            "padding": draw(st.integers(0, (d * (k - 1)) // 2 + 1)),
            "dilation": d,
            "groups": groups,
            "bias": draw(st.booleans()),
        }
        return node, out
    if kind == "maxpool":
        k = draw(st.sampled_from([2, 3]))
        return {
            "name": name,
            "op": "max_pool2d",
            "kernel": k,
            "stride": draw(st.sampled_from([1, 2])),
            "padding": draw(st.integers(0, k // 2)),
            "ceil_mode": draw(st.booleans()),
        }, channels
    if kind == "avgpool":
        return {
            "name": name,
            "op": "avg_pool2d",
            "kernel": 2,
            "stride": 2,
            "ceil_mode": draw(st.booleans()),
            "count_include_pad": draw(st.booleans()),
        }, channels
    if kind == "bn":
        return {"name": name, "op": "batch_norm"}, channels
    if kind == "lrn":
        return {"name": name, "op": "lrn", "size": draw(st.integers(1, 5)), "k": 2.0}, channels
    if kind == "pad":
        out = channels + draw(st.integers(0, 2))
        return {"name": name, "op": "channel_pad", "out_channels": out}, out
    if kind == "adaptive":  # often not a divisor of the input: irregular windows
        size = [draw(st.integers(2, 5)), draw(st.integers(2, 5))]
        return {"name": name, "op": "adaptive_avg_pool2d", "output_size": size}, channels
    return {"name": name, "op": kind}, channels


@st.composite
def random_graph(draw):
    channels = input_channels = draw(st.integers(1, 3))
    size = draw(st.integers(12, 28))
    nodes = []
    current, counter = "input", 0

    def fresh():
        nonlocal counter
        counter += 1
        return f"n{counter}"

    for _ in range(draw(st.integers(1, 6))):
        if draw(st.booleans()):  # a chain layer
            node, channels = _layer(draw, fresh(), channels)
            node["inputs"] = [current]
            nodes.append(node)
            current = node["name"]
        elif draw(st.integers(0, 2)) == 0:  # a squeeze-and-excitation gate: global context, broadcast
            squeeze = draw(st.integers(1, 2))
            gate = [
                {"name": fresh(), "op": "adaptive_avg_pool2d", "output_size": 1, "inputs": [current]},
                {"name": fresh(), "op": "conv2d", "out_channels": squeeze, "kernel": 1},
                {"name": fresh(), "op": draw(st.sampled_from(["relu", "silu"]))},
                {"name": fresh(), "op": "conv2d", "out_channels": channels, "kernel": 1},
                {"name": fresh(), "op": draw(st.sampled_from(["sigmoid", "hardsigmoid"]))},
            ]
            for previous, node in itertools.pairwise(gate):
                node["inputs"] = [previous["name"]]
            nodes.extend(gate)
            pair = [gate[-1]["name"], current]
            nodes.append({"name": fresh(), "op": "mul", "inputs": pair if draw(st.booleans()) else pair[::-1]})
            current = nodes[-1]["name"]
        else:  # two branches from `current`, merged by add, mul or concat
            merge = draw(st.sampled_from(["add", "concat", "mul"]))
            width = draw(st.integers(1, 3))
            stride = draw(st.sampled_from([1, 2]))
            ends = []
            for _ in range(2):
                k = draw(st.sampled_from([1, 3, 5]))
                # "same" padding keeps both branches the same size; the kernels may differ, and an
                # odd offset makes the centres differ (a misaligned merge the RF must handle).
                node = {
                    "name": fresh(),
                    "op": "conv2d",
                    "inputs": [current],
                    "out_channels": width,
                    "kernel": k,
                    "stride": stride,
                    "padding": k // 2,
                }
                nodes.append(node)
                ends.append(node["name"])
            if merge == "add" and draw(st.booleans()):  # a droppable residual branch (stochastic depth)
                drop = {
                    "name": fresh(),
                    "op": draw(st.sampled_from(["stochastic_depth", "drop_path"])),
                    "inputs": [ends[0]],
                }
                probability = draw(st.sampled_from([0.5, 0.8, 1.0]))
                drop.update({"survival": probability} if drop["op"] == "stochastic_depth" else {"p": 1 - probability})
                nodes.append(drop)
                ends[0] = drop["name"]
            nodes.append({"name": fresh(), "op": merge, "inputs": ends})
            channels = width * (2 if merge == "concat" else 1)
            current = nodes[-1]["name"]
    tail = draw(st.sampled_from(["none", "gap", "fc"]))
    if tail == "gap":
        nodes.append({"name": fresh(), "op": "adaptive_avg_pool2d", "output_size": 1, "inputs": [current]})
    elif tail == "fc":
        nodes.append({"name": fresh(), "op": "flatten", "inputs": [current]})
        nodes.append({"name": fresh(), "op": "linear", "out_features": draw(st.integers(1, 4))})
        nodes.append({"name": fresh(), "op": "softmax"})
    return {
        "name": "random",
        "input": [input_channels, size, size + draw(st.integers(0, 5))],
        "metadata": {"source": "hypothesis"},
        "nodes": nodes,
    }


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(random_graph())
def test_static_equals_measured_on_random_graphs(spec):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "random.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        try:
            model = archspec.load(str(path))
            model.analyze()
        except SpecError:
            assume(False)  # e.g. a shape that collapsed to zero; invalid graphs are tested elsewhere
        report = verify_model(model, str(path), samples=20)
    for check in report.checks:
        assert not check.mismatches, (check.what, check.mismatches[:3], yaml.safe_dump(spec))


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(random_graph(), st.integers(0, 2**16), st.integers(1, 3))
def test_run_with_init_weights_equals_model_forward(spec, seed, batch):
    """`archspec run` on weights saved from init_weights gives exactly Model.forward's output."""
    import numpy as np

    from archspec.cli import main

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "random.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        try:
            model = archspec.load(str(path))
            model.analyze()
        except SpecError:
            assume(False)
        weights = model.init_weights(seed)
        x = np.random.default_rng(seed).normal(size=(batch, *model.input_shape)).astype(np.float32)
        np.savez(folder / "w.npz", **weights)
        np.save(folder / "x.npy", x)
        args = ["run", str(path), "--weights", str(folder / "w.npz"), "--input", str(folder / "x.npy")]
        assert main([*args, "--out", str(folder / "y.npy")]) == 0
        np.testing.assert_array_equal(np.load(folder / "y.npy"), model.forward(x, weights))
