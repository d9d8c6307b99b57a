"""MSHNet-style U-Net (pure torch): shapes, padding, Gaussian-conv placement, deep-supervised loss."""
from __future__ import annotations

import math

import pytest
import torch

from gaussconv_plugin.conv import GaussianShapedConv2d
from gaussconv_plugin.losses import ScaleIoULoss, soft_iou
from gaussconv_plugin.unet import (
    GAUSS_CONV_PLACES,
    MSHUNet,
    ResidualAttentionBlock,
    deep_supervision_loss,
    downsample_target,
)

SMALL = dict(channels=(4, 8, 8, 16, 16), blocks=(1, 1, 1, 1))  # same topology, tiny widths: fast tests


def _gauss_names(model):
    return sorted(n for n, m in model.named_modules() if isinstance(m, GaussianShapedConv2d))


@pytest.mark.parametrize("hw", [(64, 64), (70, 45), (16, 33)])
def test_output_shapes_train_and_eval(hw):
    torch.manual_seed(0)
    h, w = hw
    net = MSHUNet(**SMALL).train()
    fused, sides = net(torch.randn(2, 1, h, w))
    assert fused.shape == (2, 1, h, w)
    assert len(sides) == 4
    for j, s in enumerate(sides):
        assert s.shape == (2, 1, math.ceil(h / 2**j), math.ceil(w / 2**j))
    net.eval()
    with torch.no_grad():
        out = net(torch.randn(2, 1, h, w))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, h, w)


def test_mshnet_size_and_parameter_count():
    net = MSHUNet()  # MSHNet's widths/blocks; its public model has 4.07 M parameters (in_channels=3)
    n3 = sum(p.numel() for p in MSHUNet(in_channels=3).parameters())
    assert abs(n3 - 4.07e6) < 0.01e6, n3
    assert sum(p.numel() for p in net.parameters()) == n3 - 2 * 16  # 1×1 conv_init: 2 fewer input channels
    assert isinstance(net.encoder_0[0].sa.conv, torch.nn.Conv2d) and net.encoder_0[0].sa.conv.kernel_size == (7, 7)


def test_internal_padding_equals_explicit_zero_padding():
    torch.manual_seed(1)
    net = MSHUNet(**SMALL, gauss_conv="both").eval()
    x = torch.randn(1, 1, 37, 50)
    xp = torch.nn.functional.pad(x, (0, 64 - 50, 0, 48 - 37))
    with torch.no_grad():
        y, yp = net(x), net(xp)
    assert y.shape == (1, 1, 37, 50)
    torch.testing.assert_close(y, yp[..., :37, :50], rtol=1e-5, atol=1e-5)


def test_train_mode_returns_the_eval_fused_map_and_its_sides():
    """``self.training`` changes what forward returns, not what it computes: with the BN layers kept in eval mode,
    a train-mode forward gives ``(fused, sides)`` whose ``fused`` is the eval-mode output, and ``return_sides``
    overrides the mode either way."""
    torch.manual_seed(2)
    net = MSHUNet(**SMALL).eval()
    x = torch.randn(2, 1, 32, 48)
    with torch.no_grad():
        ref = net(x)
        assert isinstance(ref, torch.Tensor) and ref.shape == (2, 1, 32, 48)
        net.train()
        for m in net.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.eval()
        out = net(x)
        assert isinstance(out, tuple) and len(out) == 2
        fused, sides = out
        torch.testing.assert_close(fused, ref)
        assert len(sides) == 4 and all(s.shape[:2] == (2, 1) for s in sides)
        torch.testing.assert_close(net(x, return_sides=False), ref)
        net.eval()
        torch.testing.assert_close(net(x, return_sides=True)[0], ref)


@pytest.mark.parametrize("place,expected", [
    ("none", 0),
    ("first_stage", 2),          # encoder_0's two 3×3 convs
    ("spatial_attention", None),  # one 7×7 SA conv per residual block
    ("both", None),
])
def test_gauss_conv_placement(place, expected):
    net = MSHUNet(gauss_conv=place)
    names = _gauss_names(net)
    n_blocks = sum(isinstance(m, ResidualAttentionBlock) for m in net.modules())
    assert n_blocks == 1 + 2 * 4 + 2 * 3 + 1  # encoders 0..3 + middle + decoders 3..0 (MSHNet: 16 blocks)
    if place == "none":
        assert names == []
    if place == "first_stage":
        assert names == ["encoder_0.0.conv1", "encoder_0.0.conv2"]
    if place == "spatial_attention":
        assert len(names) == n_blocks and all(n.endswith("sa.conv") for n in names)
        conv = net.middle[0].sa.conv
        assert conv.kernel_size == (7, 7) and conv.in_channels == 2 and conv.out_channels == 1 and conv.bias is None
    if place == "both":
        assert len(names) == n_blocks + 2
    if expected is not None:
        assert len(names) == expected


