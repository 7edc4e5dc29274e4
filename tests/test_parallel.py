"""Work sharing (archspec/ops/parallel.py): a kernel whose work is shared out gives the same output,
and counts the same products."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from archspec.ops import MatMul
from archspec.ops.parallel import run_shared, shared_threads, sharing


def test_every_part_runs_once_and_errors_reach_the_caller():
    seen: list[int] = []
    lock = threading.Lock()

    def part(i):
        def run():
            with lock:
                seen.append(i)

        return run

    run_shared([part(i) for i in range(5)])
    assert sorted(seen) == [0, 1, 2, 3, 4]

    def fail():
        raise ValueError("part failed")

    with pytest.raises(ValueError, match="part failed"):
        run_shared([part(9), fail])


@pytest.mark.parametrize(
    "fields",
    [
        {"out_channels": 64, "kernel": 3, "padding": 1},  # im2col filled and multiplied in shares
        {"out_channels": 64, "kernel": 3, "padding": 1, "groups": 64},  # depthwise: bands of output rows
        {"out_channels": 128, "kernel": 5, "stride": 2, "padding": 2, "groups": 64},  # depthwise, multiplier 2
    ],
)
def test_a_shared_convolution_equals_the_plain_one(fields):
    from archspec.ops import REGISTRY, Weights

    op = REGISTRY["conv2d"](name="c", op="conv2d", **fields)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 64, 72, 72)).astype(np.float32)
    tensors = {key: rng.normal(size=shape).astype(np.float32) for key, shape in op.param_shapes([x.shape[1:]]).items()}
    plain, shared = MatMul(), MatMul()
    want = op.forward([x], Weights(tensors, "c"), plain)
    with sharing(2):
        got = op.forward([x], Weights(tensors, "c"), shared)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert shared.macs == plain.macs == op.macs([x.shape[1:]], got.shape[1:])


@pytest.mark.parametrize(
    "fields",
    [
        {"out_channels": 4, "kernel": 3, "padding": 1},  # DenseNet's 3x3: fewer outputs than inputs
        {"out_channels": 4, "kernel": [3, 2], "padding": [2, 0], "dilation": [2, 1], "bias": False},
        {"out_channels": 2, "kernel": 3, "groups": 2},  # no padding, two groups
    ],
)
def test_the_fast_path_convolution_matches_the_definition(fields):
    """Inside parallel.fast() a stride-1 conv with fewer output than input channels sums one product
    per tap over padded rows; its output must still be the convolution (naive loops)."""
    import naive

    from archspec.ops import REGISTRY, Weights
    from archspec.ops.base import pair
    from archspec.ops.parallel import fast

    op = REGISTRY["conv2d"](name="c", op="conv2d", **fields)
    rng = np.random.default_rng(2)
    x = rng.normal(size=(2, 6, 7, 5)).astype(np.float32)
    tensors = {key: rng.normal(size=shape).astype(np.float32) for key, shape in op.param_shapes([x.shape[1:]]).items()}
    with fast():
        got = op.forward([x], Weights(tensors, "c"), MatMul())
    want = naive.conv2d(
        x, tensors["weight"], tensors.get("bias"), (1, 1), pair(op.padding), pair(op.dilation), op.groups
    )
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fields", [{"op": "relu"}, {"op": "relu6"}, {"op": "silu"}, {"op": "sigmoid"}])
def test_shared_activations_equal_the_plain_ones(fields):
    from archspec.ops import REGISTRY, Weights

    op = REGISTRY[fields["op"]](name="a", **fields)
    x = (
        np.random.default_rng(3).normal(scale=4, size=(1, 40, 120, 120)).astype(np.float32)
    )  # above SHARED_ELEMENTS: banded
    want = op.forward([x], Weights({}, "a"), MatMul())
    with sharing(2):
        got = op.forward([x], Weights({}, "a"), MatMul())
        if op.in_place:
            y = x.copy()
            assert op.forward_in_place(y) is y
            np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(got, want)


def test_shared_batch_norm_and_add_equal_the_plain_ones():
    from archspec.ops import REGISTRY, Weights

    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(2, 2, 40, 120, 120)).astype(np.float32)  # above SHARED_ELEMENTS: banded
    gate = rng.normal(size=(2, 40, 1, 1)).astype(np.float32)
    tensors = {
        key: rng.uniform(0.5, 1.5, size=40).astype(np.float32)
        for key in ("weight", "bias", "running_mean", "running_var")
    }
    bn = REGISTRY["batch_norm"](name="bn", op="batch_norm")
    add = REGISTRY["add"](name="s", op="add", inputs=["a", "b", "c"])
    want = bn.forward([x], Weights(tensors, "bn"), MatMul()), add.forward([x, y, gate], Weights({}, "s"), MatMul())
    with sharing(2):
        got = bn.forward([x], Weights(tensors, "bn"), MatMul()), add.forward([x, y, gate], Weights({}, "s"), MatMul())
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_bands_cover_the_rows_once():
    from archspec.ops.parallel import SHARED_ELEMENTS, bands

    shape = (1, 8, 101, SHARED_ELEMENTS // 800 + 1)
    assert bands(shape) == [(...,)]  # outside `sharing`: one band, everything
    with sharing(3):
        parts = bands(shape)
        assert bands((1, 8, 2, 2)) == [(...,)]  # too small to share
    rows = [r for *_, band in parts for r in range(101)[band]]
    assert len(parts) == 3 and rows == list(range(101))


@pytest.mark.parametrize(
    "fields", [{"kernel": 3, "stride": 2, "padding": 1}, {"kernel": 3, "stride": 2, "ceil_mode": True}, {"kernel": 2}]
)
def test_shared_max_pooling_matches_the_definition(fields):
    import naive

    from archspec.ops import REGISTRY, Weights
    from archspec.ops.base import pair

    op = REGISTRY["max_pool2d"](name="p", op="max_pool2d", **fields)
    x = np.random.default_rng(5).normal(size=(1, 32, 300, 301)).astype(np.float32)  # output above SHARED_ELEMENTS
    k, p = pair(op.kernel), pair(op.padding)
    s = pair(op.stride) if op.stride is not None else k
    want = naive.pool2d(x[:, :2], "max", k, s, p, op.ceil_mode)  # two channels: the loops are slow
    plain = op.forward([x], Weights({}, "p"), MatMul())
    with sharing(2):
        shared = op.forward([x], Weights({}, "p"), MatMul())
    np.testing.assert_array_equal(shared, plain)
    np.testing.assert_array_equal(plain[:, :2], want)


def test_sharing_is_scoped_to_its_block():
    assert shared_threads() == 1
    with sharing(2):
        assert shared_threads() == 2
        with sharing(1):
            assert shared_threads() == 1
        assert shared_threads() == 2
    assert shared_threads() == 1


def test_cpu_pressure_reads_a_percentage_or_nothing():
    from archspec.reference.forward import cpu_pressure

    pressure = cpu_pressure()
    assert pressure is None or 0.0 <= pressure <= 100.0
