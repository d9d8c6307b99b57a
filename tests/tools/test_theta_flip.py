import math

import torch
import torch.nn as nn

from gaussconv_plugin import GaussianShapedConv2d
from gaussconv_plugin.masks import default_theta, pinwheel_mask_hard
from tools.evidence.theta_flip import THETA_MAPS, theta_census


def _net():
    net = nn.Sequential(GaussianShapedConv2d(1, 4, 3, stride=2), GaussianShapedConv2d(4, 2, 3))
    with torch.no_grad():
        net[0].theta.copy_(torch.tensor([-0.01, 0.002, -0.003, 0.02]))
        net[1].theta.copy_(torch.tensor([0.004, 0.005]))
    return net


def test_census_counts_channels_below_zero_and_median_angle():
    rows = theta_census(_net())
    assert [(r["layer"], r["channels"], r["below_0"]) for r in rows] == [("0.theta", 4, 2), ("1.theta", 2, 0)]
    assert math.isclose(rows[0]["median_abs_deg"], math.degrees(0.003), rel_tol=1e-5)  # torch: the lower median


def test_maps_change_only_the_masks_they_name():
    t = torch.tensor([-0.01, 0.002, -0.003, 0.02])
    x, plus = pinwheel_mask_hard(torch.zeros(1), 3)[0], pinwheel_mask_hard(torch.tensor([-1e-3]), 3)[0]
    assert all(torch.equal(m, x) for m in pinwheel_mask_hard(THETA_MAPS["all X (|θ|)"](t), 3))
    assert all(torch.equal(m, plus) for m in pinwheel_mask_hard(THETA_MAPS["all plus (-|θ|)"](t), 3))
    assert torch.allclose(THETA_MAPS["mid"](t), torch.full_like(t, default_theta(3)))
    assert torch.equal(THETA_MAPS["trained"](t), t)
