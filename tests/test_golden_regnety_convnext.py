"""RegNetY (Radosavovic et al. 2020) and ConvNeXt (Liu et al. 2022) as torchvision builds them (issue 7):
the papers' figures at their printed precision, the RegNetY stages from the design-space rule, and layers
checked by hand. Numbers are typed from the papers and torchvision's sources, or worked out by hand in the
comments, never from archspec's output. torchvision's num_params, GFLOPS, crop sizes, logits, names and
shapes are tested with all torchvision models in test_golden_torchvision.py (table in golden.py)."""

from __future__ import annotations

import math

import pytest
from golden import SPECS, analysis, check, check_regnet_stages, layers, model
from golden import regnet_stages as stages

# RegNetY generating parameters (d, w_0, w_a, w_m, g), as torchvision's builders (regnet_y_400mf ...
# regnet_y_128gf) call BlockParams.from_init_params with them (se_ratio 0.25 for all); with the input size
# of the weights whose GFLOPS the spec reproduces (regnet_y_128gf: IMAGENET1K_SWAG_E2E_V1, 384).
REGNETY = {
    "regnet_y_400mf": ((16, 48, 27.89, 2.09, 8), 224),
    "regnet_y_800mf": ((14, 56, 38.84, 2.4, 16), 224),
    "regnet_y_1_6gf": ((27, 48, 20.71, 2.65, 24), 224),
    "regnet_y_3_2gf": ((21, 80, 42.63, 2.66, 24), 224),
    "regnet_y_8gf": ((17, 192, 76.82, 2.19, 56), 224),
    "regnet_y_16gf": ((18, 200, 106.23, 2.48, 112), 224),
    "regnet_y_32gf": ((20, 232, 115.89, 2.53, 232), 224),
    "regnet_y_128gf": ((27, 456, 160.83, 2.52, 264), 384),
}


# ---- the papers ----------------------------------------------------------------------------------------


def test_regnet_y_400mf_paper():
    """Radosavovic et al. 2020 (the RegNetY rows of its comparison with EfficientNet): RegNetY-400MF has 0.4B flops
    (multiply-adds) and 4.3M params."""
    a = analysis("regnet_y_400mf")
    assert round(a.totals.params, -5) == 4_300_000
    assert round(a.totals.macs, -8) == 400_000_000


@pytest.mark.parametrize(
    "name, params_m, gflops_tenths",
    # Liu et al. 2022, Table 1 (ImageNet-1K, 224^2): ConvNeXt-T 28M / 4.5G, -S 50M / 8.7G, -B 89M / 15.4G,
    # -L 198M / 34.4G FLOPs. The paper's FLOPs are multiply-adds (fvcore's count), like torchvision's GFLOPS.
    [
        ("convnext_tiny", 28, 45),
        ("convnext_small", 50, 87),
        ("convnext_base", 89, 154),
        ("convnext_large", 198, 344),
    ],
)
def test_convnext_paper(name, params_m, gflops_tenths):
    a = analysis(name)
    # The paper prints whole millions, not consistently rounded: ConvNeXt-T's 28,589,128 params (the same
    # in the authors' release) print as 28M (truncated), ConvNeXt-B's 88,591,464 as 89M (rounded).
    assert params_m in (math.floor(a.totals.params / 10**6), round(a.totals.params / 10**6))
    assert round(a.totals.macs / 10**8) == gflops_tenths


# ---- RegNetY: stages and squeeze-excitation --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(REGNETY))
def test_regnet_y_stages_follow_the_design_space_rule(name):
    params, crop = REGNETY[name]
    names = layers(name)
    width_in = 32  # the stem's width
    for stage, depth, width, size in check_regnet_stages(name, stages(*params), params[0], crop):
        # SE ratio 0.25 of the block's input width: the previous stage's width in the first block.
        assert names[f"{stage}-0.f.se.fc1"].output_shape == (round(0.25 * width_in), 1, 1)
        if depth > 1:
            assert names[f"{stage}-1.f.se.fc1"].output_shape == (round(0.25 * width), 1, 1)
        assert names[f"{stage}-{depth - 1}.f.se.scale"].output_shape == (width, size, size)
        width_in = width


