"""Golden figures for the branching torchvision families: DenseNet, SqueezeNet and GoogLeNet.

Specs: densenet121/161/169/201, squeezenet1_0/1_1 and googlenet_torchvision (torchvision's
torchvision/models/densenet.py, squeezenet.py and googlenet.py). Every expected number is typed from a
published source or computed by hand in the comments beside it, never copied from archspec's output.
Static analysis only (no forward passes), so the file runs in a few seconds.
"""

from __future__ import annotations

import pytest
from golden import analysis, check, layers, model, params_under

# ---- totals ---------------------------------------------------------------------------------------


# ---- published claims of the SqueezeNet paper ---------------------------------------------------------


def test_squeezenet1_0_has_the_papers_1_24m_params():
    # Iandola et al. 2016 (arXiv:1602.07360): "1.24M" parameters. torchvision's 1,248,424 truncates to
    # 1.24M at 2 decimals (it would round to 1.25M), so the paper's figure is a truncation.
    params = analysis("squeezenet1_0").totals.params
    assert 1_240_000 <= params < 1_250_000


def test_squeezenet1_0_has_about_50x_fewer_params_than_alexnet():
    # The paper's "50x fewer parameters than AlexNet": specs/alexnet.yaml (Krizhevsky et al. 2012,
    # 60,965,224 params: Caffe's bvlc_alexnet, CS231n's AlexNet) / 1,248,424 = 48.8, which the paper rounds to 50x.
    ratio = analysis("alexnet").totals.params / analysis("squeezenet1_0").totals.params
    assert 48 < ratio < 52


# ---- layer names (torchvision module paths) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "node"),
    [
        ("densenet121", "features.denseblock2.denselayer7.conv1"),
        ("googlenet_torchvision", "inception4c.branch3.0.conv"),
        ("squeezenet1_0", "features.3.expand3x3"),
    ],
)
def test_torchvision_names_exist(name, node):
    assert node in layers(name)


@pytest.mark.parametrize(
    ("name", "block_depths"),
    [
        # torchvision densenet.py block_config; Huang et al. 2017 Table 1 for the k = 32 nets.
        ("densenet121", (6, 12, 24, 16)),
        ("densenet161", (6, 12, 36, 24)),
        ("densenet169", (6, 12, 32, 32)),
        ("densenet201", (6, 12, 48, 32)),
    ],
)
def test_dense_block_depths(name, block_depths):
    names = layers(name)
    for block, depth in enumerate(block_depths, start=1):
        assert f"features.denseblock{block}.denselayer1.conv1" in names  # numbered from 1, as torchvision
        assert f"features.denseblock{block}.denselayer{depth}.conv2" in names
        assert f"features.denseblock{block}.denselayer{depth + 1}.conv1" not in names
    assert "features.transition3.conv" in names
    assert "features.transition4.conv" not in names  # no transition after the last block


# ---- hand-computed layers ---------------------------------------------------------------------------


def test_densenet121_stem():
    # conv0: 64 x 3 x 7 x 7 = 9,408 weights, no bias; 224 -> (224 + 2*3 - 7) // 2 + 1 = 112;
    # MACs 9,408 * 112 * 112 = 9,408 * 12,544 = 118,013,952.
    check("densenet121", "features.conv0", weights=9_408, params=9_408, output=(64, 112, 112), macs=118_013_952)
    # pool0: max 3x3 /2 p1: 112 -> (112 + 2 - 3) // 2 + 1 = 56.
    assert layers("densenet121")["features.pool0"].output_shape == (64, 56, 56)


def test_densenet121_first_dense_layer():
    # denseblock1.denselayer1.conv1: in 64 channels, out bn_size * k = 4 * 32 = 128, 1x1, no bias
    # -> 64 * 128 = 8,192 weights; at 56 x 56: MACs 8,192 * 3,136 = 25,690,112.
    check(
        "densenet121",
        "features.denseblock1.denselayer1.conv1",
        weights=8_192,
        params=8_192,
        output=(128, 56, 56),
        macs=25_690_112,
    )
    # conv2: 3x3 pad 1, 128 -> k = 32: 128 * 32 * 9 = 36,864 weights; MACs 36,864 * 3,136 = 115,605,504.
    check(
        "densenet121",
        "features.denseblock1.denselayer1.conv2",
        weights=36_864,
        params=36_864,
        output=(32, 56, 56),
        macs=115_605_504,
    )
    # norm1 sees the layer input (64 channels): gamma + beta = 128 params; norm2 sees 128: 256 params.
    assert layers("densenet121")["features.denseblock1.denselayer1.norm1"].params == 128
    assert layers("densenet121")["features.denseblock1.denselayer1.norm2"].params == 256


