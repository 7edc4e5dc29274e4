"""Shared helpers for the golden tests: cached static analyses of the shipped specs, the torchvision
reference table, and optional PyTorch exports. Numbers here are typed from published sources only."""

from __future__ import annotations

import math
import os
from decimal import Decimal
from functools import cache
from pathlib import Path

import archspec

SPECS = Path(__file__).resolve().parents[1] / "specs"
# Optional exports made with PyTorch (torchvision module names, shapes, per-module params): the --out
# directory of benchmarks/torch_crosscheck.py, named by $ARCHSPEC_TVREF. Unset (as in CI, where torch is
# absent) the tests that use them skip. See the README's "Cross-checking against PyTorch (optional)".
TVREF = Path(os.environ["ARCHSPEC_TVREF"]) if os.environ.get("ARCHSPEC_TVREF") else None
TVREF_HOW = (
    "set ARCHSPEC_TVREF to a directory of PyTorch exports made by "
    "`python benchmarks/torch_crosscheck.py --torch-python PY --out DIR` (PY: a Python with torch and torchvision)"
)

# spec -> (torchvision builder, num_params, GFLOPS as published, node holding the logits).
# Source: torchvision 0.29's weights metadata (each builder's IMAGENET1K_V1 weights: `meta["num_params"]`
# and `meta["_ops"]`, also printed in torchvision's model documentation tables). torchvision's GFLOPS are GMACs of conv + linear weights,
# bias excluded -- archspec's `macs`. GoogLeNet's figures exclude the auxiliary heads (aux_logits=False).
TORCHVISION = {
    "alexnet_torchvision": ("alexnet", 61_100_840, "0.714", "classifier.6"),
    "vgg11": ("vgg11", 132_863_336, "7.609", "classifier.6"),
    "vgg13": ("vgg13", 133_047_848, "11.308", "classifier.6"),
    "vgg16": ("vgg16", 138_357_544, "15.47", "classifier.6"),
    "vgg19": ("vgg19", 143_667_240, "19.632", "classifier.6"),
    "vgg11_bn": ("vgg11_bn", 132_868_840, "7.609", "classifier.6"),
    "vgg13_bn": ("vgg13_bn", 133_053_736, "11.308", "classifier.6"),
    "vgg16_bn": ("vgg16_bn", 138_365_992, "15.47", "classifier.6"),
    "vgg19_bn": ("vgg19_bn", 143_678_248, "19.632", "classifier.6"),
    "googlenet_torchvision": ("googlenet", 6_624_904, "1.498", "fc"),
    "resnet18": ("resnet18", 11_689_512, "1.814", "fc"),
    "resnet34": ("resnet34", 21_797_672, "3.664", "fc"),
    "resnet50": ("resnet50", 25_557_032, "4.089", "fc"),
    "resnet101": ("resnet101", 44_549_160, "7.801", "fc"),
    "resnet152": ("resnet152", 60_192_808, "11.514", "fc"),
    "wide_resnet50_2": ("wide_resnet50_2", 68_883_240, "11.398", "fc"),
    "wide_resnet101_2": ("wide_resnet101_2", 126_886_696, "22.753", "fc"),
    "resnext50_32x4d": ("resnext50_32x4d", 25_028_904, "4.23", "fc"),
    "resnext101_32x8d": ("resnext101_32x8d", 88_791_336, "16.414", "fc"),
    "resnext101_64x4d": ("resnext101_64x4d", 83_455_272, "15.46", "fc"),
    "densenet121": ("densenet121", 7_978_856, "2.834", "classifier"),
    "densenet161": ("densenet161", 28_681_000, "7.728", "classifier"),
    "densenet169": ("densenet169", 14_149_480, "3.36", "classifier"),
    "densenet201": ("densenet201", 20_013_928, "4.291", "classifier"),
    "squeezenet1_0": ("squeezenet1_0", 1_248_424, "0.819", "flatten"),
    "squeezenet1_1": ("squeezenet1_1", 1_235_496, "0.349", "flatten"),
    # torchvision 0.29.1, RegNet_X_*_Weights.IMAGENET1K_V1.meta (num_params, _ops); the V2 weights have the
    # same figures.
    "regnet_x_400mf": ("regnet_x_400mf", 5_495_976, "0.414", "fc"),
    "regnet_x_800mf": ("regnet_x_800mf", 7_259_656, "0.8", "fc"),
    "regnet_x_1_6gf": ("regnet_x_1_6gf", 9_190_136, "1.603", "fc"),
    "regnet_x_3_2gf": ("regnet_x_3_2gf", 15_296_552, "3.177", "fc"),
    "regnet_x_8gf": ("regnet_x_8gf", 39_572_648, "7.995", "fc"),
    "regnet_x_16gf": ("regnet_x_16gf", 54_278_536, "15.941", "fc"),
    "regnet_x_32gf": ("regnet_x_32gf", 107_811_560, "31.736", "fc"),
    # Inception_V3_Weights.IMAGENET1K_V1.meta. num_params counts the auxiliary head (AuxLogits, in the
    # released state_dict); GFLOPS is the inference path at 299 x 299 (the head runs in training only).
    "inception_v3": ("inception_v3", 27_161_264, "5.713", "fc"),
    # torchvision 0.29.1, each builder's weights meta (num_params, _ops); where there are V1 and V2 weights
    # (mobilenet_v2, mobilenet_v3_large, efficientnet_b1) both give the same figures.
    "mobilenet_v2": ("mobilenet_v2", 3_504_872, "0.301", "classifier.1"),
    "mobilenet_v3_large": ("mobilenet_v3_large", 5_483_032, "0.217", "classifier.3"),
    "mobilenet_v3_small": ("mobilenet_v3_small", 2_542_856, "0.057", "classifier.3"),
    "mnasnet0_5": ("mnasnet0_5", 2_218_512, "0.104", "classifier.1"),
    "mnasnet0_75": ("mnasnet0_75", 3_170_208, "0.215", "classifier.1"),
    "mnasnet1_0": ("mnasnet1_0", 4_383_312, "0.314", "classifier.1"),
    "mnasnet1_3": ("mnasnet1_3", 6_282_256, "0.526", "classifier.1"),
    "shufflenet_v2_x0_5": ("shufflenet_v2_x0_5", 1_366_792, "0.04", "fc"),
    "shufflenet_v2_x1_0": ("shufflenet_v2_x1_0", 2_278_604, "0.145", "fc"),
    "shufflenet_v2_x1_5": ("shufflenet_v2_x1_5", 3_503_624, "0.296", "fc"),
    "shufflenet_v2_x2_0": ("shufflenet_v2_x2_0", 7_393_996, "0.583", "fc"),
    "efficientnet_b0": ("efficientnet_b0", 5_288_548, "0.386", "classifier.1"),
    "efficientnet_b1": ("efficientnet_b1", 7_794_184, "0.687", "classifier.1"),
    "efficientnet_b2": ("efficientnet_b2", 9_109_994, "1.088", "classifier.1"),
    "efficientnet_b3": ("efficientnet_b3", 12_233_232, "1.827", "classifier.1"),
    "efficientnet_b4": ("efficientnet_b4", 19_341_616, "4.394", "classifier.1"),
    "efficientnet_b5": ("efficientnet_b5", 30_389_784, "10.266", "classifier.1"),
    "efficientnet_b6": ("efficientnet_b6", 43_040_704, "19.068", "classifier.1"),
    "efficientnet_b7": ("efficientnet_b7", 66_347_960, "37.746", "classifier.1"),
    "efficientnet_v2_s": ("efficientnet_v2_s", 21_458_488, "8.366", "classifier.1"),
    "efficientnet_v2_m": ("efficientnet_v2_m", 54_139_356, "24.582", "classifier.1"),
    "efficientnet_v2_l": ("efficientnet_v2_l", 118_515_272, "56.08", "classifier.1"),
    # torchvision 0.29.1, RegNet_Y_*_Weights.IMAGENET1K_V1.meta (the V2 weights give the same figures);
    # regnet_y_128gf has no IMAGENET1K weights: IMAGENET1K_SWAG_E2E_V1.meta, GFLOPS at its 384 crop.
    "regnet_y_400mf": ("regnet_y_400mf", 4_344_144, "0.402", "fc"),
    "regnet_y_800mf": ("regnet_y_800mf", 6_432_512, "0.834", "fc"),
    "regnet_y_1_6gf": ("regnet_y_1_6gf", 11_202_430, "1.612", "fc"),
    "regnet_y_3_2gf": ("regnet_y_3_2gf", 19_436_338, "3.176", "fc"),
    "regnet_y_8gf": ("regnet_y_8gf", 39_381_472, "8.473", "fc"),
    "regnet_y_16gf": ("regnet_y_16gf", 83_590_140, "15.912", "fc"),
    "regnet_y_32gf": ("regnet_y_32gf", 145_046_770, "32.28", "fc"),
    "regnet_y_128gf": ("regnet_y_128gf", 644_812_894, "374.57", "fc"),
    # torchvision 0.29.1, ConvNeXt_*_Weights.IMAGENET1K_V1.meta
    "convnext_tiny": ("convnext_tiny", 28_589_128, "4.456", "classifier.2"),
    "convnext_small": ("convnext_small", 50_223_688, "8.684", "classifier.2"),
    "convnext_base": ("convnext_base", 88_591_464, "15.355", "classifier.2"),
    "convnext_large": ("convnext_large", 197_767_336, "34.361", "classifier.2"),
}

