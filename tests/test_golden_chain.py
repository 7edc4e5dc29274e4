"""Golden figures for the chain CNNs: torchvision's AlexNet and VGGs, the seed AlexNet, ZFNet and NiN.

Every expected number is typed from a published source (torchvision's weights metadata `num_params` and
`_ops`; the CS231n course notes' VGG16 table, "VGGNet in detail"; Araujo et al., Distill 2019; the papers'
figures) or computed by hand in the comments
beside it, never copied from archspec's output. Static analysis only (no forward passes), so it runs fast.
"""

from __future__ import annotations

import pytest
from golden import analysis, layers

# ---- torchvision totals ----------------------------------------------------------------------------


def test_bn_variants_add_gamma_and_beta_only():
    # vgg11_bn - vgg11 = 2 * (64 + 128 + 256 + 256 + 512 + 512 + 512 + 512) = 2 * 2,752 = 5,504
    # (132,868,840 - 132,863,336 = 5,504); vgg16_bn - vgg16 = 2 * (2*64 + 2*128 + 3*256 + 6*512) = 8,448.
    assert analysis("vgg11_bn").totals.params - analysis("vgg11").totals.params == 5_504
    assert analysis("vgg16_bn").totals.params - analysis("vgg16").totals.params == 8_448
    # vgg13_bn - vgg13 = 2 * (2*64 + 2*128 + 2*256 + 4*512) = 5,888 (133,053,736 - 133,047,848);
    # vgg19_bn - vgg19 = 2 * (2*64 + 2*128 + 4*256 + 8*512) = 11,008 (143,678,248 - 143,667,240).
    assert analysis("vgg13_bn").totals.params - analysis("vgg13").totals.params == 5_888
    assert analysis("vgg19_bn").totals.params - analysis("vgg19").totals.params == 11_008
    assert analysis("vgg19_bn").totals.macs == analysis("vgg19").totals.macs
    # BatchNorm adds no MACs under torchvision's rule.
    assert analysis("vgg16_bn").totals.macs == analysis("vgg16").totals.macs


def test_torchvision_alexnet_layers():
    # features.0: 64 x 3 x 11 x 11 = 23,232 weights + 64 = 23,296 params; (224 + 2*2 - 11) // 4 + 1 = 55.
    conv1 = layers("alexnet_torchvision")["features.0"]
    assert (conv1.params, conv1.output_shape) == (23_296, (64, 55, 55))
    # features.12 (third max pool): 13 -> (13 - 3) // 2 + 1 = 6; 256 * 6 * 6 = 9,216 features to classifier.1.
    assert layers("alexnet_torchvision")["features.12"].output_shape == (256, 6, 6)
    # classifier.1: 9,216 * 4,096 + 4,096 = 37,752,832.
    assert layers("alexnet_torchvision")["classifier.1"].params == 37_752_832


# ---- CS231n VGG16 table ("VGGNet in detail"), row by row ------------------------------------------

# (op, output shape, memory = values in the output volume, weights without biases), in network order.
CS231N_VGG16 = [
    ("conv2d", (64, 224, 224), 3_211_264, 1_728),  # (3*3*3)*64
    ("conv2d", (64, 224, 224), 3_211_264, 36_864),  # (3*3*64)*64
    ("max_pool2d", (64, 112, 112), 802_816, 0),
    ("conv2d", (128, 112, 112), 1_605_632, 73_728),  # (3*3*64)*128
    ("conv2d", (128, 112, 112), 1_605_632, 147_456),  # (3*3*128)*128
    ("max_pool2d", (128, 56, 56), 401_408, 0),
    ("conv2d", (256, 56, 56), 802_816, 294_912),  # (3*3*128)*256
    ("conv2d", (256, 56, 56), 802_816, 589_824),  # (3*3*256)*256
    ("conv2d", (256, 56, 56), 802_816, 589_824),
    ("max_pool2d", (256, 28, 28), 200_704, 0),
    ("conv2d", (512, 28, 28), 401_408, 1_179_648),  # (3*3*256)*512
    ("conv2d", (512, 28, 28), 401_408, 2_359_296),  # (3*3*512)*512
    ("conv2d", (512, 28, 28), 401_408, 2_359_296),
    ("max_pool2d", (512, 14, 14), 100_352, 0),
    ("conv2d", (512, 14, 14), 100_352, 2_359_296),
    ("conv2d", (512, 14, 14), 100_352, 2_359_296),
    ("conv2d", (512, 14, 14), 100_352, 2_359_296),
    ("max_pool2d", (512, 7, 7), 25_088, 0),
    ("linear", (4096,), 4_096, 102_760_448),  # 7*7*512*4096
    ("linear", (4096,), 4_096, 16_777_216),  # 4096*4096
    ("linear", (1000,), 1_000, 4_096_000),  # 4096*1000
]
CS231N_INPUT_MEMORY = 224 * 224 * 3  # 150,528


