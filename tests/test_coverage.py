"""Coverage of the floored pinwheel: every input pixel reaches the output at every k, stride and θ (default
GaussianShapedConv2d), the hard pinwheel (mask_floor=0) provably does not, and the floor's own properties.
Coverage at every σ training can reach (the lower bound σ_min, σ_raw driven to −∞), θ every 15°, in float32 and
under float16 / bfloat16 autocast; without the bound (sigma_min=0) the same check finds the blind pixels."""
import math

import pytest
import torch
import torch.nn as nn

from gaussconv_plugin import GaussianShapedConv2d
from gaussconv_plugin.masks import (
    DEFAULT_MASK_FLOOR,
    SIGMA_BETA,
    SIGMA_MIN,
    blind_input_fraction,
    floor_mask,
    gaussian_envelope,
    pinwheel_mask_hard,
    sigma_from_raw,
)

THETAS = torch.linspace(-math.pi / 2, math.pi / 2, 37).tolist()  # 5° steps, both ends included
SIZE = 32  # input side; interior = pixels at least layers·k from the border (as blind_input_fraction)


pytestmark = pytest.mark.usefixtures("one_thread")


def _conv(cin, cout, k, stride, theta, seed, **kw) -> GaussianShapedConv2d:
    """A GaussianShapedConv2d with random weights, every output channel's θ set to ``theta`` (float64)."""
    torch.manual_seed(seed)
    c = GaussianShapedConv2d(cin, cout, k, stride, **kw).double()
    with torch.no_grad():
        c.theta.fill_(theta)
    return c


def _input_grad(layers, size=SIZE) -> torch.Tensor:
    """|∂L/∂x| on a ``size × size`` input through the modules' real forward, L a random linear read-out."""
    g = torch.Generator().manual_seed(123)
    x = torch.randn(1, layers[0].in_channels, size, size, dtype=torch.float64, generator=g, requires_grad=True)
    y = x
    for m in layers:
        y = m(y)
    r = torch.rand(y.shape, dtype=torch.float64, generator=g) + 0.5  # positive read-out weights
    (y * r).sum().backward()
    return x.grad.abs().sum(1)[0]  # (H, W), summed over input channels


def _interior(grad: torch.Tensor, k: int, layers: int) -> torch.Tensor:
    m = layers * k
    return grad[m:-m, m:-m]


def _blind_fraction(layers, k) -> float:
    inner = _interior(_input_grad(layers), k, len(layers))
    return float((inner == 0).double().mean())


# ---------------------------------------------------------------------------------------------- coverage
def test_default_floor_is_the_documented_value():
    assert DEFAULT_MASK_FLOOR == 0.6  # chosen by the SIRST train → val screen (docs/ablation/screen_v2_train_val)
    assert GaussianShapedConv2d(1, 1, 3).mask_floor == DEFAULT_MASK_FLOOR
    assert 0.0 < DEFAULT_MASK_FLOOR < 1.0


@pytest.mark.parametrize("k", [3, 5, 7])
@pytest.mark.parametrize("stride", [1, 2])
def test_default_conv_reads_every_interior_pixel_at_every_theta(k, stride):
    """One layer: the input gradient is nonzero at every interior pixel, for 37 angles over [-π/2, π/2]."""
    for theta in THETAS:
        conv = _conv(1, 2, k, stride, theta, seed=k)
        inner = _interior(_input_grad([conv]), k, 1)
        assert inner.numel() > 0
        n_blind = int((inner == 0).sum())
        assert n_blind == 0, f"k={k} stride={stride} theta={theta:.4f}: {n_blind} blind interior pixels"
        # and no tap of the effective kernel is zero (the floor never cuts a tap)
        assert bool((conv.envelope().detach() > 0).all())


@pytest.mark.parametrize("k", [3, 5, 7])
def test_default_conv_reads_every_pixel_through_two_stride2_layers(k):
    for theta in THETAS:
        l1 = _conv(1, 2, k, 2, theta, seed=k)
        l2 = _conv(2, 2, k, 2, theta, seed=k + 100)
        inner = _interior(_input_grad([l1, l2]), k, 2)
        assert inner.numel() > 0
        n_blind = int((inner == 0).sum())
        assert n_blind == 0, f"k={k} theta={theta:.4f}: {n_blind} blind interior pixels after two stride-2 layers"