def test_densenet121_dense_block_and_transition_channels():
    names = layers("densenet121")
    # Each layer appends k = 32 channels: layer 2's norm1 sees 64 + 32 = 96 (192 BN params).
    assert names["features.denseblock1.denselayer2.norm1"].output_shape == (96, 56, 56)
    assert names["features.denseblock1.denselayer2.norm1"].params == 192
    # The dense block's output: 64 + 6 * 32 = 256 channels (the last layer's concat).
    assert names["features.denseblock1.denselayer6.cat"].output_shape == (256, 56, 56)
    # transition1: 1x1 conv 256 -> 256 // 2 = 128: 32,768 weights; MACs 32,768 * 3,136 = 102,760,448;
    # then avg pool 2x2 /2: 56 -> 28.
    check(
        "densenet121",
        "features.transition1.conv",
        weights=32_768,
        params=32_768,
        output=(128, 56, 56),
        macs=102_760_448,
    )
    assert names["features.transition1.pool"].output_shape == (128, 28, 28)
    # denseblock2.denselayer7.conv1: input 128 + 6 * 32 = 320 channels -> 128: 40,960 weights;
    # at 28 x 28: MACs 40,960 * 784 = 32,112,640.
    check(
        "densenet121",
        "features.denseblock2.denselayer7.conv1",
        weights=40_960,
        params=40_960,
        output=(128, 28, 28),
        macs=32_112_640,
    )


@pytest.mark.parametrize(
    ("name", "final_channels"),
    [
        # Channels into norm5 (torchvision's num_features, compression 0.5 in each transition):
        # 121: 64 + 6*32 = 256 -> 128 + 12*32 = 512 -> 256 + 24*32 = 1024 -> 512 + 16*32 = 1024
        # 161: 96 + 6*48 = 384 -> 192 + 12*48 = 768 -> 384 + 36*48 = 2112 -> 1056 + 24*48 = 2208
        # 169: 256 -> 128 + 384 = 512 -> 256 + 32*32 = 1280 -> 640 + 32*32 = 1664
        # 201: 256 -> 512 -> 256 + 48*32 = 1792 -> 896 + 32*32 = 1920
        ("densenet121", 1024),
        ("densenet161", 2208),
        ("densenet169", 1664),
        ("densenet201", 1920),
    ],
)
def test_densenet_final_width_and_classifier(name, final_channels):
    names = layers(name)
    # Four halvings of 56 (three transitions' pools): 56 -> 28 -> 14 -> 7.
    assert names["features.norm5"].output_shape == (final_channels, 7, 7)
    assert names["features.norm5"].params == 2 * final_channels
    # classifier: C x 1000 weights + 1,000 biases; MACs C x 1000 (bias excluded).
    check(
        name,
        "classifier",
        weights=final_channels * 1000,
        params=final_channels * 1000 + 1000,
        output=(1000,),
        macs=final_channels * 1000,
    )


def test_densenet161_bottleneck_is_4k():
    # k = 48: conv1 96 -> 4 * 48 = 192 (1x1): 18,432 weights; conv2 192 -> 48 (3x3): 82,944 weights.
    names = layers("densenet161")
    assert dict(names["features.denseblock1.denselayer1.conv1"].param_tensors)["weight"] == 18_432
    assert dict(names["features.denseblock1.denselayer1.conv2"].param_tensors)["weight"] == 82_944


def test_squeezenet1_0_stem_and_ceil_mode_pools():
    # features.0: 96 x 3 x 7 x 7 = 14,112 weights + 96 biases = 14,208; 224 -> (224 - 7) // 2 + 1 = 109;
    # MACs 14,112 * 109 * 109 = 14,112 * 11,881 = 167,664,672.
    check("squeezenet1_0", "features.0", weights=14_112, params=14_208, output=(96, 109, 109), macs=167_664_672)
    names = layers("squeezenet1_0")
    # max 3x3 /2 with ceil_mode: 109 -> ceil(106 / 2) + 1 = 54; 54 -> ceil(51 / 2) + 1 = 27 (floor: 26);
    # 27 -> 13.
    assert names["features.2"].output_shape == (96, 54, 54)
    assert names["features.6"].output_shape == (256, 27, 27)
    assert names["features.11"].output_shape == (512, 13, 13)
    for pool in ("features.2", "features.6", "features.11"):
        assert model("squeezenet1_0").graph.op(pool).ceil_mode is True


def test_squeezenet1_0_fire3():
    # features.3 = Fire(96, 16, 64, 64). squeeze 1x1 96 -> 16: 1,536 weights + 16 = 1,552;
    # MACs 1,536 * 54 * 54 = 1,536 * 2,916 = 4,478,976.
    check("squeezenet1_0", "features.3.squeeze", weights=1_536, params=1_552, output=(16, 54, 54), macs=4_478_976)
    # expand3x3: 16 * 64 * 9 = 9,216 weights + 64 = 9,280; MACs 9,216 * 2,916 = 26,873,856.
    check("squeezenet1_0", "features.3.expand3x3", weights=9_216, params=9_280, output=(64, 54, 54), macs=26_873_856)
    # expand1x1: 16 * 64 = 1,024 weights + 64 = 1,088; concat: 64 + 64 = 128 channels.
    check("squeezenet1_0", "features.3.expand1x1", weights=1_024, params=1_088, output=(64, 54, 54), macs=2_985_984)
    assert layers("squeezenet1_0")["features.3.concat"].output_shape == (128, 54, 54)
    # Whole module: 1,552 + 1,088 + 9,280 = 11,920 params.
    assert params_under("squeezenet1_0", "features.3") == 11_920