def cs231n_rows():
    """The spec's conv / pool / fc layers in order (the table's rows; ReLU, avgpool, flatten, dropout have none)."""
    return [layer for layer in analysis("vgg16").layers if layer.op in ("conv2d", "max_pool2d", "linear")]


def test_cs231n_typed_table_sums_to_its_true_totals():
    # A check on the typed table itself (the course notes print "TOTAL memory: 24M"): the rows, input included, sum to
    # 15,237,608 values (not the lecture's "24M"); weights without biases to 138,344,128.
    assert CS231N_INPUT_MEMORY + sum(row[2] for row in CS231N_VGG16) == 15_237_608
    assert sum(row[3] for row in CS231N_VGG16) == 138_344_128


@pytest.mark.parametrize("index", range(len(CS231N_VGG16)))
def test_cs231n_vgg16_row(index):
    op, shape, memory, weights = CS231N_VGG16[index]
    rows = cs231n_rows()
    assert len(rows) == len(CS231N_VGG16)
    layer = rows[index]
    assert layer.op == op
    assert layer.output_shape == shape
    assert layer.activations == memory
    assert layer.weights_without_bias == weights


def test_cs231n_vgg16_totals():
    a = analysis("vgg16")
    assert a.totals.input_elements == CS231N_INPUT_MEMORY
    rows = cs231n_rows()
    assert a.totals.input_elements + sum(layer.activations for layer in rows) == 15_237_608
    assert sum(layer.weights_without_bias for layer in a.layers) == 138_344_128
    # With biases: + 13 conv biases (2*64 + 2*128 + 3*256 + 6*512 = 4,224) + fc biases (4096 + 4096 + 1000
    # = 9,192) = 138,344,128 + 13,416 = 138,357,544, torchvision's num_params.
    assert a.totals.params == 138_357_544


# ---- the seed's AlexNet (specs/alexnet.yaml; CS231n / Caffe bvlc_alexnet) --------------------------


def test_alexnet_conv1_and_pool1():
    conv1 = layers("alexnet")["conv1"]
    # 96 @ 11x11x3 stride 4 on 227: (227 - 11) / 4 + 1 = 55; 34,848 weights + 96 biases = 34,944.
    assert conv1.output_shape == (96, 55, 55)
    assert conv1.params == 34_944
    assert conv1.weights_without_bias == 34_848
    pool1 = layers("alexnet")["pool1"]
    # 3x3 stride 2: (55 - 3) / 2 + 1 = 27.
    assert pool1.output_shape == (96, 27, 27)
    assert pool1.params == 0


def test_alexnet_total_params():
    assert analysis("alexnet").totals.params == 60_965_224


# ---- receptive fields (Araujo, Norris & Sim, Distill 2019) -----------------------------------------


def test_vgg16_final_feature_map_receptive_field():
    # Distill's vgg_16 (TF-Slim) has torchvision's layout up to pool5: 3x3 SAME (pad 1) convs, 2x2/2 pools.
    # By hand (r += (k-1)S, P += pS, S *= s): stages of 2, 2, 3, 3, 3 convs at S = 1, 2, 4, 8, 16 give
    # r = 1 + 2*(2 + 2*2 + 3*4 + 3*8 + 3*16) + (1 + 2 + 4 + 8 + 16) = 1 + 180 + 31 = 212, S = 32,
    # P = 1*(2 + 2*2 + 3*4 + 3*8 + 3*16) = 90. The table's row is the last pool (torchvision features.30).
    rf = layers("vgg16")["features.30"].receptive_field
    assert rf.size() == (212, 212)
    assert rf.stride() == (32, 32)
    assert rf.padding() == (90, 90)


