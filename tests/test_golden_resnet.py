"""Golden figures for the ResNet family (torchvision's torchvision/models/resnet.py).

Every expected number is typed from a published source or computed by hand in the comments beside it,
never copied from archspec's output. Static analysis only (no forward passes), so the file runs fast.
"""

from __future__ import annotations

import pytest
from golden import check, layers

# ---- layer names (torchvision module paths) ---------------------------------------------------------


def test_resnet50_downsample_only_in_first_block_of_a_stage():
    names = layers("resnet50")
    assert "layer3.0.downsample.0" in names
    assert "layer3.0.downsample.1" in names
    assert "layer3.5.downsample.0" not in names  # identity shortcut
    assert "layer3.5.conv2" in names
    assert "layer3.6.conv1" not in names  # layer3 has 6 blocks: 0..5
    # layer1.0 projects 64 -> 256 channels even at stride 1 (bottleneck expansion 4).
    assert "layer1.0.downsample.0" in names
    assert "layer1.1.downsample.0" not in names


def test_resnet18_layer1_has_identity_shortcuts():
    names = layers("resnet18")
    assert "layer1.0.downsample.0" not in names  # 64 -> 64 channels, stride 1
    assert "layer2.0.downsample.0" in names
    assert "layer1.1.conv2" in names
    assert "layer1.0.conv3" not in names  # BasicBlock has two convs


@pytest.mark.parametrize(
    ("name", "last_blocks"),
    [
        # He et al. 2016 Table 1: stage depths [2,2,2,2], [3,4,6,3], [3,4,23,3], [3,8,36,3].
        ("resnet18", (1, 1, 1, 1)),
        ("resnet34", (2, 3, 5, 2)),
        ("resnet50", (2, 3, 5, 2)),
        ("resnet101", (2, 3, 22, 2)),
        ("resnet152", (2, 7, 35, 2)),
        ("wide_resnet101_2", (2, 3, 22, 2)),
        ("resnext101_32x8d", (2, 3, 22, 2)),
        ("resnext101_64x4d", (2, 3, 22, 2)),
    ],
)
def test_stage_depths(name, last_blocks):
    names = layers(name)
    for stage, last in enumerate(last_blocks, start=1):
        assert f"layer{stage}.{last}.conv1" in names
        assert f"layer{stage}.{last + 1}.conv1" not in names


# ---- hand-computed layers ---------------------------------------------------------------------------


def test_resnet50_stem():
    # conv1: 64 x 3 x 7 x 7 = 9,408 weights, no bias; 224 -> (224 + 2*3 - 7) // 2 + 1 = 112.
    # MACs 9,408 * 112 * 112 = 9,408 * 12,544 = 118,013,952.
    check("resnet50", "conv1", weights=9_408, params=9_408, output=(64, 112, 112), macs=118_013_952)
    # maxpool 3x3 /2 p1: 112 -> (112 + 2 - 3) // 2 + 1 = 56.
    assert layers("resnet50")["maxpool"].output_shape == (64, 56, 56)


def test_resnet50_layer1_0_conv2():
    # 64 * 64 * 3 * 3 = 36,864 weights; output 64 x 56 x 56; MACs 36,864 * 56 * 56 = 115,605,504.
    check("resnet50", "layer1.0.conv2", weights=36_864, params=36_864, output=(64, 56, 56), macs=115_605_504)
    # bn3 after the 1x1 expansion to 256: gamma + beta = 2 * 256 = 512 params.
    assert layers("resnet50")["layer1.0.bn3"].params == 512


def test_resnet50_stride_is_on_conv2_v1_5():
    # torchvision v1.5: layer2.0.conv1 (1x1, 256 -> 128) keeps 56 x 56; conv2 (3x3 /2) halves to 28.
    # conv1: 128 * 256 = 32,768 weights; MACs 32,768 * 56 * 56 = 102,760,448.
    check("resnet50", "layer2.0.conv1", weights=32_768, params=32_768, output=(128, 56, 56), macs=102_760_448)
    # conv2: 128 * 128 * 9 = 147,456 weights; MACs 147,456 * 28 * 28 = 115,605,504.
    check("resnet50", "layer2.0.conv2", weights=147_456, params=147_456, output=(128, 28, 28), macs=115_605_504)


def test_resnet50_layer3_0_downsample():
    # 1x1 /2 projection 512 -> 1024: 524,288 weights; 28 -> 14; MACs 524,288 * 196 = 102,760,448.
    check("resnet50", "layer3.0.downsample.0", weights=524_288, params=524_288, output=(1024, 14, 14), macs=102_760_448)


