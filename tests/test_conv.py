"""GaussianShapedConv2d / GaussianShapedConv: masks, gradients, parameter count, fusion, errors."""
import math

import pytest
import torch
import torch.nn as nn

from gaussconv_plugin import GaussianShapedConv, GaussianShapedConv2d, fuse_gaussian_convs, swap_convs
from gaussconv_plugin.masks import (
    DEFAULT_MASK_FLOOR,
    default_theta,
    floor_mask,
    gaussian_envelope,
    mask_flip_angles,
    pinwheel_mask,
    pinwheel_mask_hard,
    pinwheel_mask_soft,
    sigma_from_raw,
    sigma_to_raw,
)

# θ = 0 masks written out by hand from docs/method.md ("Pinwheel mask"): four one-tap-wide blades, rays at j·90°,
# each shifted half a tap sideways (towards the ray turned +90°), centre on.
PINWHEEL_3 = [
    [1, 0, 1],
    [0, 1, 0],
    [1, 0, 1],
]
PINWHEEL_5 = [
    [0, 0, 0, 1, 0],
    [1, 1, 0, 1, 0],
    [0, 0, 1, 0, 0],
    [0, 1, 0, 1, 1],
    [0, 1, 0, 0, 0],
]


def test_pinwheel_at_theta0_matches_design():
    assert pinwheel_mask_hard(torch.zeros(1), 3)[0, 0].int().tolist() == PINWHEEL_3
    assert pinwheel_mask_hard(torch.zeros(1), 5)[0, 0].int().tolist() == PINWHEEL_5


@pytest.mark.parametrize("k", [3, 5, 7, 9])
def test_pinwheel_properties(k):
    thetas = torch.linspace(-math.pi, math.pi, 73)
    m = pinwheel_mask_hard(thetas, k)[:, 0]
    r = k // 2
    assert set(m.unique().tolist()) <= {0.0, 1.0}
    assert bool((m[:, r, r] == 1).all()), "centre tap must always be on"
    # four blades at 90° steps: the mask is invariant under a quarter turn of the grid
    assert torch.equal(m, torch.rot90(m, 1, dims=(1, 2)))
    # turning θ by a quarter turn permutes the blades: same mask (generic angles, away from ties)
    t = torch.rand(50, generator=torch.Generator().manual_seed(k)) * 2 * math.pi
    assert torch.equal(pinwheel_mask_hard(t + math.pi / 2, k), pinwheel_mask_hard(t, k))
    # each blade has r taps at θ = 0 (k ≥ 5: blades are disjoint)
    if k >= 5:
        assert int(pinwheel_mask_hard(torch.zeros(1), k).sum()) == 4 * r + 1


def test_theta_changes_mask_and_k3_family():
    m_pos = pinwheel_mask_hard(torch.tensor([0.01]), 3)[0, 0].int().tolist()
    m_neg = pinwheel_mask_hard(torch.tensor([-0.01]), 3)[0, 0].int().tolist()
    assert m_pos == PINWHEEL_3  # θ = 0 is the limit θ → 0+ (right-continuous)
    assert m_neg == [[0, 1, 0], [1, 1, 1], [0, 1, 0]]  # just below 0 the blades catch the axis taps: plus
    m7 = pinwheel_mask_hard(torch.tensor([0.0, 0.4]), 7)
    assert not torch.equal(m7[0], m7[1])


def test_ste_forward_binary_backward_soft():
    theta = torch.tensor([0.1, -0.3, 1.0], requires_grad=True)
    m = pinwheel_mask(theta, 5)
    assert torch.equal(m.detach(), pinwheel_mask_hard(theta, 5))
    (m * torch.randn_like(m)).sum().backward()
    assert theta.grad is not None and bool((theta.grad != 0).all())
    soft = pinwheel_mask_soft(theta.detach(), 5)
    assert bool(((soft > 0) & (soft <= 1)).all())
    for k in (3, 5, 7):  # bit for bit at every angle: hard + soft - soft.detach() is off by up to 6e-8 at some
        sweep = torch.linspace(-math.pi, math.pi, 721, requires_grad=True)
        assert torch.equal(pinwheel_mask(sweep, k).detach(), pinwheel_mask_hard(sweep.detach(), k))


