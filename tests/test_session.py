"""Inference sessions (`Model.session`): the same output as `Model.forward`, the weights checked once and
copied, and what kernels derive from the weights alone (Winograd's transformed kernels, a batch norm's
scale and shift) made on the first call and kept."""

from __future__ import annotations

import naive
import numpy as np
import pytest

import archspec
from archspec.errors import UsageError, WeightsError
from archspec.ops import REGISTRY, conv
from archspec.reference import forward as reference

# A 3x3 conv of 512 -> 512 channels at 14 x 14 takes Winograd only in a session (see
# conv.WINOGRAD_KEPT_PAIRS): 512 * 512 pairs per 196 output pixels is 4x the per-call rule's 256 * 256,
# and within the session's 512 * 512 per 49. The 1x1 conv before it narrows 8 channels to 512 cheaply.
WIDE = {
    "name": "wide",
    "input": [8, 14, 14],
    "nodes": [
        {"name": "widen", "op": "conv2d", "out_channels": 512, "kernel": 1},
        {"name": "c", "op": "conv2d", "out_channels": 512, "kernel": 3, "padding": 1, "bias": False},
        {"name": "bn", "op": "batch_norm"},
        {"name": "r", "op": "relu"},
        {"name": "pool", "op": "adaptive_avg_pool2d", "output_size": 1},
        {"name": "flat", "op": "flatten"},
        {"name": "fc", "op": "linear", "out_features": 10},
    ],
}


