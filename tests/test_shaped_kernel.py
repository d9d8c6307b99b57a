"""The two forms that constrain (docs/method.md, "Forms that constrain"): the weight-free Gaussian-pinwheel kernel
(gaussconv_plugin.shaped_kernel) and its use as the U-Net's spatial attention (sa_form='free'), and the hard
pinwheel (mask_floor=0) at stride 1, where every Gaussian conv of the U-Net sits: no input pixel is blind there, while
at stride 2 the hard pinwheel blinds pixels (why the default has a floor)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from gaussconv_plugin.conv import GaussianShapedConv2d
from gaussconv_plugin.masks import (
    DEFAULT_MASK_FLOOR,
    SIGMA_MIN,
    blind_input_fraction,
    default_theta,
    pinwheel_mask_hard,
    sigma_from_raw,
)
from gaussconv_plugin.shaped_kernel import ShapedFilter2d, shaped_filter, shaped_kernel
from gaussconv_plugin.unet import MSHUNet, ResidualAttentionBlock, SpatialAttention, deep_supervision_loss
from gaussconv_plugin.losses import ScaleIoULoss

pytestmark = pytest.mark.usefixtures("one_thread")

THETAS = torch.linspace(-math.pi / 2, math.pi / 2, 37).tolist()  # 5° steps, as tools/coverage.py
SMALL = dict(channels=(4, 8, 8, 16, 16), blocks=(1, 1, 1, 1))


def _t(v: float, dtype=torch.float64) -> torch.Tensor:
    return torch.tensor([v], dtype=dtype)


# ---------------------------------------------------------------- the kernel


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("floor", [0.0, DEFAULT_MASK_FLOOR])
def test_kernel_is_a_normalised_non_negative_k_by_k_map(k, floor):
    for sigma in (0.4, 1.0, 3.5, 20.0):
        for theta in (-1.2, 0.0, 0.3, 0.8):
            kern = shaped_kernel(_t(sigma), _t(theta), k, mask_floor=floor)
            assert kern.shape == (1, 1, k, k) and kern.dtype == torch.float64
            assert bool((kern >= 0).all()) and float(kern.sum()) == pytest.approx(1.0, abs=1e-12)
            assert float(kern[0, 0, k // 2, k // 2]) == float(kern.max())  # the centre: G = 1, always on the mask
    m = ShapedFilter2d(2, k)
    w = m.kernel().detach()
    assert w.shape == (1, 2, k, k) and torch.equal(w[:, 0], w[:, 1])  # one K for both input maps
    assert float(w[0, 0].sum()) == pytest.approx(1.0, abs=1e-6)


def test_forward_kernel_is_the_hard_product_normalised():
    """The forward value is G·M_hard / Σ(G·M_hard), with G written out here (not through masks.gaussian_envelope)."""
    k, sigma, theta = 7, 1.3, 0.35
    r = k // 2
    offs = torch.arange(-r, r + 1, dtype=torch.float64)
    v, u = torch.meshgrid(offs, offs, indexing="ij")
    g = torch.exp(-(u * u + v * v) / (2 * sigma**2))
    prod = g * pinwheel_mask_hard(_t(theta), k)[0, 0]
    want = prod / prod.sum()
    got = shaped_kernel(_t(sigma).requires_grad_(), _t(theta).requires_grad_(), k)[0, 0]
    torch.testing.assert_close(got.detach(), want, rtol=1e-12, atol=1e-14)
    assert int((got == 0).sum()) == k * k - int(pinwheel_mask_hard(_t(theta), k).sum())  # off-mask taps are 0


def test_gradient_reaches_sigma_and_theta():
    torch.manual_seed(0)
    m = ShapedFilter2d(2, 7, sigma_init=1.5).double()
    w = torch.rand(7, 7, dtype=torch.float64)
    for theta in (0.05, 0.4, -0.7):
        m.zero_grad()
        with torch.no_grad():
            m.theta.fill_(theta)
        (m.kernel()[0, 0] * w).sum().backward()
        assert m.sigma_raw.grad is not None and m.theta.grad is not None
        assert torch.isfinite(m.sigma_raw.grad).all() and float(m.sigma_raw.grad.abs()) > 0
        assert torch.isfinite(m.theta.grad).all() and float(m.theta.grad.abs()) > 0  # through the soft mask (STE)


def test_large_sigma_tends_to_the_normalised_mask():
    theta = 0.3
    mask = pinwheel_mask_hard(_t(theta), 7)[0, 0]
    target = mask / mask.sum()
    gaps = [float((shaped_kernel(_t(s), _t(theta), 7)[0, 0] - target).abs().max()) for s in (2.0, 10.0, 1e2, 1e4)]
    assert gaps[0] > 1e-2 and gaps == sorted(gaps, reverse=True) and gaps[-1] < 1e-8


def test_eval_output_equals_explicit_conv_with_the_kernel():
    torch.manual_seed(1)
    m = ShapedFilter2d(2, 7, sigma_init=1.7, theta_init=0.6).eval()
    x = torch.randn(3, 2, 19, 24)
    with torch.no_grad():
        y = m(x)
        kern = m.kernel()
        torch.testing.assert_close(y, F.conv2d(x, kern, padding=3), rtol=0, atol=0)
        k1 = kern[:, :1]  # the same K on each map, summed
        torch.testing.assert_close(y, F.conv2d(x[:, :1], k1, padding=3) + F.conv2d(x[:, 1:], k1, padding=3),
                                   rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(y, shaped_filter(x, m.sigma, m.theta, 7), rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(m.to_conv2d()(x), y, rtol=1e-6, atol=1e-6)
    assert y.shape == (3, 1, 19, 24)


def test_only_sigma_and_theta_are_parameters():
    m = ShapedFilter2d(2, 7)
    assert sorted(n for n, _ in m.named_parameters()) == ["sigma_raw", "theta"]
    assert sum(p.numel() for p in m.parameters()) == 2 and list(m.buffers()) == []
    # σ₀ = k/2; θ₀ = 'mid', the θ = 0 windmill away from the mask's flip at θ = 0
    assert float(m.sigma.detach()) == pytest.approx(3.5)
    assert float(m.theta.detach()) == pytest.approx(default_theta(7)) and float(m.theta.detach()) > 0.1


@pytest.mark.parametrize("bad,match", [
    (dict(kernel_size=4), "odd int kernel_size"), (dict(in_channels=0), "in_channels >= 1"),
    (dict(mask_floor=1.5), "mask_floor"), (dict(tau=0.0), "tau"), (dict(sigma_init=0.2), "sigma_init"),
])
def test_bad_arguments_are_one_line_errors(bad, match):
    with pytest.raises(ValueError, match=match) as e:
        ShapedFilter2d(**bad)
    assert "\n" not in str(e.value)


def test_bad_input_is_one_line_error():
    with pytest.raises(ValueError, match=r"expects \(N, 2, H, W\)"):
        ShapedFilter2d(2, 7)(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="one sigma"):
        shaped_kernel(torch.ones(2), torch.zeros(1), 3)


# ---------------------------------------------------------------- coverage at stride 1


@pytest.mark.parametrize("k", [3, 7])
def test_hard_pinwheel_reads_every_pixel_at_stride_1_and_blinds_at_stride_2(k):
    """mask_floor=0 at every θ (5° grid): stride 1 leaves no interior pixel unread (the centre tap is on), stride 2
    blinds some for some θ — the coverage table of docs/method.md, asserted."""
    worst1, worst2, uncut = [], [], []
    for theta in THETAS:
        conv = GaussianShapedConv2d(1, 1, k, bias=False, mask_floor=0.0)
        with torch.no_grad():
            conv.weight.fill_(1.0)
            conv.theta.fill_(theta)
        kern = conv.effective_kernel().detach()[0, 0]
        if not bool((kern == 0).any()):
            uncut.append(round(math.degrees(theta)))
        worst1.append(blind_input_fraction(kern, 1, size=32))
        worst2.append(blind_input_fraction(kern, 2, size=32))
        free = shaped_kernel(_t(1.0), _t(theta), k)[0, 0]
        assert blind_input_fraction(free, 1, size=32) == 0.0
    assert max(worst1) == 0.0
    assert max(worst2) == 0.5  # the X / the rotated windmills: half the pixels blind at stride 2
    # the hard pinwheel does cut taps: at every θ of a 7×7; a 3×3 keeps all nine near a few θ (6 of 37 here, which
    # ones turns on taps lying on a blade's edge)
    assert (uncut == []) if k == 7 else (0 < len(uncut) <= len(THETAS) // 4), uncut


def test_free_kernel_centre_survives_the_smallest_sigma_in_half_precision():
    for raw in (-1e4, -30.0, 0.0):
        sigma = sigma_from_raw(torch.tensor([raw]))
        assert float(sigma) >= SIGMA_MIN
        kern = shaped_kernel(sigma, torch.zeros(1), 7)
        for dt in (torch.float16, torch.bfloat16):
            assert float(kern.to(dt)[0, 0, 3, 3]) > 0  # the centre tap: every pixel still read at stride 1


def test_every_gaussian_conv_of_the_unet_is_stride_1():
    net = MSHUNet(gauss_conv="both")
    convs = [m for m in net.modules() if isinstance(m, GaussianShapedConv2d)]
    assert len(convs) == 16 + 2 and all(c.stride == (1, 1) for c in convs)
    free = MSHUNet(gauss_conv="both", sa_form="free", gauss_kwargs=dict(mask_floor=0.0))
    gs = [c for c in free.modules() if isinstance(c, GaussianShapedConv2d)]
    assert len(gs) == 2 and all(c.stride == (1, 1) and c.mask_floor == 0.0 for c in gs)


# ---------------------------------------------------------------- the U-Net option


def _params(m) -> int:
    return sum(p.numel() for p in m.parameters())


def test_fuse_gaussian_convs_turns_the_free_sa_into_plain_convs():
    """Export: fuse_gaussian_convs folds every ShapedFilter2d (no .weight for an exporter to read) into a plain
    Conv2d holding its kernel, beside the GaussianShapedConv2d layers, and the net's output does not change."""
    from gaussconv_plugin import fuse_gaussian_convs

    torch.manual_seed(3)
    net = MSHUNet(**SMALL, gauss_conv="both", sa_form="free").eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        before = net(x)
    n_free = sum(isinstance(m, ShapedFilter2d) for m in net.modules())
    n_gs = sum(isinstance(m, GaussianShapedConv2d) for m in net.modules())
    assert n_free > 0 and fuse_gaussian_convs(net) == n_free + n_gs
    assert not any(isinstance(m, (ShapedFilter2d, GaussianShapedConv2d)) for m in net.modules())
    with torch.no_grad():
        after = net(x)
    before = before[0] if isinstance(before, tuple) else before
    after = after[0] if isinstance(after, tuple) else after
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)