def test_regnet_y_400mf_hand_layers():
    block1 = "trunk_output.block1.block1-0"
    # f.b.0: width 48, group width 8 -> 6 groups: 48 x 8 x 3 x 3 = 3,456 weights; stride 2: 112 -> 56;
    # MACs 3,456 * 56 * 56 = 3,456 * 3,136 = 10,838,016.
    check("regnet_y_400mf", f"{block1}.f.b.0", weights=3_456, params=3_456, output=(48, 56, 56), macs=10_838_016)
    # f.se.fc1: squeeze to 0.25 x 32 (the block's input, the stem) = 8 channels, not 0.25 x 48 = 12:
    # 8 x 48 weights = 384 + 8 bias = 392 params; on a 1 x 1 map, 384 MACs.
    check("regnet_y_400mf", f"{block1}.f.se.fc1", weights=384, params=392, output=(8, 1, 1), macs=384)
    # f.se.fc2: back to 48: 48 x 8 = 384 weights + 48 bias = 432.
    check("regnet_y_400mf", f"{block1}.f.se.fc2", weights=384, params=432, output=(48, 1, 1), macs=384)
    # block2-1 (input 104): squeeze 26; 26 x 104 = 2,704 weights + 26 bias = 2,730.
    check(
        "regnet_y_400mf",
        "trunk_output.block2.block2-1.f.se.fc1",
        weights=2_704,
        params=2_730,
        output=(26, 1, 1),
        macs=2_704,
    )
    # fc: 440 x 1000 + 1000 = 441,000 params, 440,000 MACs.
    check("regnet_y_400mf", "fc", weights=440_000, params=441_000, output=(1000,), macs=440_000)


def test_regnet_y_128gf_at_384():
    # 384 -> stem 192 -> stages 96, 48, 24, 12. Last stage: width 7392, group width 264 -> 28 groups:
    # 7392 x 264 x 9 = 17,563,392 weights at 12 x 12: 17,563,392 * 144 = 2,529,128,448 MACs.
    block4 = "trunk_output.block4.block4-0"
    check(
        "regnet_y_128gf",
        f"{block4}.f.b.0",
        weights=17_563_392,
        params=17_563_392,
        output=(7392, 12, 12),
        macs=2_529_128_448,
    )
    # fc: 7392 x 1000 + 1000.
    check("regnet_y_128gf", "fc", weights=7_392_000, params=7_393_000, output=(1000,), macs=7_392_000)


# ---- ConvNeXt --------------------------------------------------------------------------------------------