def test_soft_mask_is_the_blade_union_and_its_constants_survive_inference_mode():
    """The soft mask is 1 − ∏ⱼ(1 − sⱼ) over the 4 blades (written out, not torch.prod, whose backward synchronises a
    GPU); its cached tap-grid constants, even when first built under torch.inference_mode, serve a training step."""
    from gaussconv_plugin import masks

    masks._grid_consts.cache_clear()
    with torch.inference_mode():
        GaussianShapedConv2d(2, 3, 5, padding=2)(torch.randn(1, 2, 8, 8))  # first use of k = 5: constants built here
    theta = torch.tensor([0.1, -0.3, 1.0], requires_grad=True)
    a, b = masks._blade_coords(theta, 5)
    sj = (torch.sigmoid((a - 0.5) / 0.5) * torch.sigmoid((2.5 - a) / 0.5) * torch.sigmoid(b / 0.5)
          * torch.sigmoid((1.0 - b) / 0.5))
    ref = 1.0 - torch.prod(1.0 - sj, dim=1, keepdim=True)
    ref[..., 2, 2] = 1.0
    soft = pinwheel_mask_soft(theta, 5)
    torch.testing.assert_close(soft, ref)
    g, = torch.autograd.grad((soft * torch.arange(75.0).view(3, 1, 5, 5).sin()).sum(), theta)
    g_ref, = torch.autograd.grad((ref * torch.arange(75.0).view(3, 1, 5, 5).sin()).sum(), theta)
    torch.testing.assert_close(g, g_ref)
    conv = GaussianShapedConv2d(2, 3, 5, padding=2)
    conv(torch.randn(1, 2, 8, 8)).sum().backward()
    assert float(conv.theta.grad.abs().sum()) > 0 and float(conv.sigma_raw.grad.abs().sum()) > 0


def test_gaussian_envelope_formula():
    s = torch.tensor([0.7, 2.0])
    g = gaussian_envelope(s, 5)
    u = torch.arange(-2, 3.0)
    ref = torch.exp(-(u.view(1, -1) ** 2 + u.view(-1, 1) ** 2) / (2 * s.view(-1, 1, 1) ** 2))
    torch.testing.assert_close(g[:, 0], ref)
    sig = torch.tensor([0.41, 0.5, 0.8, 1.5, 7.0])  # the bound's smooth part (< 0.9) and its identity part
    torch.testing.assert_close(sigma_from_raw(sigma_to_raw(sig)), sig)
    torch.testing.assert_close(sigma_from_raw(sigma_to_raw(torch.tensor([0.1]), 0), 0), torch.tensor([0.1]))


def test_gradcheck_input_weight_sigma():
    """The module's own forward (``torch.func.functional_call``, float64) has the gradients of its formula w.r.t. the
    input, the weight and σ_raw — σ on both sides of the bound's knee (0.5, 0.7: its smooth part; 1.5: identity).
    θ is left out: its gradient is the straight-through estimator's, not the hard mask's derivative."""
    from torch.func import functional_call

    torch.manual_seed(0)
    conv = GaussianShapedConv2d(2, 3, 3, stride=1, theta_init=0.2).double()
    assert conv.mask_floor == DEFAULT_MASK_FLOOR > 0
    x = torch.randn(1, 2, 5, 5, dtype=torch.double, requires_grad=True)
    w = conv.weight.detach().clone().requires_grad_(True)
    sraw = sigma_to_raw(torch.tensor([0.5, 1.5, 0.7])).double().requires_grad_(True)  # float64: a float64 kernel

    def f(x, w, sraw):
        return functional_call(conv, {"weight": w, "sigma_raw": sraw}, (x,), strict=False)

    assert torch.autograd.gradcheck(f, (x, w, sraw), eps=1e-6, atol=1e-5)
    # and the module computes the documented kernel W · G(σ(σ_raw)) · (m0 + (1 - m0)·M(θ))
    k = w * gaussian_envelope(sigma_from_raw(sraw), 3) * floor_mask(pinwheel_mask(conv.theta, 3), conv.mask_floor)
    torch.testing.assert_close(f(x, w, sraw), torch.nn.Conv2d._conv_forward(conv, x, k.to(w.dtype), conv.bias))


