"""Golden figures for Inception-v3 (Szegedy et al. 2016, "Rethinking the Inception Architecture for Computer
Vision"; torchvision's torchvision/models/inception.py) at torchvision's 299 x 299 crop.

Every expected number is typed from a published source (torchvision's weights metadata, the paper) or
computed by hand in the comments beside it. Static analysis only (no forward passes).
"""

from __future__ import annotations

import pytest
from golden import TORCHVISION, analysis, check, layers, params_under

NAME = "inception_v3"


@pytest.mark.parametrize(
    ("node", "shape"),
    [
        # torchvision's forward comments: N x 32 x 149 x 149, 32 x 147, 64 x 147, 64 x 73, 80 x 73, 192 x 71,
        # 192 x 35, 256/288/288 x 35, 768 x 17, 1280 x 8, 2048 x 8, 2048 x 1 x 1.
        ("Conv2d_1a_3x3.relu", (32, 149, 149)),
        ("Conv2d_2a_3x3.relu", (32, 147, 147)),
        ("Conv2d_2b_3x3.relu", (64, 147, 147)),
        ("maxpool1", (64, 73, 73)),
        ("Conv2d_3b_1x1.relu", (80, 73, 73)),
        ("Conv2d_4a_3x3.relu", (192, 71, 71)),
        ("maxpool2", (192, 35, 35)),
        ("Mixed_5b.cat", (256, 35, 35)),
        ("Mixed_5c.cat", (288, 35, 35)),
        ("Mixed_5d.cat", (288, 35, 35)),
        ("Mixed_6a.cat", (768, 17, 17)),
        ("Mixed_6e.cat", (768, 17, 17)),
        ("Mixed_7a.cat", (1280, 8, 8)),
        ("Mixed_7b.cat", (2048, 8, 8)),
        ("Mixed_7c.cat", (2048, 8, 8)),
        ("avgpool", (2048, 1, 1)),
        # InceptionAux's comments: 768 x 17 x 17 -> 768 x 5 x 5 -> 128 x 5 x 5 -> 768 x 1 x 1 -> 1000.
        ("AuxLogits.pool", (768, 5, 5)),
        ("AuxLogits.conv0.relu", (128, 5, 5)),
        ("AuxLogits.conv1.relu", (768, 1, 1)),
        ("AuxLogits.fc", (1000,)),
    ],
)
def test_torchvision_shapes_at_299(node, shape):
    assert layers(NAME)[node].output_shape == shape


def test_stem_conv():
    # 32 x 3 x 3 x 3 = 864 weights (no bias) + BatchNorm gamma/beta 64; 299 -> (299 - 3) // 2 + 1 = 149;
    # MACs 864 * 149 * 149 = 864 * 22,201 = 19,181,664.
    check(NAME, "Conv2d_1a_3x3.conv", weights=864, params=864, output=(32, 149, 149), macs=19_181_664)
    assert layers(NAME)["Conv2d_1a_3x3.bn"].params == 64


def test_factorized_seven_by_seven():
    # Mixed_6b (c7 = 128): branch7x7_2 is 1 x 7, 128 -> 128: 128 * 128 * 7 = 114,688 weights; padding (0, 3)
    # keeps 17 x 17; MACs 114,688 * 289 = 33,144,832. branch7x7_3 is 7 x 1, 128 -> 192: 172,032 weights.
    check(NAME, "Mixed_6b.branch7x7_2.conv", weights=114_688, params=114_688, output=(128, 17, 17), macs=33_144_832)
    check(NAME, "Mixed_6b.branch7x7_3.conv", weights=172_032, params=172_032, output=(192, 17, 17), macs=49_717_248)


def test_inception_e_expanded_filter_banks():
    # Mixed_7b: the 1 x 3 and 3 x 1 convs on one 384-channel map are concatenated: 768 channels per branch;
    # 320 + 768 + 768 + 192 = 2048.
    assert layers(NAME)["Mixed_7b.branch3x3"].output_shape == (768, 8, 8)
    assert layers(NAME)["Mixed_7b.branch3x3dbl"].output_shape == (768, 8, 8)
    # branch3x3_2a: 384 * 384 * 3 = 442,368 weights at 8 x 8: 28,311,552 MACs.
    check(NAME, "Mixed_7b.branch3x3_2a.conv", weights=442_368, params=442_368, output=(384, 8, 8), macs=28_311_552)


def test_auxiliary_head_is_training_only_and_in_num_params():
    a = analysis(NAME)
    # By hand: conv0 768 -> 128 (1x1) 98,304 + BN 256; conv1 128 -> 768 (5x5) 2,457,600 + BN 1,536;
    # fc 768 * 1000 + 1000 = 769,000. Sum 3,326,696.
    assert params_under(NAME, "AuxLogits") == 3_326_696
    assert a.train_extra.params == 3_326_696
    # MACs: conv0 98,304 * 25 + conv1 2,457,600 * 1 + fc 768,000 = 5,683,200.
    assert a.train_extra.macs == 5_683_200
    # torchvision's num_params (27,161,264) holds the head; the inference path alone is the rest.
    assert a.totals.params == TORCHVISION[NAME][1] - 3_326_696
    assert all(layer.train_only == name.startswith("AuxLogits") for name, layer in layers(NAME).items())


def test_papers_budget():
    # Abstract: "a computational cost of 5 billion multiply-adds per inference and ... less than 25 million
    # parameters" (the inference network, without the auxiliary head).
    a = analysis(NAME)
    assert a.totals.params < 25_000_000
    # torchvision's 5.713 GFLOPS: the paper's "5 billion" is the leading digit, not a rounding.
    assert a.totals.macs // 10**9 == 5