def test_squeezenet_final_conv_classifier():
    # classifier.1: 1x1 conv 512 -> 1000: 512,000 weights + 1,000 biases; 13 x 13 output;
    # MACs 512,000 * 169 = 86,528,000. Same in both versions (both end at 512 x 13 x 13).
    for name in ("squeezenet1_0", "squeezenet1_1"):
        check(name, "classifier.1", weights=512_000, params=513_000, output=(1000, 13, 13), macs=86_528_000)


def test_squeezenet1_1_stem():
    # features.0: 64 x 3 x 3 x 3 = 1,728 weights + 64 = 1,792; 224 -> (224 - 3) // 2 + 1 = 111;
    # MACs 1,728 * 111 * 111 = 1,728 * 12,321 = 21,290,688.
    check("squeezenet1_1", "features.0", weights=1_728, params=1_792, output=(64, 111, 111), macs=21_290_688)
    assert layers("squeezenet1_1")["features.2"].output_shape == (64, 55, 55)


def test_googlenet_stem():
    # conv1: BasicConv2d 3 -> 64, 7x7 /2 p3, no bias: 9,408 weights; BN 128 params; 224 -> 112.
    check("googlenet_torchvision", "conv1.conv", weights=9_408, params=9_408, output=(64, 112, 112), macs=118_013_952)
    assert layers("googlenet_torchvision")["conv1.bn"].params == 128
    # maxpool1 3x3 /2 ceil_mode: 112 -> ceil(109 / 2) + 1 = 56 (floor mode: 55).
    assert layers("googlenet_torchvision")["maxpool1"].output_shape == (64, 56, 56)


def test_googlenet_batch_norm_eps():
    # torchvision BasicConv2d: nn.BatchNorm2d(out_channels, eps=0.001) on every conv.
    graph = model("googlenet_torchvision").graph
    eps = {graph.op(n).eps for n, layer in layers("googlenet_torchvision").items() if layer.op == "batch_norm"}
    assert eps == {0.001}


def test_googlenet_inception4c_branch3_uses_the_3x3_kernel():
    # branch3.0: 1x1 512 -> 24 (no bias): 12,288 weights; at 14 x 14: MACs 12,288 * 196 = 2,408,448.
    check(
        "googlenet_torchvision",
        "inception4c.branch3.0.conv",
        weights=12_288,
        params=12_288,
        output=(24, 14, 14),
        macs=2_408_448,
    )
    # branch3.1: torchvision's kept bug, 3x3 (not 5x5): 24 * 64 * 9 = 13,824 weights (5x5 would be 38,400);
    # MACs 13,824 * 196 = 2,709,504.
    check(
        "googlenet_torchvision",
        "inception4c.branch3.1.conv",
        weights=13_824,
        params=13_824,
        output=(64, 14, 14),
        macs=2_709_504,
    )
    # concat: 128 + 256 + 64 + 64 = 512 channels.
    assert layers("googlenet_torchvision")["inception4c.concat"].output_shape == (512, 14, 14)


def test_googlenet_inception3a_params():
    # Inception(192, 64, 96, 128, 16, 32, 32), each conv + BN (2 params per channel):
    # branch1   192*64 = 12,288 + 128          = 12,416
    # branch2.0 192*96 = 18,432 + 192          = 18,624
    # branch2.1 96*128*9 = 110,592 + 256       = 110,848
    # branch3.0 192*16 = 3,072 + 32            = 3,104
    # branch3.1 16*32*9 = 4,608 + 64           = 4,672
    # branch4.1 192*32 = 6,144 + 64            = 6,208
    # total                                      155,872
    assert params_under("googlenet_torchvision", "inception3a") == 155_872
    # 64 + 128 + 32 + 32 = 256 channels at 28 x 28.
    assert layers("googlenet_torchvision")["inception3a.concat"].output_shape == (256, 28, 28)


def test_googlenet_tail():
    names = layers("googlenet_torchvision")
    # maxpool4 2x2 /2: 14 -> 7; inception5b: 384 + 384 + 128 + 128 = 1024 channels.
    assert names["maxpool4"].output_shape == (832, 7, 7)
    assert names["inception5b.concat"].output_shape == (1024, 7, 7)
    # fc 1024 -> 1000: 1,024,000 weights + 1,000 biases; MACs 1,024,000.
    check("googlenet_torchvision", "fc", weights=1_024_000, params=1_025_000, output=(1000,), macs=1_024_000)