def test_resnet50_fc():
    # 2048 -> 1000: 2,048,000 weights + 1,000 biases = 2,049,000 params; MACs 2,048,000 (bias excluded).
    check("resnet50", "fc", weights=2_048_000, params=2_049_000, output=(1000,), macs=2_048_000)


def test_resnet18_projection_shortcut():
    # layer2.0.downsample.0: 1x1 /2, 64 -> 128: 8,192 weights; 56 -> 28; MACs 8,192 * 784 = 6,422,528.
    check("resnet18", "layer2.0.downsample.0", weights=8_192, params=8_192, output=(128, 28, 28), macs=6_422_528)
    # BasicBlock layer1.0.conv1: 64 * 64 * 9 = 36,864 weights; MACs 36,864 * 3,136 = 115,605,504.
    check("resnet18", "layer1.0.conv1", weights=36_864, params=36_864, output=(64, 56, 56), macs=115_605_504)


def test_wide_resnet50_2_doubles_inner_width_only():
    # width_per_group 128: layer1 width = 64 * 128/64 = 128, out stays 64 * 4 = 256.
    # conv1 64 -> 128 (1x1): 8,192 weights; conv3 128 -> 256: 32,768 weights.
    check("wide_resnet50_2", "layer1.0.conv1", weights=8_192, params=8_192, output=(128, 56, 56), macs=8_192 * 3_136)
    check("wide_resnet50_2", "layer1.0.conv3", weights=32_768, params=32_768, output=(256, 56, 56), macs=32_768 * 3_136)
    # layer4.0.conv2: 1024 * 1024 * 9 = 9,437,184 weights; 14 -> 7; MACs 9,437,184 * 49 = 462,422,016.
    check(
        "wide_resnet50_2", "layer4.0.conv2", weights=9_437_184, params=9_437_184, output=(1024, 7, 7), macs=462_422_016
    )


def test_resnext_grouped_conv2():
    # resnext50_32x4d layer1: width = 64 * 4/64 * 32 = 128, groups 32 -> 128 / 32 = 4 input channels per filter.
    # 128 * 4 * 3 * 3 = 4,608 weights; MACs 4,608 * 56 * 56 = 14,450,688.
    check("resnext50_32x4d", "layer1.0.conv2", weights=4_608, params=4_608, output=(128, 56, 56), macs=14_450_688)
    # resnext101_32x8d layer4: width = 512 * 8/64 * 32 = 2048; 2048 / 32 = 64 per group.
    # 2048 * 64 * 9 = 1,179,648 weights; 14 -> 7; MACs 1,179,648 * 49 = 57,802,752.
    check(
        "resnext101_32x8d", "layer4.0.conv2", weights=1_179_648, params=1_179_648, output=(2048, 7, 7), macs=57_802_752
    )
    # resnext101_64x4d layer4: width = 512 * 4/64 * 64 = 2048, groups 64 -> 32 per group.
    # 2048 * 32 * 9 = 589,824 weights; MACs 589,824 * 49 = 28,901,376.
    check("resnext101_64x4d", "layer4.0.conv2", weights=589_824, params=589_824, output=(2048, 7, 7), macs=28_901_376)


# ---- receptive fields (hand-derived with r += (k - 1) * j, j *= s; Araujo et al., Distill 2019) --------


def test_resnet50_final_receptive_field_v1_5():
    # conv1 7/2: r 7, j 2; maxpool 3/2: r 11, j 4; layer1: 3 x (3x3 at j 4) = +24 -> 35;
    # layer2: 3x3 /2 at j 4 -> 43, j 8, then 3 x 16 -> 91; layer3: +16 -> 107, j 16, 5 x 32 -> 267;
    # layer4: +32 -> 299, j 32, 2 x 64 -> 427. (With the stride on the first 1x1, as in the paper and
    # TF-Slim's resnet_v1_50, the same sum gives Distill's 483; v1.5 sees less.)
    rf = layers("resnet50")["layer4.2.relu3"].receptive_field
    assert rf.size() == (427, 427)
    assert rf.stride() == (32, 32)
    assert not rf.misaligned and not rf.position_dependent
    assert layers("resnet50")["layer2.3.relu3"].receptive_field.size() == (91, 91)


def test_resnet18_final_receptive_field():
    # maxpool r 11, j 4; layer1: 4 x 8 -> 43; layer2: +8 -> 51, j 8, 3 x 16 -> 99;
    # layer3: +16 -> 115, j 16, 3 x 32 -> 211; layer4: +32 -> 243, j 32, 3 x 64 -> 435.
    rf = layers("resnet18")["layer4.1.relu2"].receptive_field
    assert rf.size() == (435, 435)
    assert rf.stride() == (32, 32)
