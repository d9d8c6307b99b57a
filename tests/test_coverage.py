"""Coverage of the floored pinwheel: every input pixel reaches the output at every k, stride and θ (default
GaussianShapedConv2d), the hard pinwheel (mask_floor=0) provably does not, and the floor's own properties."""
import math

import pytest
import torch
import torch.nn as nn

from gaussconv_plugin import GaussianShapedConv2d
from gaussconv_plugin.masks import (
    DEFAULT_MASK_FLOOR,
    blind_input_fraction,
    floor_mask,
    gaussian_envelope,
    pinwheel_mask_hard,
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
    hard.load_state_dict(gs.state_dict())
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