def test_unet_free_sa_runs_forward_backward_with_two_parameters_per_block():
    torch.manual_seed(2)
    net = MSHUNet(**SMALL, gauss_conv="both", sa_form="free").train()
    blocks = [m for m in net.modules() if isinstance(m, ResidualAttentionBlock)]
    assert blocks and all(isinstance(b.sa.conv, ShapedFilter2d) and _params(b.sa) == 2 for b in blocks)
    assert [n for n, m in net.named_modules() if isinstance(m, GaussianShapedConv2d)] == [
        "encoder_0.0.conv1", "encoder_0.0.conv2"]  # the first-stage convs of gsconv, unchanged
    ref = MSHUNet(**SMALL, gauss_conv="both")
    assert _params(ref) - _params(net) == len(blocks) * 2 * 7 * 7  # each SA loses its 98 weights, keeps σ and θ
    x = torch.randn(2, 1, 32, 32)
    t = torch.zeros(2, 1, 32, 32)
    t[0, 0, 5:8, 9:11] = 1
    fused, sides = net(x)
    assert fused.shape == (2, 1, 32, 32)
    total, _ = deep_supervision_loss(fused, sides, t, ScaleIoULoss(mode="var"))
    total.backward()
    for b in blocks:
        for p in b.sa.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
    assert any(float(b.sa.conv.theta.grad.abs()) > 0 for b in blocks)
    assert any(float(b.sa.conv.sigma_raw.grad.abs()) > 0 for b in blocks)