def test_negative_control_hard_pinwheel_leaves_blind_pixels():
    """mask_floor=0 (hard pinwheel), k=3, stride 2, θ=0 (the X): half the pixels are blind, 62.5 % after two layers.
    Proves the coverage checks above can fail."""
    l1 = _conv(1, 2, 3, 2, 0.0, seed=0, mask_floor=0.0)
    l2 = _conv(2, 2, 3, 2, 0.0, seed=1, mask_floor=0.0)
    assert _blind_fraction([l1], 3) == pytest.approx(0.5, abs=0)
    assert _blind_fraction([l1, l2], 3) == pytest.approx(0.625, abs=0)
    # the blind pixels are exactly those of the wrong row/column parity (one layer)
    inner = _input_grad([l1])
    reached = inner != 0
    rows, cols = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    same_parity = (rows % 2) == (cols % 2)
    assert torch.equal(_interior(reached, 3, 1), _interior(same_parity, 3, 1))
    # the same hard module at stride 1 reads everything (the cut taps only matter when strided)
    assert _blind_fraction([_conv(1, 2, 3, 1, 0.0, seed=0, mask_floor=0.0)], 3) == 0.0
    # and the plus (θ = π/4 .. π/2) misses a quarter
    assert _blind_fraction([_conv(1, 2, 3, 2, 1.0, seed=0, mask_floor=0.0)], 3) == pytest.approx(0.25, abs=0)


def test_blind_input_fraction_numbers():
    x_mask = pinwheel_mask_hard(torch.zeros(1), 3)[0, 0]
    plus = pinwheel_mask_hard(torch.tensor([1.0]), 3)[0, 0]
    assert x_mask.int().tolist() == [[1, 0, 1], [0, 1, 0], [1, 0, 1]]
    assert blind_input_fraction(x_mask, 2) == 0.5
    assert blind_input_fraction(x_mask, 2, layers=2) == 0.625
    assert blind_input_fraction(plus, 2) == 0.25
    assert blind_input_fraction(plus, 2, layers=2) == 0.3125
    assert blind_input_fraction(x_mask, 1) == 0.0 and blind_input_fraction(x_mask, 1, layers=2) == 0.0
    assert blind_input_fraction(torch.ones(3, 3), 2, layers=2) == 0.0
    # a centre-only kernel at stride 2 reads one pixel in four
    centre = torch.zeros(3, 3)
    centre[1, 1] = 1
    assert blind_input_fraction(centre, 2) == 0.75
    # floored kernels are full: nothing blind, for every k, angle, stride, depth
    for k in (3, 5, 7):
        for theta in THETAS[::4]:
            m = floor_mask(pinwheel_mask_hard(torch.tensor([theta]), k), DEFAULT_MASK_FLOOR)[0, 0]
            for s in (1, 2):
                assert blind_input_fraction(m, s, size=48, layers=2) == 0.0, (k, theta, s)


def test_blind_input_fraction_agrees_with_the_module_measurement():
    """blind_input_fraction(effective kernel) equals the fraction measured through the module's forward."""
    for k in (3, 5):
        for theta in (0.0, 0.3, 0.6, 1.0):
            for floor in (0.0, DEFAULT_MASK_FLOOR):
                l1 = _conv(1, 1, k, 2, theta, seed=2, mask_floor=floor)
                kern = l1.effective_kernel().detach()[0, 0]
                assert blind_input_fraction(kern, 2) == pytest.approx(_blind_fraction([l1], k), abs=0)


# ---------------------------------------------------------------------------------------------- floor properties
@pytest.mark.parametrize("k", [3, 5, 7])
def test_floor_one_is_the_gaussian_only(k):
    c = GaussianShapedConv2d(2, 4, k, mask_floor=1.0, sigma_init=1.3)
    with torch.no_grad():
        c.theta.copy_(torch.tensor([0.0, 0.4, 0.9, -1.2]))
    torch.testing.assert_close(c.envelope(), gaussian_envelope(c.sigma, k), rtol=0, atol=0)
    # θ no longer shapes anything: its gradient is zero
    c(torch.randn(1, 2, 9, 9)).sum().backward()
    assert c.theta.grad is not None and bool((c.theta.grad == 0).all())
    assert c.sigma_raw.grad.abs().sum() > 0


