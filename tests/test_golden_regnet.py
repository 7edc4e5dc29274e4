"""Golden figures for RegNetX (Radosavovic et al. 2020, "Designing Network Design Spaces"; torchvision's
torchvision/models/regnet.py).

The stage widths and depths are derived here from each model's generating parameters (depth d, w_0, w_a,
w_m, group width g, as published for the RegNetX models and used by torchvision) by the paper's
quantized-linear rule, written out independently below; the other figures are computed by hand in the
comments. Static analysis only (no forward passes).
"""

from __future__ import annotations

import pytest
from golden import check, check_regnet_stages, layers
from golden import regnet_stages as stages

# RegNetX generating parameters (d, w_0, w_a, w_m, g): the paper's RegNetX models as torchvision's builders
# (regnet_x_400mf ... regnet_x_32gf) call BlockParams.from_init_params with them.
REGNETX = {
    "regnet_x_400mf": (22, 24, 24.48, 2.54, 16),
    "regnet_x_800mf": (16, 56, 35.73, 2.28, 16),
    "regnet_x_1_6gf": (18, 80, 34.01, 2.25, 24),
    "regnet_x_3_2gf": (25, 88, 26.31, 2.25, 48),
    "regnet_x_8gf": (23, 80, 49.56, 2.88, 120),
    "regnet_x_16gf": (22, 216, 55.59, 2.1, 128),
    "regnet_x_32gf": (23, 320, 69.86, 2.0, 168),
}


@pytest.mark.parametrize("name", sorted(REGNETX))
def test_stages_follow_the_design_space_rule(name):
    check_regnet_stages(name, stages(*REGNETX[name]), REGNETX[name][0])


def test_regnet_x_400mf_hand_layers():
    # stem.0: 32 x 3 x 3 x 3 = 864 weights, no bias; 224 -> (224 + 2 - 3) // 2 + 1 = 112; 864 * 12,544 MACs.
    check("regnet_x_400mf", "stem.0", weights=864, params=864, output=(32, 112, 112), macs=10_838_016)
    # block1-0.f.b.0: width 32, group width 16 -> 2 groups: 32 x 16 x 3 x 3 = 4,608; stride 2: 56 x 56;
    # MACs 4,608 * 3,136 = 14,450,688.
    block1 = "trunk_output.block1.block1-0"
    check("regnet_x_400mf", f"{block1}.f.b.0", weights=4_608, params=4_608, output=(32, 56, 56), macs=14_450_688)
    # proj.0: 1x1, 32 -> 32, stride 2: 1,024 weights, 1,024 * 3,136 = 3,211,264 MACs.
    check("regnet_x_400mf", f"{block1}.proj.0", weights=1_024, params=1_024, output=(32, 56, 56), macs=3_211_264)
    # block4: width 400, 25 groups of 16: 400 x 16 x 9 = 57,600 weights at 7 x 7: 2,822,400 MACs.
    block4 = "trunk_output.block4.block4-11"
    check("regnet_x_400mf", f"{block4}.f.b.0", weights=57_600, params=57_600, output=(400, 7, 7), macs=2_822_400)
    # fc: 400 x 1000 + 1000 = 401,000 params, 400,000 MACs.
    check("regnet_x_400mf", "fc", weights=400_000, params=401_000, output=(1000,), macs=400_000)


def test_regnet_x_8gf_first_stage_is_one_group():
    # Group width 120 > stage width 80: capped at 80, so one group (a dense 3x3): 80 x 80 x 9 = 57,600.
    b = layers("regnet_x_8gf")["trunk_output.block1.block1-0.f.b.0"]
    assert dict(b.param_tensors) == {"weight": 57_600}