def _spy_winograd(monkeypatch) -> list[str]:
    """The layers that run as Winograd, in call order."""
    taken: list[str] = []
    original = conv.Conv2d._winograd

    def spy(self, *args, **kwargs):
        taken.append(self.name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(conv.Conv2d, "_winograd", spy)
    return taken


def test_a_session_gives_the_unfused_graphs_output_and_keeps_the_derived_tensors(monkeypatch):
    model = archspec.load(WIDE)
    weights = model.init_weights(3)
    x = np.random.default_rng(4).normal(size=(2, 8, 14, 14)).astype(np.float32)
    unfused = reference.run(model.graph, x, weights, keep=lambda n: n == "fc")["fc"]
    taken = _spy_winograd(monkeypatch)
    forward = model.forward(x, weights)
    assert taken == []  # per call, the weights' transform does not pay at 14 x 14
    session = model.session(weights)
    first = session(x)
    assert taken == ["c"]
    # The session's store: c's transformed kernels (16 positions x 512 x 512) and bn's scale and shift.
    store = session._derived
    assert store["c"]["winograd"].shape == (16, 1, 512, 512)
    scale, shift = store["bn"]["affine"]
    want_scale = weights["bn.weight"] / np.sqrt(weights["bn.running_var"].astype(np.float64) + 1e-5)
    np.testing.assert_allclose(scale, want_scale, rtol=1e-6)
    np.testing.assert_allclose(shift, weights["bn.bias"] - weights["bn.running_mean"] * want_scale, rtol=1e-5)
    kept = store["c"]["winograd"]
    second = session.forward(x)
    assert store["c"]["winograd"] is kept  # made once, not again
    np.testing.assert_array_equal(second, first)
    # Float32 round-off from the unfused definition, as Model.forward.
    bound = 1e-5 * float(np.abs(unfused).max())
    np.testing.assert_allclose(first, unfused, rtol=0, atol=bound)
    np.testing.assert_allclose(forward, unfused, rtol=0, atol=bound)


def test_the_session_rule_takes_winograd_where_kept_kernels_pay():
    """Measured with the kernels kept (see conv.WINOGRAD_KEPT_PAIRS): 512 -> 512 at 14 x 14 3.9 ms against
    6.0 as im2col, and 256 -> 256 at 7 x 7 0.39 against 0.57, take it; 512 -> 512 at 7 x 7 (slower in
    ResNet-50's layer 4) and stride 2 do not."""
    op = REGISTRY["conv2d"](name="c", op="conv2d", out_channels=512, kernel=3, padding=1)
    assert conv.kernels() is not None  # numba is a dependency
    assert not op._winograd_pays((1, 512, 14, 14), (3, 3), (1, 1), (1, 1), 14 * 14)
    assert op._winograd_pays((1, 512, 14, 14), (3, 3), (1, 1), (1, 1), 14 * 14, kept=True)
    assert not op._winograd_pays((1, 512, 7, 7), (3, 3), (1, 1), (1, 1), 7 * 7, kept=True)
    assert op._winograd_pays((4, 512, 7, 7), (3, 3), (1, 1), (1, 1), 7 * 7, kept=True)  # 4 images pay for it
    small = REGISTRY["conv2d"](name="c", op="conv2d", out_channels=256, kernel=3, padding=1)
    assert small._winograd_pays((1, 256, 7, 7), (3, 3), (1, 1), (1, 1), 7 * 7, kept=True)
    assert not small._winograd_pays((1, 256, 7, 7), (3, 3), (1, 1), (1, 1), 7 * 7)
    assert not op._winograd_pays((1, 512, 14, 14), (3, 3), (2, 2), (1, 1), 7 * 7, kept=True)


def test_a_session_keeps_its_own_copy_of_the_weights():
    model = archspec.load(WIDE)
    weights = model.init_weights(3)
    x = np.random.default_rng(4).normal(size=(1, 8, 14, 14)).astype(np.float32)
    session = model.session(weights)
    before = session(x)
    weights["widen.weight"] *= 2.0  # the caller's arrays change, in place
    weights["fc.bias"] += 1.0
    np.testing.assert_array_equal(session(x), before)
    assert not np.array_equal(model.forward(x, weights), before)


def test_a_session_rejects_bad_weights_when_it_is_made():
    model = archspec.load(WIDE)
    weights = model.init_weights(3)
    weights["c.weight"] = weights["c.weight"][:, :256]
    del weights["fc.bias"]
    with pytest.raises(WeightsError) as error:
        model.session(weights, weights_source="w.npz")
    assert str(error.value) == (
        "w.npz: error: tensor 'c.weight' has shape [512, 256, 3, 3], expected [512, 512, 3, 3]\n"
        "w.npz: error: missing tensor 'fc.bias' (shape [10])"
    )


def test_a_session_runs_a_fully_convolutional_net_at_another_size_and_reports_a_wrong_one():
    spec = {
        "name": "fcn",
        "input": [3, 8, 8],
        "nodes": [{"name": "c", "op": "conv2d", "out_channels": 4, "kernel": 3, "padding": 1}],
    }
    model = archspec.load(spec)
    weights = model.init_weights(1)
    session = model.session(weights)
    x = np.random.default_rng(2).normal(size=(1, 3, 5, 7)).astype(np.float32)
    want = naive.conv2d(x, weights["c.weight"], weights["c.bias"], (1, 1), (1, 1), (1, 1), 1)
    np.testing.assert_allclose(session(x), want, rtol=1e-5, atol=1e-5)
    with pytest.raises(UsageError) as error:
        session(np.zeros((1, 2, 8, 8), np.float32), input_source="image.npy")
    assert str(error.value) == (
        "image.npy: error: the input's images are 2 x 8 x 8 (C x H x W), but fcn takes 3 x 8 x 8\n"
        "  hint: give 3-channel images"
    )


def test_a_session_keeps_four_by_four_winograd_kernels_equal_to_the_formula(monkeypatch):
    """A 64 -> 64 3x3 conv at 56 x 56 takes F(4x4, 3x3) (conv.WINOGRAD43_MIN_OUTPUT): the session keeps its
    36 transformed kernels per channel pair, G g G^T with Lavin and Gray's 6 x 3 G (written out below and
    applied in float64), and its output is the unfused graph's to F(4x4)'s float32 error (about 1e-5 of the
    largest value; its transforms multiply by up to 8 and 1/24)."""
    spec = {
        "name": "four",
        "input": [8, 56, 56],
        "nodes": [
            {"name": "widen", "op": "conv2d", "out_channels": 64, "kernel": 1},
            {"name": "c", "op": "conv2d", "out_channels": 64, "kernel": 3, "padding": 1, "bias": False},
            {"name": "bn", "op": "batch_norm"},
            {"name": "r", "op": "relu"},
        ],
    }
    model = archspec.load(spec)
    weights = model.init_weights(5)
    x = np.random.default_rng(6).normal(size=(1, 8, 56, 56)).astype(np.float32)
    unfused = reference.run(model.graph, x, weights, keep=lambda n: n == "r")["r"]
    taken = _spy_winograd(monkeypatch)
    session = model.session(weights)
    got = session(x)
    assert taken == ["c"]
    kept = session._derived["c"]["winograd43"]
    assert kept.shape == (36, 1, 64, 64) and "winograd" not in session._derived["c"]
    g = np.array(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ]
    )
    want = np.einsum("ai,ocij,bj->abo" + "c", g, weights["c.weight"].astype(np.float64), g).reshape(36, 1, 64, 64)
    np.testing.assert_allclose(kept, want, rtol=0, atol=1e-6 * float(np.abs(want).max()))
    np.testing.assert_allclose(got, unfused, rtol=0, atol=4e-5 * float(np.abs(unfused).max()))