def test_convnext_tiny_hand_layers():
    # stem features.0.0: 4x4 conv stride 4 with bias: 96 x 3 x 16 = 4,608 weights + 96 = 4,704 params;
    # 224 / 4 = 56; MACs 4,608 * 3,136 = 14,450,688.
    check("convnext_tiny", "features.0.0", weights=4_608, params=4_704, output=(96, 56, 56), macs=14_450_688)
    # features.1.0.block.0: depthwise 7x7 with bias: 96 x 49 = 4,704 + 96 = 4,800; MACs 4,704 * 3,136.
    check("convnext_tiny", "features.1.0.block.0", weights=4_704, params=4_800, output=(96, 56, 56), macs=14_751_744)
    # block.2 LayerNorm over 96 channels: weight and bias, 192 params.
    check("convnext_tiny", "features.1.0.block.2", weights=96, params=192, output=(96, 56, 56), macs=0)
    # block.3 Linear 96 -> 384 on every pixel: 36,864 + 384 = 37,248 params; MACs 36,864 * 3,136 = 115,605,504.
    check(
        "convnext_tiny", "features.1.0.block.3", weights=36_864, params=37_248, output=(384, 56, 56), macs=115_605_504
    )
    # block.5 Linear 384 -> 96: 36,864 + 96 = 36,960 params.
    check("convnext_tiny", "features.1.0.block.5", weights=36_864, params=36_960, output=(96, 56, 56), macs=115_605_504)
    # layer_scale: one (96, 1, 1) Parameter whose state_dict key is the block's own name.
    scale = layers("convnext_tiny")["features.1.0.layer_scale"]
    assert dict(scale.param_tensors) == {"": 96} and scale.params == 96
    # downsampling features.2: LayerNorm (192 params), then 2x2 conv stride 2 with bias:
    # 192 x 96 x 4 = 73,728 + 192 = 73,920 params; 56 -> 28; MACs 73,728 * 784 = 57,802,752.
    check("convnext_tiny", "features.2.0", weights=96, params=192, output=(96, 56, 56), macs=0)
    check("convnext_tiny", "features.2.1", weights=73_728, params=73_920, output=(192, 28, 28), macs=57_802_752)
    # head: LayerNorm over 768 on the pooled 768 x 1 x 1, then Linear 768 -> 1000 (768,000 + 1,000).
    check("convnext_tiny", "classifier.0", weights=768, params=1_536, output=(768, 1, 1), macs=0)
    check("convnext_tiny", "classifier.2", weights=768_000, params=769_000, output=(1000,), macs=768_000)


@pytest.mark.parametrize(
    "name, prob, blocks",
    # torchvision's builders: stochastic_depth_prob 0.1 (tiny), 0.4 (small), 0.5 (base, large);
    # blocks 3 + 3 + 9 + 3 = 18 (tiny), 3 + 3 + 27 + 3 = 36 (the others).
    [("convnext_tiny", 0.1, 18), ("convnext_small", 0.4, 36), ("convnext_base", 0.5, 36), ("convnext_large", 0.5, 36)],
)
def test_convnext_stochastic_depth_is_torchvisions(name, prob, blocks):
    # CNBlock i (from 0, over all stages) drops its branch with probability prob * i / (blocks - 1), so
    # sum_i p_i = prob * (blocks - 1) * blocks / 2 / (blocks - 1) = prob * blocks / 2 and the expected
    # number of active blocks is blocks * (1 - prob / 2): 18 * 0.95 = 17.1, 36 * 0.8 = 28.8, 36 * 0.75 = 27.
    sd = analysis(name).stochastic_depth
    assert sd.blocks == blocks
    assert sd.expected_active_blocks == pytest.approx(blocks * (1 - prob / 2), abs=1e-12)
    # the last block drops with the full probability (torchvision: StochasticDepth(p=prob, mode=row))
    assert model(name).graph.op("features.7.2.stochastic_depth").p == pytest.approx(prob)
    assert model(name).graph.op("features.1.0.stochastic_depth").p == 0


def test_convnext_receptive_field_of_the_first_block():
    # stem 4x4 stride 4: 4 pixels, stride 4; + depthwise 7x7 pad 3 at stride 4: 4 + 6 * 4 = 28 pixels,
    # padding 3 * 4 = 12. The per-pixel Linears and LayerNorm add nothing, and there is no gate.
    rf = layers("convnext_tiny")["features.1.0.add"].receptive_field
    assert (rf.size(), rf.stride(), rf.padding(), rf.context) == ((28, 28), (4, 4), (12, 12), False)


def _nodes_lines(name: str) -> int:
    text = (SPECS / f"{name}.yaml").read_text().splitlines()
    return len(text) - text.index("nodes:")


def test_block_libraries_carry_the_structure():
    # Issue 7: a bigger model only changes numbers, not the length of its spec.
    assert _nodes_lines("convnext_large") == _nodes_lines("convnext_tiny")
    assert _nodes_lines("regnet_y_128gf") == _nodes_lines("regnet_y_400mf")
