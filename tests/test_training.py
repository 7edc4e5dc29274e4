"""Training memory (PyTorch eager autograd, float32): hand arithmetic on small graphs and ResNet-18's stem,
the CLI, and hypothesis properties on random graphs. No torch here: the figures are checked against
PyTorch itself by benchmarks/torch_crosscheck.py and tests/test_golden_torchvision.py (ARCHSPEC_TVREF)."""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from test_static_vs_measured import random_graph

import archspec
from archspec.analysis.training import OPTIMIZERS
from archspec.cli import OPTIMIZERS as CLI_OPTIMIZERS
from archspec.cli import main
from archspec.errors import SpecError
from conftest import SPECS

# input 3 x 8 x 8 -> conv 4 (3x3, pad 1) -> BN -> ReLU -> maxpool 2 -> flatten -> dropout -> linear 10
TINY = """name: tiny
input: [3, 8, 8]
metadata: {source: test}
nodes:
  - {name: conv, op: conv2d, out_channels: 4, kernel: 3, padding: 1}
  - {name: bn, op: batch_norm}
  - {name: relu, op: relu}
  - {name: pool, op: max_pool2d, kernel: 2}
  - {name: flat, op: flatten}
  - {name: drop, op: dropout%s}
  - {name: fc, op: linear, out_features: 10}
"""
# Per image, float32 (4 B), by hand:
#   conv saves x:                         3*8*8*4   =  768
#   bn saves conv's output 4*8*8*4 = 1024, and mean + invstd 2*4*4 = 32 (batch-constant)
#   relu saves its result (in place: bn's output storage)            = 1024
#   pool saves its input (relu's result, already charged) + int64 indices 4*4*4*8 = 512
#   flatten: a view, nothing;  dropout: a float32 mask of its input, 64*4 = 256
#   fc saves its input (dropout's output, a new tensor)              =  256
TINY_CHARGED = {"conv": 768, "bn": 1024 + 32, "relu": 1024, "pool": 512, "flat": 0, "drop": 256, "fc": 256}
TINY_PER_IMAGE, TINY_CONSTANT = 768 + 1024 + 1024 + 512 + 256 + 256, 32
# params: conv 4*3*3*3 + 4 = 112, bn 4 + 4 = 8, fc 64*10 + 10 = 650 -> 770 params = 3080 B in 6 tensors
TINY_PARAM_BYTES, TINY_TENSORS = 770 * 4, 6


def _load(tmp_path, text):
    path = tmp_path / "tiny.yaml"
    path.write_text(text)
    return archspec.load(str(path)), path


def test_tiny_graph_by_hand(tmp_path):
    model, _ = _load(tmp_path, TINY % "")
    for batch in (1, 8):
        t = model.analyze(batch=batch, optimizer="sgd").training
        assert t.layer_saved_bytes() == {
            k: v * batch if k != "bn" else 1024 * batch + 32 for k, v in TINY_CHARGED.items()
        }
        assert t.saved_activation_bytes == TINY_PER_IMAGE * batch + TINY_CONSTANT
        assert t.input_bytes == 768 * batch
        assert (t.param_bytes, t.grad_bytes, t.optimizer_state_bytes) == (TINY_PARAM_BYTES, TINY_PARAM_BYTES, 0)
        assert t.buffer_bytes == 2 * 4 * 4 + 8  # running mean and var, int64 num_batches_tracked
        assert t.total_bytes == t.saved_activation_bytes + 2 * TINY_PARAM_BYTES + 40
        # torchinfo: input + 2 x outputs of layers with params (conv 256, bn 256, fc 10 elements) + params
        assert t.torchinfo_bytes == 768 * batch + 2 * (256 + 256 + 10) * 4 * batch + TINY_PARAM_BYTES


def test_optimizer_state(tmp_path):
    model, _ = _load(tmp_path, TINY % "")
    assert model.analyze(optimizer="momentum").training.optimizer_state_bytes == TINY_PARAM_BYTES
    # Adam: exp_avg and exp_avg_sq per parameter, plus a float32 step scalar per parameter tensor
    assert model.analyze(optimizer="adam").training.optimizer_state_bytes == 2 * TINY_PARAM_BYTES + 4 * TINY_TENSORS
    assert CLI_OPTIMIZERS == OPTIMIZERS