def test_theta_gradient_with_default_floor_is_the_hard_one_scaled():
    """With a linear read-out the upstream gradient does not depend on the forward, so θ's gradient at m₀ is
    exactly (1 − m₀) times that of the hard pinwheel, and nonzero."""
    x = torch.randn(2, 3, 12, 12, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    grads = {}
    for floor in (0.0, DEFAULT_MASK_FLOOR):
        c = _conv(3, 5, 5, 2, 0.0, seed=7, mask_floor=floor)
        with torch.no_grad():
            c.theta.copy_(torch.tensor([0.1, 0.35, -0.5, 0.8, 1.3], dtype=torch.float64))
        y = c(x)
        r = torch.randn(y.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
        (y * r).sum().backward()
        grads[floor] = c.theta.grad.clone()
    g = grads[DEFAULT_MASK_FLOOR]
    assert bool((g != 0).all()), g
    torch.testing.assert_close(g, (1 - DEFAULT_MASK_FLOOR) * grads[0.0])


@pytest.mark.parametrize("k", [3, 5, 7])
def test_forward_mask_values_are_floor_or_one(k):
    c = GaussianShapedConv2d(1, 3, k)
    with torch.no_grad():
        c.theta.copy_(torch.tensor([0.0, 0.45, 1.1]))
    mask = c.envelope().detach() / gaussian_envelope(c.sigma.detach(), k)
    vals = torch.round(mask, decimals=5).unique()
    torch.testing.assert_close(vals, torch.tensor([DEFAULT_MASK_FLOOR, 1.0]), rtol=0, atol=1e-6)  # both, only these
    hard = pinwheel_mask_hard(c.theta.detach(), k)
    torch.testing.assert_close(mask, torch.where(hard > 0, 1.0, DEFAULT_MASK_FLOOR), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("stride", [1, 2])
def test_to_conv2d_equals_module_with_floor(stride):
    torch.manual_seed(0)
    gs = GaussianShapedConv2d(4, 8, 5, stride, sigma_init=1.1).eval()
    with torch.no_grad():
        gs.theta.uniform_(-1.5, 1.5)
    assert gs.mask_floor == DEFAULT_MASK_FLOOR
    x = torch.randn(2, 4, 15, 18)
    plain = gs.to_conv2d()
    assert type(plain) is nn.Conv2d
    torch.testing.assert_close(plain(x), gs(x), atol=1e-5, rtol=1e-5)
    # the plain conv holds the floored kernel: no zero taps, unlike the hard pinwheel's
    assert bool((plain.weight != 0).all())
    hard = GaussianShapedConv2d(4, 8, 5, stride, sigma_init=1.1, mask_floor=0.0)
    hard.load_state_dict({k: v for k, v in gs.state_dict().items() if k != "_extra_state"})  # same W, σ, θ
    assert bool((hard.to_conv2d().weight == 0).any())


def test_old_pickles_without_floor_are_hard_pinwheels():
    """Modules pickled before the floor existed have no instance attribute: the class default 0.0 applies."""
    c = GaussianShapedConv2d(2, 2, 3)
    del c.mask_floor
    assert c.mask_floor == 0.0
    torch.testing.assert_close(c.envelope(), gaussian_envelope(c.sigma, 3) * pinwheel_mask_hard(c.theta, 3))


@pytest.mark.parametrize("bad", [-0.1, 1.5])
def test_bad_mask_floor_is_a_one_line_error(bad):
    with pytest.raises(ValueError, match="mask_floor") as e:
        GaussianShapedConv2d(2, 2, 3, mask_floor=bad)
    assert "\n" not in str(e.value) and repr(bad) in str(e.value)
    with pytest.raises(ValueError, match="mask_floor"):
        floor_mask(torch.ones(3, 3), bad)


# ---------------------------------------------------------------------------------------------- every reachable σ
THETAS_15 = [math.radians(t) for t in range(-90, 91, 15)]
# softplus(σ_raw) over the range training can reach: far below the bound, the bound itself, its smooth part, above
SOFTPLUS_GRID = [1e-6, 0.01, 0.05, 0.08, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, SIGMA_MIN, 0.45, 0.6, 0.9, 1.5, 3.5]
RAW_EXTREMES = [-30.0, -200.0, -1e4, -math.inf]  # σ_raw driven very negative: softplus underflows to 0
AUTOCAST = {"float32": None, "fp16-autocast": torch.float16, "bf16-autocast": torch.bfloat16}


def _raw_of_softplus(s: float) -> float:
    """σ_raw with softplus(σ_raw) = s (no bound), in float64."""
    s = torch.tensor(s, dtype=torch.float64)
    return float(s + torch.log(-torch.expm1(-s)))


RAWS = [_raw_of_softplus(s) for s in SOFTPLUS_GRID] + RAW_EXTREMES


def _blind_interior(conv, k, autocast, size=24) -> int:
    """Interior input pixels with exactly zero input gradient through the module's real forward (under autocast
    if given), L a positive random read-out; float32 input and parameters as in AMP training."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, conv.in_channels, size, size, generator=g, requires_grad=True)
    with torch.autocast("cpu", dtype=autocast or torch.bfloat16, enabled=autocast is not None):
        y = conv(x)
    assert y.dtype == (autocast or torch.float32)
    r = torch.rand(y.shape, generator=g) + 0.5
    (y.float() * r).sum().backward()
    return int((_interior(x.grad.abs().sum(1)[0], k, 1) == 0).sum())


def _sweep(k, stride, autocast, sigma_min=SIGMA_MIN, raws=RAWS, thetas=THETAS_15) -> list:
    """(σ_raw, θ, blind count) of every grid point with a blind interior pixel; default module (4 → 8 channels)."""
    torch.manual_seed(k + stride)
    conv = GaussianShapedConv2d(4, 8, k, stride, sigma_min=sigma_min)
    bad = []
    for raw in raws:
        for theta in thetas:
            with torch.no_grad():
                conv.sigma_raw.fill_(raw)
                conv.theta.fill_(theta)
            conv.zero_grad(set_to_none=True)
            n = _blind_interior(conv, k, autocast)
            if n:
                bad.append((raw, round(math.degrees(theta)), n))
    return bad


@pytest.mark.parametrize("dtype", list(AUTOCAST))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("k", [3, 5, 7])
def test_coverage_at_every_reachable_sigma_and_theta(k, stride, dtype):
    """No interior input pixel is blind for any σ_raw of the grid (σ from far below the bound up to 3.5, σ_raw = −∞
    included), θ every 15°, in float32 and under fp16 / bf16 autocast."""
    bad = _sweep(k, stride, AUTOCAST[dtype])
    assert not bad, f"k={k} stride={stride} {dtype}: blind pixels at (σ_raw, θ°, count) {bad[:6]}"


@pytest.mark.parametrize("dtype,softplus_sigma,want", [
    ("float32", 0.05, 0.75), ("float32", 0.08, 0.25), ("fp16-autocast", 0.15, 0.75), ("fp16-autocast", 0.2, 0.25),
    ("bf16-autocast", 0.05, 0.75),
])
def test_negative_control_unbounded_sigma_leaves_blind_pixels(dtype, softplus_sigma, want):
    """sigma_min=0 (plain softplus, the behaviour before the bound): the same measurement finds the blind pixels of
    issue 35 (k=3, stride 2, worst θ), so the sweep above can fail."""
    torch.manual_seed(0)
    conv = GaussianShapedConv2d(4, 8, 3, 2, sigma_min=0.0)
    worst = 0.0
    for theta in THETAS_15:
        with torch.no_grad():
            conv.sigma_raw.fill_(_raw_of_softplus(softplus_sigma))
            conv.theta.fill_(theta)
        n = _blind_interior(conv, 3, AUTOCAST[dtype])
        worst = max(worst, n / _interior(torch.zeros(24, 24), 3, 1).numel())
    assert worst == pytest.approx(want, abs=0)
    # the bounded module at the same σ_raw and angles reads everything
    assert not _sweep(3, 2, AUTOCAST[dtype], raws=[_raw_of_softplus(softplus_sigma)])


def test_sigma_bound_values():
    """σ ≥ σ_min for every σ_raw (−∞ included), increasing, and bit for bit softplus(σ_raw) from σ_min + 20/β up
    (value and gradient): the published σ (≥ 1.16) are unchanged."""
    raw = torch.cat([torch.linspace(-60, 30, 200001), torch.tensor([-1e4, -math.inf])])
    sig = sigma_from_raw(raw)
    assert bool((sig >= SIGMA_MIN).all()) and bool(torch.isfinite(sig).all())
    assert float(sig[-1]) == pytest.approx(SIGMA_MIN, abs=1e-7)
    assert bool((sig[:-2].diff() >= 0).all())
    plain = torch.nn.functional.softplus(raw)
    above = plain >= SIGMA_MIN + 20 / SIGMA_BETA
    assert SIGMA_MIN + 20 / SIGMA_BETA == pytest.approx(0.9)
    assert int(above.sum()) > 50_000 and torch.equal(sig[above], plain[above])
    r1 = raw[above][::997].clone().requires_grad_(True)
    r2 = r1.detach().clone().requires_grad_(True)
    sigma_from_raw(r1).sum().backward()
    torch.nn.functional.softplus(r2).sum().backward()
    assert torch.equal(r1.grad, r2.grad)
    # below: strictly above σ_min, within the smooth maximum's gap, continuous at the switch
    below = ~above & torch.isfinite(raw)
    gap = sig[below] - torch.maximum(plain[below], torch.tensor(SIGMA_MIN))
    assert bool((gap >= 0).all()) and float(gap.max()) <= math.log(2) / SIGMA_BETA + 1e-6
    assert torch.equal(sigma_from_raw(raw, 0.0), plain)
    # a default module's σ at init is k/2, unchanged (published runs start there)
    for k in (3, 5, 7):
        assert float(GaussianShapedConv2d(1, 2, k).sigma.detach()[0]) == k / 2


def test_small_sigma_is_finite_and_fusion_stays_exact():
    """σ_raw = −10⁴ (softplus underflows to 0): output and gradients finite (0/0 at the centre tap without the
    bound), and to_conv2d equals the module's forward."""
    torch.manual_seed(0)
    gs = GaussianShapedConv2d(4, 8, 5, 2)
    with torch.no_grad():
        gs.sigma_raw.fill_(-1e4)
        gs.theta.uniform_(-1.5, 1.5)
    x = torch.randn(2, 4, 15, 18)
    y = gs(x)
    y.square().mean().backward()
    assert bool(torch.isfinite(y).all()) and all(bool(torch.isfinite(p.grad).all()) for p in gs.parameters())
    assert float(gs.sigma.detach().min()) >= SIGMA_MIN
    torch.testing.assert_close(gs.to_conv2d().eval()(x), gs.eval()(x), rtol=1e-6, atol=1e-6)
    unbounded = GaussianShapedConv2d(4, 8, 5, 2, sigma_min=0.0)
    unbounded.load_state_dict({k: v for k, v in gs.state_dict().items() if k != "_extra_state"})  # same σ_raw
    assert not bool(torch.isfinite(unbounded.envelope()).all())  # what the bound prevents


def test_half_precision_module_keeps_its_kernel():
    """A module converted to float16 (Ultralytics validates in half on a GPU) computes the envelope in float32: its
    kernel equals the float32 kernel rounded once, and no tap of the inner 3×3 is zero at the bound."""
    torch.manual_seed(0)
    gs = GaussianShapedConv2d(4, 8, 3, 2)
    with torch.no_grad():
        gs.sigma_raw.fill_(-50.0)
    half = GaussianShapedConv2d(4, 8, 3, 2).half()
    half.load_state_dict(gs.state_dict())
    assert half.envelope().dtype == torch.float32
    k16 = half.effective_kernel()
    assert k16.dtype == torch.float16
    want = (half.weight.float() * gs.envelope()).half()  # float16 weights times the float32 envelope, rounded once
    torch.testing.assert_close(k16, want, rtol=0, atol=0)
    assert bool((half.envelope() > 1e-3).all())


def test_hard_pinwheel_tap_counts_stated_in_method_md():
    """docs/method.md: a hard k×k pinwheel keeps 5–9 (k = 3), 5–13 (5), 9–21 (7) taps depending on θ (off flips)."""
    thetas = torch.linspace(0.0, math.pi / 2, 2001, dtype=torch.float64)[1:-1]  # one period, flips 0 / π/2 left out
    for k, expected in ((3, {5, 9}), (5, {5, 9, 13}), (7, {9, 13, 17, 21})):
        counts = {int(pinwheel_mask_hard(t.view(1), k).sum()) for t in thetas}
        assert counts == expected, (k, sorted(counts))
