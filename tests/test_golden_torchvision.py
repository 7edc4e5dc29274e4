"""Every torchvision-equivalent spec has torchvision's params and MACs, ends at the logits like
torchvision, and (when the optional PyTorch exports exist) torchvision's module names and shapes."""

from __future__ import annotations

import importlib.util
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest
from golden import CROP, SPECS, TORCHVISION, TRAIN_OUTPUTS, TVREF, TVREF_HOW, analysis, gflops_window, layers, model

NAMES = sorted(TORCHVISION)


@pytest.mark.parametrize("name", NAMES)
def test_params_equal_torchvision_num_params(name):
    # num_params counts every trainable tensor of the model torchvision builds, training-only heads too.
    a = analysis(name)
    assert a.totals.params + (a.train_extra.params if a.train_extra else 0) == TORCHVISION[name][1]


@pytest.mark.parametrize("name", NAMES)
def test_macs_round_to_torchvision_gflops(name):
    low, high = gflops_window(TORCHVISION[name][2])
    assert low <= analysis(name).totals.macs < high


@pytest.mark.parametrize("name", NAMES)
def test_spec_metadata_cites_the_same_figures(name):
    reference = analysis(name).metadata["reference"]
    assert reference["params"] == TORCHVISION[name][1]
    assert Decimal(str(reference["gflops"])) == Decimal(TORCHVISION[name][2])


@pytest.mark.parametrize("name", NAMES)
def test_ends_at_the_logits(name):
    # torchvision's forward (eval mode) returns 1000 logits (no softmax; auxiliary heads only in training)
    # for an input of its weights' crop size.
    a = analysis(name)
    logits = TORCHVISION[name][3]
    crop = CROP.get(name, 224)
    assert a.input_shape == (3, crop, crop)
    assert a.outputs == (logits,) and a.train_outputs == TRAIN_OUTPUTS.get(name, ())
    assert layers(name)[logits].output_shape == (1000,)
    assert all(layer.op != "softmax" for layer in a.layers)


def _export(name):
    if TVREF is None:
        pytest.skip(f"optional PyTorch exports not configured: {TVREF_HOW}")
    path = TVREF / f"{TORCHVISION[name][0]}.json"
    if not path.exists():
        pytest.skip(f"{path} not found: {TVREF_HOW}")
    return json.loads(path.read_text())


@pytest.mark.parametrize("name", NAMES)
def test_weighted_layers_are_torchvision_modules(name):
    """Every layer with params is a torchvision module of the same name and size, and vice versa (a parameter
    held directly by a module with children, ConvNeXt's layer_scale, counts under its state_dict key)."""
    torch_weighted = _crosscheck_script().weighted_modules(_export(name))
    assert {n: layer.params for n, layer in layers(name).items() if layer.params} == torch_weighted


@pytest.mark.parametrize("name", NAMES)
def test_every_torchvision_module_call_has_its_output_shape(name):
    # ConvNeXt's Permute modules are not layers; the modules between them are compared in C x H x W order.
    calls = _crosscheck_script().module_calls(_export(name))
    ours = layers(name)
    assert [c["name"] for c in calls if c["name"] not in ours] == []
    # torchvision calls some weightless modules several times (ResNet's one `relu`); archspec names
    # each call, so only modules called once are compared by shape.
    counts = Counter(c["name"] for c in calls)
    once = [c for c in calls if counts[c["name"]] == 1]
    assert [c["name"] for c in once if list(ours[c["name"]].output_shape) != c["output_shape"]] == []


def test_crosscheck_script_covers_the_same_specs():
    """benchmarks/torch_crosscheck.py keeps its own spec -> (builder, input size) table of every torchvision
    CNN classifier (it is run from a checkout, not imported from tests): it must hold this table's specs
    with the same builders and crop sizes, and every spec it names that exists is in this table."""
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_crosscheck.py"
    spec = importlib.util.spec_from_file_location("torch_crosscheck", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert {name: script.TORCHVISION.get(name) for name in TORCHVISION} == {n: r[0] for n, r in TORCHVISION.items()}
    assert {name: script.INPUT_SIZE[name] for name in TORCHVISION} == {n: CROP.get(n, 224) for n in TORCHVISION}
    shipped = {name for name in script.TORCHVISION if (SPECS / f"{name}.yaml").exists()}
    assert shipped <= set(TORCHVISION)


# ---- training memory: tensors autograd saves, against torch's saved_tensors_hooks (exports only) ---------


def _crosscheck_script():
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "torch_crosscheck.py"
    spec = importlib.util.spec_from_file_location("torch_crosscheck", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    return script


def _training_export(name):
    meta = _export(name)
    if "training_saved" not in meta:
        pytest.skip(f"{TORCHVISION[name][0]}.json has no training_saved: re-export with --force ({TVREF_HOW})")
    return meta


@pytest.mark.parametrize("name", NAMES)
def test_saved_tensor_bytes_equal_torch(name):
    """At batch 1 and 8: unique saved storages in total, and charged per torchvision module, to the byte;
    parameter and buffer bytes too."""
    meta = _training_export(name)
    ref = meta["training_saved"]
    group = _crosscheck_script().saved_by_module
    measured = {b: v for b, v in ref["batches"].items() if "total_bytes" in v}  # torch may fail at batch 1
    if not measured:
        pytest.skip(f"torch recorded no training forward: {ref['batches']}")
    for batch, theirs in measured.items():
        training = model(name).analyze(batch=int(batch), optimizer="sgd").training
        assert training.saved_activation_bytes == theirs["total_bytes"], batch
        assert group(training.layer_saved_bytes(), meta) == group(theirs["by_module"], meta), batch
        assert (training.param_bytes, training.buffer_bytes) == (ref["param_bytes"], ref["buffer_bytes"])


def test_a_batch_torch_cannot_train_at_is_a_note_not_a_failure(tmp_path):
    """torch cannot train Inception-v3 at batch 1 (its auxiliary head batch-normalizes a 1 x 1 map): the
    crosscheck notes that batch and compares the others; with no batch compared at all it fails. The
    export here is made up (no torch needed): batch 8's total of 1 byte is wrong on purpose."""
    script = _crosscheck_script()
    error = {"error": "Expected more than 1 value per channel when training"}
    meta = {
        "leaf_calls": [],
        "training_saved": {"batches": {"1": error}, "modules": [], "param_bytes": 0, "buffer_bytes": 0},
    }
    (tmp_path / "resnet18.json").write_text(json.dumps(meta))
    alone = script.compare_training("resnet18", "resnet18", tmp_path)
    assert alone["problems"] == [f"batch 1: no torch figure ({error['error']})"] and alone["notes"] == []
    meta["training_saved"]["batches"]["8"] = {"total_bytes": 1, "by_module": {}}
    (tmp_path / "resnet18.json").write_text(json.dumps(meta))
    both = script.compare_training("resnet18", "resnet18", tmp_path)
    assert both["notes"] == [f"batch 1: no torch figure ({error['error']})"]
    assert [p for p in both["problems"] if p.startswith("batch 8: saved ")] != []
    assert not any(p.startswith("batch 1") for p in both["problems"])