def test_dropout_flags(tmp_path):
    # p = 0: PyTorch returns the input, nothing saved, and fc saves the flatten view of pool's output
    t = _load(tmp_path, TINY % ", p: 0.0")[0].analyze(optimizer="sgd").training
    assert t.layer_saved_bytes()["drop"] == 0 and t.layer_saved_bytes()["fc"] == 256
    # in place: the mask is saved, and the output is pool's storage, which fc saves (pool's output is new)
    t = _load(tmp_path, TINY % ", inplace: true")[0].analyze(optimizer="sgd").training
    (pool_out,) = [s for s in t.storages if s.key == "pool"]
    assert pool_out.savers == ("fc",)


def test_resnet18_stem_by_hand():
    t = archspec.load(str(SPECS / "resnet18.yaml")).analyze(optimizer="sgd").training
    saved = t.layer_saved_bytes()
    assert saved["conv1"] == 3 * 224 * 224 * 4  # x
    assert saved["bn1"] == 64 * 112 * 112 * 4 + 2 * 64 * 4  # conv1's output, mean and invstd
    assert saved["relu"] == 64 * 112 * 112 * 4  # its result, bn1's storage (in place)
    assert saved["maxpool"] == 64 * 56 * 56 * 8  # int64 indices; its input is relu's result
    assert saved["avgpool"] == 0 and saved["flatten"] == 0  # global pooling saves only sizes
    assert saved["fc"] == 512 * 4


def test_cli_train_fit_and_json(tmp_path):
    _, path = _load(tmp_path, TINY % "")
    total_at = lambda b: TINY_PER_IMAGE * b + TINY_CONSTANT + 2 * TINY_PARAM_BYTES + 40  # noqa: E731
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["analyze", str(path), "--train", "--fit", str(total_at(5)), "--format", "json"]) == 0
    data = json.loads(out.getvalue())
    assert data["totals"]["training"]["fit"] == {"budget_bytes": total_at(5), "largest_batch": 5}
    assert data["totals"]["training"]["total_bytes"] == total_at(1)
    assert [layer["saved_bytes"] for layer in data["layers"]] == list(TINY_CHARGED.values())
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["analyze", str(path), "--train", "--fit", str(total_at(5) - 1)]) == 0
    assert f"largest batch within {total_at(5) - 1:,} B" in out.getvalue() and ": 4 (needs" in out.getvalue()


@pytest.mark.parametrize(
    ("budget", "expected"), [("16GiB", 16 * 2**30), ("1.5GB", 1_500_000_000), ("800mib", 800 * 2**20), ("123", 123)]
)
def test_budget_units(budget, expected):
    from archspec.cli import _budget

    assert _budget(budget) == expected


@pytest.mark.parametrize(
    "args",
    [
        ["--fit", "16GiB"],  # without --train
        ["--optimizer", "adam"],  # without --train
        ["--train", "--fit", "16 parsecs"],
        ["--train", "--dtype", "float16"],
    ],
)
def test_cli_train_usage_errors(tmp_path, args):
    _, path = _load(tmp_path, TINY % "")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        assert main(["analyze", str(path), *args]) == 2
    assert "error" in err.getvalue() and "Traceback" not in err.getvalue()