# Input resolution where it is not 224: the crop_size of the weights' transforms (the IMAGENET1K_V1 entry),
# at which torchvision measures GFLOPS.
CROP = {
    "inception_v3": 299,
    "efficientnet_b1": 240,
    "efficientnet_b2": 288,
    "efficientnet_b3": 300,
    "efficientnet_b4": 380,
    "efficientnet_b5": 456,
    "efficientnet_b6": 528,
    "efficientnet_b7": 600,
    "efficientnet_v2_s": 384,
    "efficientnet_v2_m": 480,
    "efficientnet_v2_l": 480,
    "regnet_y_128gf": 384,  # IMAGENET1K_SWAG_E2E_V1 (resize 384, bicubic)
}
# Training-only outputs (auxiliary heads): counted in torchvision's num_params, not in its GFLOPS.
TRAIN_OUTPUTS = {"inception_v3": ("AuxLogits.fc",)}


@cache
def model(name: str):
    return archspec.load(str(SPECS / f"{name}.yaml"))


@cache
def analysis(name: str):
    return model(name).analyze()


@cache
def layers(name: str) -> dict:
    return {layer.name: layer for layer in analysis(name).layers}


def gflops_window(published: str) -> tuple[Decimal, Decimal]:
    """MACs that round to a published GFLOPS figure at its printed precision:
    "4.089" -> [4.0885e9, 4.0895e9); "15.47" -> [15.465e9, 15.475e9)."""
    value = Decimal(published)
    half_ulp = Decimal(1).scaleb(value.as_tuple().exponent) / 2
    return (value - half_ulp) * 10**9, (value + half_ulp) * 10**9