def test_unknown_place_and_bad_channels_raise():
    with pytest.raises(ValueError, match="gauss_conv"):
        MSHUNet(gauss_conv="everywhere")
    net = MSHUNet(**SMALL)
    with pytest.raises(ValueError, match="in_channels"):
        net(torch.randn(1, 3, 32, 32))
    rgb = MSHUNet(**SMALL, in_channels=3).eval()
    assert rgb(torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)


def test_downsample_target_keeps_single_pixel_targets():
    t = torch.zeros(1, 1, 37, 50)
    t[0, 0, 36, 49] = 1  # the bottom-right corner pixel: needs ceil_mode
    t[0, 0, 5, 7] = 1
    ts = downsample_target(t, 4)
    assert [tuple(x.shape[-2:]) for x in ts] == [(37, 50), (19, 25), (10, 13), (5, 7)]
    for x in ts:
        assert x.sum() == 2 and set(x.unique().tolist()) == {0.0, 1.0}


def test_deep_supervision_loss_terms_and_warmup():
    torch.manual_seed(3)
    net = MSHUNet(**SMALL, gauss_conv="both").train()
    x = torch.randn(2, 1, 48, 40)
    t = torch.zeros(2, 1, 48, 40)
    t[0, 0, 10:13, 20:22] = 1
    t[1, 0, 30, 5] = 1
    fused, sides = net(x)
    lf = ScaleIoULoss(mode="diff")
    total, parts = deep_supervision_loss(fused, sides, t, lf)
    assert list(parts) == ["fused", "side0", "side1", "side2", "side3"]
    torch.testing.assert_close(total, torch.stack(list(parts.values())).mean())
    # warm-up: every term is the plain soft-IoU loss 1 − softIoU
    warm, wparts = deep_supervision_loss(fused, sides, t, lf, warmup=True)
    ts = downsample_target(t)
    expect = [1 - soft_iou(torch.sigmoid(fused), t).mean()]
    expect += [1 - soft_iou(torch.sigmoid(s), ts[j]).mean() for j, s in enumerate(sides)]
    torch.testing.assert_close(warm, torch.stack(expect).mean())
    assert not torch.allclose(warm, total)
    # var (MSHNet SLS) and diff differ; gradients reach σ and θ of every Gaussian conv
    var_total, _ = deep_supervision_loss(fused, sides, t, ScaleIoULoss(mode="var"))
    assert not torch.allclose(var_total, total)
    total.backward()
    for m in net.modules():
        if isinstance(m, GaussianShapedConv2d):
            assert m.sigma_raw.grad is not None and torch.isfinite(m.sigma_raw.grad).all()
            assert m.theta.grad is not None and torch.isfinite(m.theta.grad).all()
    assert sum(float(m.theta.grad.abs().sum()) for m in net.modules() if isinstance(m, GaussianShapedConv2d)) > 0


@pytest.mark.parametrize("mode", ["var", "diff"])
@pytest.mark.parametrize("warmup", [False, True])
def test_target_free_batch_gives_finite_loss_and_grads(mode, warmup):
    torch.manual_seed(4)
    net = MSHUNet(**SMALL, gauss_conv="both").train()
    fused, sides = net(torch.randn(2, 1, 32, 32))
    total, parts = deep_supervision_loss(fused, sides, torch.zeros(2, 1, 32, 32), ScaleIoULoss(mode=mode),
                                         warmup=warmup)
    assert torch.isfinite(total) and all(torch.isfinite(v) for v in parts.values())
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


def test_loss_shape_mismatch_is_one_clear_error():
    net = MSHUNet(**SMALL).train()
    fused, sides = net(torch.randn(1, 1, 32, 32))
    with pytest.raises(ValueError, match="mask of the same batch"):
        deep_supervision_loss(fused, sides, torch.zeros(1, 1, 16, 16), ScaleIoULoss())


def test_places_constant():
    assert GAUSS_CONV_PLACES == ("none", "spatial_attention", "first_stage", "both")


def test_autocast_forward_keeps_loss_float32():
    """AMP-readiness: under autocast the network runs in low precision and the loss stays float32 and finite."""
    torch.manual_seed(5)
    net = MSHUNet(**SMALL, gauss_conv="both").train()
    x = torch.randn(2, 1, 32, 32)
    t = torch.zeros(2, 1, 32, 32)
    t[0, 0, 4:6, 4:6] = 1
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fused, sides = net(x)
        total, _ = deep_supervision_loss(fused, sides, t, ScaleIoULoss(mode="diff"))
    assert fused.dtype == torch.bfloat16 and total.dtype == torch.float32 and torch.isfinite(total)
    total.backward()
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)