def _random_model(spec):
    tmp = tempfile.mkdtemp()
    path = Path(tmp) / "random.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    try:
        model = archspec.load(str(path))
        model.analyze()
    except SpecError:
        assume(False)
    return model


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
@given(random_graph(), st.integers(1, 64), st.sampled_from(["sgd", "momentum", "adam"]))
def test_total_is_the_sum_of_unique_storages_and_affine_in_batch(spec, batch, optimizer):
    model = _random_model(spec)
    t = model.analyze(batch=batch, optimizer=optimizer).training
    keys = [s.key for s in t.storages]
    assert len(keys) == len(set(keys))
    unique = sum(s.size.at(batch) for s in t.storages)
    assert t.saved_activation_bytes == unique == sum(t.layer_saved_bytes().values())
    # each storage is charged to its first saver, in execution order
    order = {layer.name: i for i, layer in enumerate(model.analyze().layers)}
    for s in t.storages:
        assert list(s.savers) == sorted(s.savers, key=order.get)
    # the batch scales everything but BN's per-channel mean and invstd (2 x C float32 per BN layer)
    a1 = model.analyze(batch=1, optimizer=optimizer)
    bn_stats = sum(8 * layer.output_shape[0] for layer in a1.layers if layer.op == "batch_norm")
    assert t.saved_activations.constant == bn_stats
    per_image = a1.training.saved_activation_bytes - bn_stats
    assert t.saved_activation_bytes == batch * per_image + bn_stats
    # the total adds parameters, one gradient each, optimizer state and buffers
    assert (
        t.total_bytes
        == t.saved_activation_bytes
        + t.param_bytes * (2 + {"sgd": 0, "momentum": 1, "adam": 2}[optimizer])
        + (4 * sum(len(layer.param_tensors) for layer in a1.layers) if optimizer == "adam" else 0)
        + t.buffer_bytes
    )


def test_nothing_is_saved_before_the_first_parameter(tmp_path):
    """x does not require grad, so a max pool and a ReLU on it record no autograd node and save nothing
    (observed with torch 2.14); the conv after them saves its input for its weight's gradient."""
    model, _ = _load(
        tmp_path,
        "name: t\ninput: [1, 4, 4]\nmetadata: {source: t}\nnodes:\n"
        "  - {name: pool, op: max_pool2d, kernel: 2}\n  - {name: relu, op: relu}\n"
        "  - {name: conv, op: conv2d, out_channels: 2, kernel: 1}\n  - {name: relu2, op: relu}\n",
    )
    saved = model.analyze(optimizer="sgd").training.layer_saved_bytes()
    # conv: pool's 1 x 2 x 2 output (relu ran in place on it) = 16 B; relu2: its 2 x 2 x 2 result = 32 B
    assert saved == {"pool": 0, "relu": 0, "conv": 16, "relu2": 32}


SE_CHUNK = """name: se
input: [4, 4, 4]
metadata: {source: test}
nodes:
  - {name: c1, op: conv2d, out_channels: 4, kernel: 1}
  - {name: bn, op: batch_norm}
  - {name: act, op: silu}
  - {name: pool, op: adaptive_avg_pool2d, output_size: 1}
  - {name: fc, op: conv2d, out_channels: 4, kernel: 1}
  - {name: gate, op: sigmoid}
  - {name: scale, op: mul, inputs: [gate, act]}
  - {name: chunk, op: channel_chunk, chunks: 2, index: 1}
  - {name: c2, op: conv2d, out_channels: 2, kernel: 1}
  - {name: drop, op: drop_path, p: 0.2}
"""


def test_new_ops_by_hand(tmp_path):
    """Squeeze-and-excitation, a channel chunk and torchvision's stochastic depth (observed with torch 2.14)."""
    model, _ = _load(tmp_path, SE_CHUNK)
    t = model.analyze(batch=2, optimizer="sgd").training
    full = 4 * 4 * 4 * 4  # one 4 x 4 x 4 float32 map per image: 256 B
    assert t.layer_saved_bytes() == {
        "c1": 2 * full,  # x
        "bn": 2 * full + 2 * 4 * 4,  # c1's output; mean and invstd (batch-constant)
        "act": 2 * full,  # SiLU(inplace=True) saves a clone of its input
        "pool": 0,  # global average: sizes only
        "fc": 2 * 4 * 4,  # pool's 4 x 1 x 1 output
        "gate": 2 * 4 * 4,  # sigmoid's result
        "scale": 2 * full,  # the map (act's output, in bn's storage); the gate is sigmoid's result, charged there
        "chunk": 0,  # a view
        "c2": 2 * full,  # its input is a 2-channel view, which keeps scale's whole 4-channel output alive
        "drop": 2 * 4,  # noise, one float32 per image
    }