def check(name, node, *, weights, params, output, macs):
    layer = layers(name)[node]
    assert dict(layer.param_tensors).get("weight") == weights
    assert layer.params == params
    assert layer.output_shape == output
    assert layer.macs == macs


def params_under(name: str, prefix: str) -> int:
    return sum(layer.params for n, layer in layers(name).items() if n == prefix or n.startswith(prefix + "."))


def regnet_stages(d, w_0, w_a, w_m, g):
    """The paper's Section 3.3 rule as torchvision applies it: block j gets u_j = w_0 + w_a * j,
    s_j = round(log_{w_m}(u_j / w_0)) and width w_0 * w_m^s_j rounded to a multiple of 8; consecutive blocks of
    equal width form a stage. The group width is capped at the stage width, and the width is made divisible
    by it with torchvision's _make_divisible: nearest multiple, raised one step if that is more than 10% below.
    pycls rounds to the nearest multiple only, which differs in one place: regnet_y_8gf's first stage,
    192 -> 3 x 56 = 168 (12.5% below 192), which torchvision raises to 224 (its regnet_y_8gf has 39,381,472
    params; with 168 it would have 39,180,068, counted with torchvision's RegNet class on those widths, the
    39.2M of pycls's RegNetY-8.0GF). Returns [(depth, width, groups)] per stage."""
    widths = []
    for j in range(d):
        s = round(math.log((w_0 + w_a * j) / w_0) / math.log(w_m))
        widths.append(round(w_0 * w_m**s / 8) * 8)
    runs = []
    for w in widths:
        if runs and runs[-1][1] == w:
            runs[-1][0] += 1
        else:
            runs.append([1, w])
    out = []
    for depth, w in runs:
        group = min(g, w)
        nearest = max(group, int(w + group / 2) // group * group)
        if nearest < 0.9 * w:
            nearest += group
        out.append((depth, nearest, nearest // group))
    return out


def check_regnet_stages(name: str, plan, depth: int, crop: int = 224) -> list[tuple[str, int, int, int]]:
    """What every RegNet spec must show for a stage plan [(depth, width, groups)]: four stages of `depth`
    blocks in all, each opening with a stride-2 block that projects its shortcut, and a grouped 3x3 of
    width x (width / groups) x 3 x 3 weights. Returns (stage prefix, depth, width, output size) per stage."""
    names = layers(name)
    assert len(plan) == 4  # four stages after the stem
    assert sum(d for d, _, _ in plan) == depth
    size = crop // 2  # after the stride-2 stem
    out = []
    for i, (blocks, width, groups) in enumerate(plan, start=1):
        size //= 2  # every stage starts with a stride-2 block
        stage = f"trunk_output.block{i}.block{i}"
        assert f"{stage}-{blocks - 1}.f.c.0" in names
        assert f"{stage}-{blocks}.f.c.0" not in names
        # The first block projects its shortcut; the others add the identity.
        assert f"{stage}-0.proj.0" in names
        assert f"{stage}-1.proj.0" not in names
        b = names[f"{stage}-0.f.b.0"]
        assert dict(b.param_tensors) == {"weight": width * (width // groups) * 9}
        assert b.output_shape == (width, size, size)
        assert names[f"{stage}-{blocks - 1}.activation"].output_shape == (width, size, size)
        out.append((stage, blocks, width, size))
    return out