def test_spatial_attention_free_equals_sigmoid_of_the_explicit_conv():
    torch.manual_seed(3)
    sa = SpatialAttention(7, gauss=True, free=True).eval()
    x = torch.randn(2, 5, 16, 16)
    desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
    with torch.no_grad():
        torch.testing.assert_close(sa(x), torch.sigmoid(F.conv2d(desc, sa.conv.kernel(), padding=3)))


def test_gauss_kwargs_reach_the_free_sa_except_floor_and_per_channel():
    net = MSHUNet(**SMALL, gauss_conv="both", sa_form="free",
                  gauss_kwargs=dict(sigma_init=1.5, theta_init=0.2, tau=0.3, mask_floor=0.6, per_channel=False))
    sa = net.middle[0].sa.conv
    assert float(sa.sigma.detach()) == pytest.approx(1.5) and float(sa.theta.detach()) == pytest.approx(0.2)
    assert sa.tau == 0.3
    assert sa.mask_floor == 0.0  # the free form is the plain product G·M
    first = net.encoder_0[0].conv1
    assert first.mask_floor == 0.6 and first.per_channel is False


def test_bad_sa_form_is_a_one_line_error_naming_the_fix():
    with pytest.raises(ValueError, match="unknown sa_form 'weightless'; use 'conv'"):
        MSHUNet(**SMALL, gauss_conv="both", sa_form="weightless")
    for place in ("none", "first_stage"):
        with pytest.raises(ValueError, match="use gauss_conv='both' or 'spatial_attention' with it"):
            MSHUNet(**SMALL, gauss_conv=place, sa_form="free")
    with pytest.raises(ValueError, match="pass gauss=True with it"):
        SpatialAttention(7, free=True)
    with pytest.raises(ValueError, match="pass gauss=True with it"):
        ResidualAttentionBlock(4, 4, sa_form="free")
    assert isinstance(MSHUNet(**SMALL, gauss_conv="spatial_attention", sa_form="free").middle[0].sa.conv,
                      ShapedFilter2d)


def test_sigma_theta_plot_reads_the_first_stage_convs_of_a_free_sa_checkpoint(tmp_path):
    """tools/plot_kernels.kernels_from_checkpoint (the ablation's σ/θ plot) lists the GaussianShapedConv2d layers and
    skips the weight-free filters (their σ_raw has no weight beside it)."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tools.plot_kernels import kernels_from_checkpoint

    net = MSHUNet(**SMALL, gauss_conv="both", sa_form="free")
    path = tmp_path / "epoch_1.pth"
    torch.save({"state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path)
    rows = kernels_from_checkpoint(str(path))
    assert [(name, k) for name, k, *_ in rows] == [("net.encoder_0.0.conv1", 3), ("net.encoder_0.0.conv2", 3)]