def test_module_gradients_reach_all_parameters():
    conv = GaussianShapedConv2d(4, 6, 5, stride=2)
    conv(torch.randn(2, 4, 16, 16)).square().mean().backward()
    for name in ("weight", "bias", "sigma_raw", "theta"):
        g = getattr(conv, name).grad
        assert g is not None and g.abs().sum() > 0, name
    assert conv.theta.grad.shape == (6,) and conv.sigma_raw.grad.shape == (6,)


@pytest.mark.parametrize("cfg", [dict(in_channels=8, out_channels=16, kernel_size=3, groups=1),
                                 dict(in_channels=8, out_channels=16, kernel_size=5, groups=4, bias=False)])
def test_parameter_count(cfg):
    base = nn.Conv2d(padding=cfg["kernel_size"] // 2, **cfg)
    gs = GaussianShapedConv2d(**cfg)
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(gs) == n(base) + 2 * cfg["out_channels"]
    assert gs.weight.shape == base.weight.shape
    assert sum(p.numel() for p in GaussianShapedConv2d(per_channel=False, **cfg).parameters()) == n(base) + 2


@pytest.mark.parametrize("stride,dilation,groups", [(1, 1, 1), (2, 1, 2), (1, 2, 1)])
def test_to_conv2d_equals_module(stride, dilation, groups):
    torch.manual_seed(0)
    gs = GaussianShapedConv2d(4, 8, 3, stride, None, dilation, groups, theta_init=0.5, sigma_init=0.9).eval()
    x = torch.randn(2, 4, 17, 19)
    plain = gs.to_conv2d()
    assert type(plain) is nn.Conv2d
    torch.testing.assert_close(plain(x), gs(x), atol=1e-5, rtol=1e-5)
    assert gs(x).shape[-2:] == nn.Conv2d(4, 8, 3, stride, dilation, dilation, groups)(x).shape[-2:]


def test_block_fuse_folds_bn():
    torch.manual_seed(0)
    blk = GaussianShapedConv(3, 8, 3, 2)
    blk.train()
    for _ in range(3):  # give BN non-trivial running statistics
        blk(torch.randn(4, 3, 16, 16) * 3 + 1)
    blk.eval()
    x = torch.randn(2, 3, 16, 16)
    y = blk(x)
    blk.fuse()
    assert not hasattr(blk, "bn") and type(blk.conv) is nn.Conv2d
    torch.testing.assert_close(blk(x), y, atol=1e-5, rtol=1e-5)


def test_swap_convs_and_fuse_back():
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=4)
    n_before = sum(p.numel() for p in model.parameters())
    replaced = swap_convs(model, include=["conv1", "layer1.*"])
    assert sorted(replaced) == ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2"]
    assert isinstance(model.conv1, GaussianShapedConv2d) and model.conv1.stride == (2, 2)
    assert model.conv1.padding == (3, 3) and model.conv1.kernel_size == (7, 7)
    assert sum(p.numel() for p in model.parameters()) == n_before + 2 * sum(m.out_channels for m in replaced.values())
    # 1x1 downsample convs are skipped by default, and nothing outside the pattern was touched
    assert all(type(m) is nn.Conv2d for n, m in model.named_modules()
               if n.startswith("layer2") and isinstance(m, nn.Conv2d))
    model.eval()
    x = torch.randn(1, 3, 64, 64)
    y = model(x)
    assert fuse_gaussian_convs(model) == 5
    assert not any(isinstance(m, GaussianShapedConv2d) for m in model.modules())
    torch.testing.assert_close(model(x), y, atol=1e-5, rtol=1e-4)


