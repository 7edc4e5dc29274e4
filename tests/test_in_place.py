"""In-place ReLU in the reference forward pass never overwrites a tensor that is still needed."""

from __future__ import annotations

import numpy as np

import archspec

META = {"source": "test"}


def test_relu_does_not_overwrite_a_tensor_read_later(write_spec):
    # a = conv(x); r = relu(a); s = add(a, r): `a` is still needed by the add, so relu must allocate.
    nodes = [
        {"name": "a", "op": "conv2d", "out_channels": 2, "kernel": 1, "bias": False},
        {"name": "r", "op": "relu", "inputs": ["a"]},
        {"name": "s", "op": "add", "inputs": ["a", "r"]},
    ]
    model = archspec.load(write_spec({"name": "t", "input": [1, 3, 3], "metadata": META, "nodes": nodes}))
    weights = {"a.weight": np.array([1.0, -1.0], np.float32).reshape(2, 1, 1, 1)}
    x = np.arange(-4, 5, dtype=np.float32).reshape(1, 1, 3, 3)
    # channel 0: a = x, s = x + max(x, 0); channel 1: a = -x, s = -x + max(-x, 0).
    expected = np.concatenate([x + np.maximum(x, 0), -x + np.maximum(-x, 0)], axis=1)
    np.testing.assert_array_equal(model.forward(x, weights), expected)


def test_relu_never_overwrites_the_callers_input(write_spec):
    # relu directly on the input, and on a view (flatten) of it.
    for nodes in (
        [{"name": "r", "op": "relu"}],
        [{"name": "f", "op": "flatten"}, {"name": "r", "op": "relu"}],
    ):
        model = archspec.load(write_spec({"name": "t", "input": [1, 2, 2], "metadata": META, "nodes": nodes}))
        x = np.array([[[[-1.0, 2.0], [3.0, -4.0]]]], np.float32)
        before = x.copy()
        out = model.forward(x, {})
        np.testing.assert_array_equal(x, before)
        np.testing.assert_array_equal(out.reshape(x.shape), np.maximum(before, 0))
