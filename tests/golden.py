"""Shared helpers for the golden tests: cached static analyses of the shipped specs, the torchvision
reference table, and optional PyTorch exports. Numbers here are typed from published sources only."""

from __future__ import annotations

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
}

# Input resolution where it is not 224: the crop_size of the weights' transforms (the IMAGENET1K_V1 entry),
# at which torchvision measures GFLOPS.
CROP = {"inception_v3": 299}
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