def test_swap_keeps_weights_and_predicate():
    seq = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 1), nn.Conv2d(4, 4, 5, padding=2, bias=False))
    w0 = seq[0].weight.detach().clone()
    rep = swap_convs(seq, predicate=lambda name, m: m.kernel_size[0] == 3)
    assert list(rep) == ["0"] and torch.equal(seq[0].weight, w0)
    assert type(seq[2]) is nn.Conv2d
    rep = swap_convs(seq, skip_1x1=False, exclude=["0"])
    assert sorted(rep) == ["1", "2"] and seq[2].bias is None
    with pytest.raises(ValueError, match="remove it from include"):
        swap_convs(nn.Sequential(nn.Conv2d(3, 3, (1, 3))), include=["0"])
    # a pattern that names no conv (a typo, a Linear) stops instead of leaving the model stock
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4, 2))
    for bad in ("backbone.*", "2", ["0", "nosuch"]):
        with pytest.raises(ValueError, match=r"include pattern '(backbone\.\*|2|nosuch)' matches no nn.Conv2d of "
                                             r"the model \(its convs: '0'\); fix the pattern"):
            swap_convs(net, include=bad)
    assert type(net[0]) is nn.Conv2d  # nothing swapped before the error


def test_swap_keeps_a_frozen_conv_frozen():
    """A conv whose weight and bias are frozen stays frozen, σ/θ included; a trainable one gets trainable σ/θ."""
    seq = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.Conv2d(4, 4, 3, padding=1))
    seq[0].requires_grad_(False)
    swap_convs(seq)
    assert [p.requires_grad for p in seq[0].parameters()] == [False] * 4  # weight, bias, σ_raw, θ
    assert [p.requires_grad for p in seq[1].parameters()] == [True] * 4


def test_the_state_dict_records_the_kernel_settings_and_refuses_other_ones():
    """m₀, τ and σ_min decide what W, σ_raw and θ compute: a state dict saved with mask_floor=0 loaded into a default
    module would give another kernel (50 % off) silently; it is refused in one line naming the value, a matching
    module loads it, and a state dict saved before the settings were recorded still loads (strict)."""
    torch.manual_seed(0)
    hard = GaussianShapedConv2d(4, 4, 3, mask_floor=0.0)
    sd = hard.state_dict()
    assert sd["_extra_state"].tolist() == [0.0, hard.tau, hard.sigma_min]
    for built in (dict(), dict(mask_floor=0.0, tau=0.25), dict(mask_floor=0.0, sigma_min=0.0)):
        with pytest.raises(ValueError, match="saved with .* cannot load into one built with .*; build the model with"):
            GaussianShapedConv2d(4, 4, 3, **built).load_state_dict(sd)
    same = GaussianShapedConv2d(4, 4, 3, mask_floor=0.0)
    same.load_state_dict(sd)
    x = torch.randn(1, 4, 8, 8)
    assert torch.equal(same.eval()(x), hard.eval()(x))
    old = {k: v for k, v in sd.items() if k != "_extra_state"}
    assert not GaussianShapedConv2d(4, 4, 3, mask_floor=0.0).load_state_dict(old).missing_keys
    block = nn.Sequential(GaussianShapedConv2d(4, 4, 3))  # nested: the key carries the prefix
    assert "0._extra_state" in block.state_dict()
    with pytest.raises(ValueError, match="mask_floor=0 "):
        block.load_state_dict({"0." + k: v for k, v in sd.items()})