def test_alexnet_pool5_receptive_field():
    # Distill's alexnet_v2 (TF-Slim): conv1 11x11/4 VALID, pool 3x3/2 VALID, conv2 5x5 SAME (pad 2),
    # pool 3x3/2, conv3-5 3x3 SAME (pad 1), pool5 3x3/2 -- the same kernels, strides and paddings as
    # specs/alexnet.yaml (its filter counts and the two-GPU groups do not change the field). By hand:
    # conv1 r=11 S=4; pool1 r=11+2*4=19 S=8; conv2 r=19+4*8=51 P=2*8=16; pool2 r=51+2*8=67 S=16;
    # conv3-5 r=67+3*2*16=163 P=16+3*16=64; pool5 r=163+2*16=195 S=32.
    # (torchvision's AlexNet pads conv1 by 2, so its features.12 has padding 66, not 64: not compared.)
    rf = layers("alexnet")["pool5"].receptive_field
    assert rf.size() == (195, 195)
    assert rf.stride() == (32, 32)
    assert rf.padding() == (64, 64)


# ---- ZFNet (Zeiler & Fergus 2013, Figure 3) --------------------------------------------------------


def test_zfnet_feature_map_sizes_match_figure_3():
    # Figure 3: 110 x 110 x 96 after conv1, 55 after pool1, 26 x 26 x 256 after conv2, 13 after pool2,
    # 13 x 13 x 384, 384, 256 for layers 3-5, 6 x 6 x 256 after the last pool; then 4096, 4096, 1000.
    expected = {
        "conv1": (96, 110, 110),
        "pool1": (96, 55, 55),
        "conv2": (256, 26, 26),
        "pool2": (256, 13, 13),
        "conv3": (384, 13, 13),
        "conv4": (384, 13, 13),
        "conv5": (256, 13, 13),
        "pool5": (256, 6, 6),
        "fc6": (4096,),
        "fc7": (4096,),
        "fc8": (1000,),
    }
    found = {name: layers("zfnet")[name].output_shape for name in expected}
    assert found == expected


# ---- NiN (Lin, Chen & Yan 2013; the NIN-Imagenet Caffe model) --------------------------------------


def test_nin_imagenet_params_by_hand():
    # weight + bias per layer: conv1 96*3*11*11 + 96 = 34,944; cccp1 = cccp2 = 96*96 + 96 = 9,312;
    # conv2 256*96*25 + 256 = 614,656; cccp3 = cccp4 = 256*256 + 256 = 65,792; conv3 384*256*9 + 384 = 885,120;
    # cccp5 = cccp6 = 384*384 + 384 = 147,840; conv4-1024 1024*384*9 + 1024 = 3,539,968;
    # cccp7-1024 1024*1024 + 1024 = 1,049,600; cccp8-1024 1000*1024 + 1000 = 1,025,000.
    # Blocks: 53,568 + 746,240 + 1,180,800 + 5,614,568 = 7,595,176 ("about 7.6M").
    by_block = {}
    for layer in analysis("nin").layers:
        block = layer.name.split(".")[0]
        by_block[block] = by_block.get(block, 0) + layer.params
    assert by_block["mlpconv1"] == 53_568
    assert by_block["mlpconv2"] == 746_240
    assert by_block["mlpconv3"] == 1_180_800
    assert by_block["mlpconv4"] == 5_614_568
    assert analysis("nin").totals.params == 7_595_176


def test_nin_imagenet_shapes_with_caffe_ceil_pooling():
    # 224: conv1 (224 - 11) // 4 + 1 = 54; pool0 ceil(51 / 2) + 1 = 27; pool2 ceil(24 / 2) + 1 = 13;
    # pool3 ceil(10 / 2) + 1 = 6; cccp8-1024 gives 1000 maps of 6 x 6, averaged to 1000 class scores.
    nin = layers("nin")
    assert nin["mlpconv1.conv"].output_shape == (96, 54, 54)
    assert nin["pool0"].output_shape == (96, 27, 27)
    assert nin["pool2"].output_shape == (256, 13, 13)
    assert nin["pool3"].output_shape == (384, 6, 6)
    assert nin["mlpconv4.cccp2"].output_shape == (1000, 6, 6)
    assert nin["pool4"].output_shape == (1000, 1, 1)
    assert all(layer.op != "linear" for layer in analysis("nin").layers)  # no fully connected layer