def test_swap_keeps_a_shared_conv_shared_and_refuses_to_drop_hooks_or_pruning():
    """A conv held twice is one GaussianShapedConv2d in both places (weights stay shared); a pruned conv, or one with
    hooks, is refused in one line naming the fix instead of coming back unpruned or unhooked."""
    import torch.nn.utils.prune as prune

    c = nn.Conv2d(4, 4, 3, padding=1)
    seq = nn.Sequential(c, nn.ReLU(), c)
    out = swap_convs(seq)
    assert sorted(out) == ["0", "2"] and seq[0] is seq[2] and isinstance(seq[0], GaussianShapedConv2d)
    assert sum(p.numel() for p in seq.parameters()) == 4 * 4 * 9 + 4 + 2 * 4

    pruned = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1))
    prune.l1_unstructured(pruned[0], "weight", amount=0.5)
    with pytest.raises(ValueError, match=r"'0' cannot be swapped: it is pruned .*prune\.remove\(conv, 'weight'\)"):
        swap_convs(pruned)
    assert type(pruned[0]) is nn.Conv2d  # nothing swapped
    prune.remove(pruned[0], "weight")
    zeros = int((pruned[0].weight == 0).sum())
    swap_convs(pruned)
    assert int((pruned[0].weight == 0).sum()) == zeros >= 72  # the pruned weights stay pruned

    hooked = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1))
    hooked[0].register_forward_hook(lambda *a: None)
    with pytest.raises(ValueError, match="forward hooks a new module would not carry.*exclude='0'"):
        swap_convs(hooked)
    assert swap_convs(hooked, exclude="0") == {}


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kernel_size=4), "odd square kernel_size"),
        (dict(kernel_size=0), "odd square kernel_size"),
        (dict(kernel_size=(3, 5)), "odd square kernel_size"),
        (dict(kernel_size=3, sigma_init=0.0), r"sigma must be > 0\.4 .*sigma_min=0\.4"),
        (dict(kernel_size=3, sigma_init=-1.0), r"sigma must be > 0\.4"),
        (dict(kernel_size=3, sigma_init=0.3), r"sigma must be > 0\.4"),
        (dict(kernel_size=3, sigma_init=0.3, sigma_min=0.5), r"sigma must be > 0\.5"),
        (dict(kernel_size=3, sigma_min=-0.1), "sigma_min must be >= 0"),
        (dict(kernel_size=3.0), "odd square kernel_size"),
        (dict(kernel_size=3, tau=0), "tau must be a finite number > 0"),
        (dict(kernel_size=3, tau=math.inf), "tau must be a finite number > 0"),
        (dict(kernel_size=3, sigma_init=math.inf), "sigma_init must be a finite width"),
        (dict(kernel_size=3, theta_init="middle"), "theta_init must be an angle in radians or 'mid'"),
        (dict(kernel_size=3, theta_init=math.nan), "theta_init must be a finite angle in radians or 'mid'"),
        (dict(kernel_size=3, theta_init=-math.inf), "theta_init must be a finite angle"),
    ],
)
def test_bad_arguments_one_line_errors(kwargs, match):
    with pytest.raises(ValueError, match=match) as e:
        GaussianShapedConv2d(2, 2, **kwargs)
    assert "\n" not in str(e.value)


def test_k3_mask_family_over_theta():
    x, full, plus = PINWHEEL_3, [[1] * 3] * 3, [[0, 1, 0], [1, 1, 1], [0, 1, 0]]
    for t, want in [(0.0, x), (0.5, x), (0.53, full), (0.78, full), (0.79, plus), (1.5, plus), (math.pi / 2, x)]:
        assert pinwheel_mask_hard(torch.tensor([t]), 3)[0, 0].int().tolist() == want, t


def test_eval_kernel_cached_until_a_parameter_changes():
    """Eval mode without autograd reuses the effective kernel; every in-place change, load_state_dict, train mode and
    autograd recompute it, and the cache is never pickled or deep-copied."""
    import copy
    import pickle

    torch.manual_seed(0)
    m = GaussianShapedConv2d(4, 6, 3, stride=2).eval()
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        y = m(x)
        k = m._eval_kernel()
        assert m._eval_kernel() is k and torch.equal(y, m.to_conv2d()(x))
        for p, delta in ((m.sigma_raw, 0.5), (m.theta, 1.0), (m.weight, 0.1)):
            p.add_(delta)
            assert m._eval_kernel() is not k
            k = m._eval_kernel()
            assert torch.equal(m(x), m.to_conv2d()(x))
        sd = {n: t.clone() for n, t in m.state_dict().items()}
        sd["weight"].mul_(-1)
        m.load_state_dict(sd)
        assert torch.allclose(m(x), m.to_conv2d()(x)) and torch.allclose(m._eval_kernel(), -k)
    assert "_kernel_cache" not in pickle.loads(pickle.dumps(m)).__dict__
    assert "_kernel_cache" not in copy.deepcopy(m).__dict__
    m.train()
    assert "_kernel_cache" not in m.__dict__
    m.eval()
    m(x).sum().backward()  # autograd on: no cache, gradients reach σ and θ's soft mask
    assert "_kernel_cache" not in m.__dict__
    assert float(m.sigma_raw.grad.abs().sum()) > 0 and float(m.theta.grad.abs().sum()) > 0


def test_k3_flip_angles_are_the_documented_ones():
    # the X on [0, π/6), all nine taps on [π/6, π/4), the plus on [π/4, π/2) (docs/method.md, "Pinwheel mask")
    flips = mask_flip_angles(3)
    assert len(flips) == 3 and flips[0] == 0.0
    assert flips[1] == pytest.approx(math.pi / 6, abs=1e-4) and flips[2] == pytest.approx(math.pi / 4, abs=1e-4)


@pytest.mark.parametrize("k", [3, 5, 7, 9])
def test_theta_zero_is_a_flip_and_mid_keeps_the_windmill_both_ways(k):
    at0 = pinwheel_mask_hard(torch.tensor([0.0], dtype=torch.float64), k)
    below = pinwheel_mask_hard(torch.tensor([-1e-4], dtype=torch.float64), k)
    assert not torch.equal(at0, below)  # a θ trained from 0 flips its mask whenever it changes sign
    mid = default_theta(k)
    assert math.radians(6) < mid < math.radians(16)
    margin = mid - math.radians(0.01)
    for t in (mid - margin, mid - margin / 2, mid, mid + margin / 2, mid + margin):
        assert torch.equal(pinwheel_mask_hard(torch.tensor([t], dtype=torch.float64), k), at0), (k, t)


def test_small_theta_moves_flip_masks_from_zero_but_not_from_mid():
    """The consequence for training: θ moves of ±0.5° (the spread measured on trained YOLO stems) change the mask
    of about half the channels started at θ = 0 and of none started at 'mid'."""
    g = torch.Generator().manual_seed(0)
    jitter = torch.randn(256, generator=g, dtype=torch.float64) * math.radians(0.5)
    for start, want in ((0.0, (0.3, 0.7)), (default_theta(3), (0.0, 0.0))):
        ref = pinwheel_mask_hard(torch.tensor([start], dtype=torch.float64), 3)
        moved = pinwheel_mask_hard(start + jitter, 3)
        changed = float((moved != ref).flatten(1).any(1).double().mean())
        assert want[0] <= changed <= want[1], (start, changed)


def test_theta_init_mid_per_kernel_size():
    for k in (3, 7):
        m = GaussianShapedConv2d(2, 4, k, theta_init="mid")
        assert torch.allclose(m.theta, torch.full((4,), default_theta(k)))
        assert torch.equal(pinwheel_mask_hard(m.theta.detach(), k), pinwheel_mask_hard(torch.zeros(4), k))
    assert default_theta(1) == 0.0  # a 1×1 mask never flips
    # the default since issue 33's screen: 'mid', off the flip at θ = 0
    assert torch.allclose(GaussianShapedConv2d(2, 4, 5).theta, torch.full((4,), default_theta(5)))
    assert float(GaussianShapedConv2d(2, 4, 3, theta_init=0.0).theta.abs().max()) == 0.0


def test_unet_keeps_theta_zero_where_it_was_published():
    """The U-Net's weighted Gaussian convs keep θ₀ = 0 (what its published runs trained with) unless gauss_kwargs
    names theta_init; swap_convs (any model) takes the package default 'mid'."""
    from gaussconv_plugin import swap_convs
    from gaussconv_plugin.masks import PINNED_THETA_INIT
    from gaussconv_plugin.unet import MSHUNet

    def thetas(model):
        return [float(m.theta.abs().max()) for m in model.modules() if isinstance(m, GaussianShapedConv2d)]

    got = thetas(MSHUNet(gauss_conv="both", channels=(4, 8, 8, 8, 8), blocks=(1, 1, 1, 1)))
    assert len(got) > 2 and set(got) == {PINNED_THETA_INIT}
    opted = MSHUNet(gauss_conv="both", channels=(4, 8, 8, 8, 8), blocks=(1, 1, 1, 1), gauss_kwargs={"theta_init": "mid"})
    assert min(thetas(opted)) > 0.1
    net = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1))
    swap_convs(net)
    assert thetas(net) == [pytest.approx(default_theta(3))]
