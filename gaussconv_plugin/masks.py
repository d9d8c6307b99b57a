"""Kernel envelopes of the Gaussian-shaped convolution: Gaussian envelope and rotated pinwheel mask.

All functions are pure torch and differentiable where stated. Tap coordinates follow image
conventions: ``u`` is the column offset (x, to the right) and ``v`` the row offset (y, downwards)
of a tap from the kernel centre, both in ``{-r, ..., r}`` with ``r = (k - 1) // 2``.

Gaussian envelope (per output channel ``o``)::

    G_σ(u, v) = exp(-(u² + v²) / (2 σ²)),    σ = bound(softplus(σ_raw)) ≥ σ_min

Lower bound of σ (coverage at every σ training can reach). Without a bound, σ → 0 shrinks the envelope to its
centre tap: the edge and corner taps of the inner 3×3 underflow (float32: exp(−1/(2σ²)) = 0 below σ ≈ 0.1; in
float16, to which autocast casts the kernel, already below σ ≈ 0.25), and a stride-2 conv then reads only one
input pixel in two or four. The bound is a smooth maximum that is the identity above ``σ_min + 20/β``::

    bound(s) = s                                  if β·(s − σ_min) > 20   (bit for bit: σ ≥ 0.9 is unchanged)
             = σ_min + softplus(β·(s − σ_min))/β  otherwise               (> σ_min, increasing, C¹)

with σ_min = :data:`SIGMA_MIN` = 0.4 and β = :data:`SIGMA_BETA` = 40. At σ_min the smallest envelope value
that coverage needs (the corner of the inner 3×3, exp(−1/σ²) = 1.9e-3; the edge: 0.044) stays far above
float16's smallest subnormal (6e-8): a tap of weight |W| ≥ 3e-5 keeps a nonzero float16 kernel value with the
default mask floor. So every tap class of strides 1–3 (the inner 3×3) is read in float32, bfloat16 and float16
(autocast), at every θ and every σ_raw (even −∞). ``sigma_min=0`` gives the unbounded ``softplus`` (blind
pixels at small σ; kept for comparison only). The bound adds no parameter and, σ being ``(C,)``, no measurable
time (``tools/bench_conv.py``).

Pinwheel mask rotated by θ. Four blades, blade ``j`` (j = 0..3) is a ray from the centre in the
direction ``φ_j = θ + j·π/2`` whose one-tap-wide strip is offset half a tap sideways (towards the
normal ``n_j``, the ray direction turned by +90° in the (u, v) frame: right → down → left → up, as
the four branches of PConv). With the blade coordinates of a tap

    a_j = (u, v)·d_j        (along the blade),   d_j = ( cos φ_j, sin φ_j)
    b_j = (u, v)·n_j        (across the blade),  n_j = (-sin φ_j, cos φ_j)

a tap lies on blade ``j`` iff ``½ < a_j ≤ r + ½`` and ``0 < b_j ≤ 1`` (the strip ``b ∈ (0, 1]`` has
width one tap and its centre line at b = ½). The centre tap is always on. The hard mask is

    M_hard(u, v) = 1  if (u, v) = (0, 0) or the tap lies on any blade, else 0.

The half-open intervals make θ = 0 the limit θ → 0⁺ and the rasterisation unambiguous. At θ = 0
(k = 5; ``C`` centre, ``#`` on)::

    . . . # .
    # # . # .
    . . C . .
    . # . # #
    . # . . .

which is the windmill of PConv's four asymmetric 1×k / k×1 branches, each arm shifted one tap
sideways. The mask is right-continuous in θ (θ = 0 is the limit θ → 0⁺) and has period π/2. For k = 3
the only 90°-symmetric masks are the X, the plus and the full square: the mask is the X (centre + four
corners) for θ ∈ [0, π/6), all nine taps for θ ∈ [π/6, π/4) and the plus for θ ∈ [π/4, π/2).

Soft mask (used only for gradients, straight-through estimator): each inequality becomes a sigmoid
of its margin with temperature τ (in taps), blades are combined as a probabilistic union, the centre
is 1::

    s_j = σ((a_j − ½)/τ) · σ((r + ½ − a_j)/τ) · σ(b_j/τ) · σ((1 − b_j)/τ)
    M_soft = 1 − Π_j (1 − s_j)          (centre tap: 1)
    M = M_hard + (M_soft − M_soft.detach())

so the forward value is exactly binary and ``∂M/∂θ = ∂M_soft/∂θ``.

Mask floor (coverage). A binary pinwheel cuts taps, and in a strided conv a cut tap class can leave input
pixels that no output reads: at k = 3 and stride 2 the X reads only pixels whose row and column parity match
the kernel centre (half of them blind, 62.5 % after two stacked stride-2 layers), the plus misses a quarter.
No binary 3×3 mask with the pinwheel's 90° symmetry fixes it: the orbits of a quarter turn are the centre,
the four edges and the four corners, and a stride-2 conv needs a tap of every (row, column) parity class,
i.e. an edge *and* a corner, i.e. all nine taps. So the conv uses the floored mask

    M_floor = m₀ + (1 − m₀) · M          (m₀ ∈ (0, 1]: the mask floor; M straight-through as above)

which keeps the pinwheel (its taps weigh 1, the others m₀) but never cuts a tap: every input pixel reaches
the output at every k, stride and θ. ``m₀ = 1`` removes the pinwheel (Gaussian envelope only); ``m₀ = 0``
is the hard pinwheel (blind pixels in strided convs: allowed only on request, see
:func:`blind_input_fraction`). θ's gradient is scaled by ``1 − m₀``.
"""
from __future__ import annotations

import functools
import math

import torch
import torch.nn.functional as F

__all__ = [
    "tap_grid",
    "default_sigma",
    "default_theta",
    "mask_flip_angles",
    "SIGMA_MIN",
    "SIGMA_BETA",
    "bound_sigma",
    "sigma_from_raw",
    "sigma_to_raw",
    "gaussian_envelope",
    "pinwheel_mask_hard",
    "pinwheel_mask_soft",
    "pinwheel_mask",
    "DEFAULT_MASK_FLOOR",
    "DEFAULT_THETA_INIT",
    "PINNED_THETA_INIT",
    "floor_mask",
    "blind_input_fraction",
]

#: Default mask floor m₀ (module docstring), chosen by the SIRST train/val screen: docs/ablation/screen_v2_train_val.
DEFAULT_MASK_FLOOR = 0.6
#: Default initial pinwheel angle of :class:`~gaussconv_plugin.GaussianShapedConv2d`: ``'mid'``
#: (:func:`default_theta`), off the flip of the mask at θ = 0, chosen by the YOLO screen of issue 33
#: (docs/ablation/ood_yolo_train_val, finding 6 and candidate 2).
DEFAULT_THETA_INIT = "mid"
#: The θ₀ that the MSHNet U-Net (:class:`~gaussconv_plugin.unet.MSHUNet`) and MMDetection's ``GaussResNet`` keep
#: for their Gaussian convs: their published runs were trained with it, and ``'mid'`` is not yet screened there.
#: Pass ``theta_init='mid'`` (``gauss_kwargs`` / ``gauss_conv_cfg``) to opt in.
PINNED_THETA_INIT = 0.0
#: Lower bound σ_min of σ in taps (module docstring: coverage at every σ, also under float16 autocast).
SIGMA_MIN = 0.4
#: Sharpness β of the smooth bound: σ is unchanged, bit for bit, from ``SIGMA_MIN + 20 / SIGMA_BETA`` (0.9) up.
SIGMA_BETA = 40.0


def _fixed_or_learnt(module) -> tuple[torch.Tensor, torch.Tensor]:
    """``(σ_raw, θ)`` of a shaped-kernel module as its kernel uses them: detached where the module was built with
    ``learn_sigma`` / ``learn_theta`` False (modules pickled before those flags existed learn both)."""
    sraw, theta = module.sigma_raw, module.theta
    if not getattr(module, "learn_sigma", True):
        sraw = sraw.detach()
    if not getattr(module, "learn_theta", True):
        theta = theta.detach()
    return sraw, theta


def _check_kernel_size(k: int) -> int:
    if not isinstance(k, int) or k < 1 or k % 2 == 0:
        raise ValueError(
            f"kernel size must be a positive odd int (got {k!r}); use an odd square kernel such as 3, 5 or 7"
        )
    return k


def tap_grid(k: int, device=None, dtype=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tap offsets of a k×k kernel.

    Returns ``(u, v)``, each ``(k, k)``: ``u[i, j] = j - r`` (column offset), ``v[i, j] = i - r`` (row offset).
    """
    k = _check_kernel_size(k)
    r = (k - 1) // 2
    offs = torch.arange(-r, r + 1, device=device, dtype=dtype or torch.float32)
    v, u = torch.meshgrid(offs, offs, indexing="ij")
    return u, v


@functools.lru_cache(maxsize=64)
def _grid_consts(k: int, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Constants of the masks for one (k, device, dtype), built once: ``r2`` = u² + v² ``(1, 1, k, k)`` and the blade
    frames at θ = 0, ``along0`` / ``across0`` ``(4, k, k)`` (see :func:`_blade_coords`). Built on every call they
    cost a dozen small kernel launches per layer and step on a GPU. Made outside inference mode and autograd so that
    a training step may save them for backward; nothing writes to them."""
    with torch.inference_mode(False), torch.no_grad():
        u, v = tap_grid(k, device=device, dtype=dtype)
        return (u * u + v * v).view(1, 1, k, k), torch.stack([u, v, -u, -v]), torch.stack([v, -u, -v, u])


def default_sigma(k: int) -> float:
    """Initial σ of the Gaussian envelope for a k×k kernel: ``σ₀ = k / 2``.

    At σ₀ the envelope is 1 at the centre, ``exp(-r²/(2σ₀²)) ≥ 0.61`` at the middle of each edge and
    ``exp(-r²/σ₀²) ≥ 0.37`` at the corners (r = (k−1)/2): a mild centre emphasis that training sharpens or
    relaxes.
    """
    return _check_kernel_size(k) / 2.0


@functools.lru_cache(maxsize=16)
def mask_flip_angles(k: int, step_deg: float = 0.005) -> tuple[float, ...]:
    """Angles in [0, π/2) (radians) at which the hard k×k pinwheel changes, found on a float64 grid of
    ``step_deg`` degrees (each value is the first grid angle with the new mask, so it lies within ``step_deg``
    above the exact flip). The mask has period π/2, so these are all its flips. θ = 0 is one of them for every
    k: the mask is right-continuous there (the X of k = 3 on [0, π/6)), and any negative θ, however small, gives
    the pattern of the last interval before π/2 (the plus of k = 3)."""
    k = _check_kernel_size(k)
    deg = torch.arange(-step_deg, 90.0, step_deg, dtype=torch.float64)
    m = pinwheel_mask_hard(torch.deg2rad(deg), k).reshape(len(deg), -1)
    changed = (m[1:] != m[:-1]).any(dim=1)
    return tuple(torch.deg2rad(deg[1:][changed]).tolist())


def default_theta(k: int) -> float:
    """Initial pinwheel angle ``theta_init='mid'``: the middle of the first interval [0, θ₁) over which the hard
    mask keeps its θ = 0 pattern (PConv's windmill), in radians — k = 3: 15°, 5: 13.3°, 7: 8.8°, 9: 6.8°.

    θ = 0 itself is a flip of the mask (:func:`mask_flip_angles`): a θ started there and moved by the optimiser
    by ±0.5° flips a k = 3 channel between the X and the plus every time it changes sign, so its mask is noise
    and an EMA or averaged θ can carry a mask its weights were never trained with. From the middle of the
    interval the same pattern needs a deliberate turn of θ₁/2 to change.
    """
    flips = [a for a in mask_flip_angles(k) if a > 1e-9]
    return flips[0] / 2.0 if flips else 0.0  # k = 1: no angle changes the single tap's mask


def _theta_init(theta_init, k: int) -> float:
    if isinstance(theta_init, str):
        if theta_init != "mid":
            raise ValueError(f"theta_init must be an angle in radians or 'mid' (got {theta_init!r}); "
                             "pass e.g. theta_init='mid'")
        return default_theta(k)
    if not math.isfinite(float(theta_init)):
        raise ValueError(f"theta_init must be a finite angle in radians or 'mid' (got {theta_init!r}); "
                         "pass e.g. theta_init=0.0")
    return float(theta_init)


def _check_sigma_min(sigma_min: float) -> float:
    if not float(sigma_min) >= 0.0:
        raise ValueError(f"sigma_min must be >= 0 (got {sigma_min!r}); pass e.g. sigma_min={SIGMA_MIN} (0: unbounded)")
    return float(sigma_min)


def bound_sigma(s: torch.Tensor, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """Smooth lower bound of σ (module docstring): ``s`` itself where ``β·(s − σ_min) > 20``, else
    ``σ_min + softplus(β·(s − σ_min))/β``; any shape, differentiable. ``sigma_min = 0`` returns ``s``."""
    sigma_min = _check_sigma_min(sigma_min)
    if sigma_min == 0.0:
        return s
    y = s - sigma_min
    return torch.where(y * SIGMA_BETA > 20.0, s, sigma_min + F.softplus(y, beta=SIGMA_BETA, threshold=20.0))


def sigma_to_raw(sigma: float | torch.Tensor, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """Inverse of :func:`sigma_from_raw` (float32): ``σ_raw`` with ``sigma_from_raw(σ_raw) = σ``, for σ > σ_min."""
    sigma = torch.as_tensor(sigma, dtype=torch.float32)
    sigma_min = _check_sigma_min(sigma_min)
    if not bool(torch.all(sigma > sigma_min)):
        raise ValueError(f"sigma must be > {sigma_min:g} (got {sigma.tolist()}); pass a sigma_init above the lower "
                         f"bound sigma_min={sigma_min:g}")
    s = sigma
    if sigma_min > 0:  # invert the bound where it is not the identity (in float64: expm1 of a small margin)
        y = (sigma.double() - sigma_min) * SIGMA_BETA
        s = torch.where(y > 20.0, sigma, (sigma_min + torch.log(torch.expm1(y.clamp_max(20.0))) / SIGMA_BETA).float())
    # softplus^-1 in a numerically safe form: s + log(1 - exp(-s))
    return s + torch.log(-torch.expm1(-s))


def sigma_from_raw(raw: torch.Tensor, sigma_min: float = SIGMA_MIN) -> torch.Tensor:
    """``σ = bound(softplus(σ_raw)) ≥ σ_min`` (:func:`bound_sigma`), any shape; ``sigma_min = 0``: plain softplus."""
    return bound_sigma(F.softplus(raw), sigma_min)


def gaussian_envelope(sigma: torch.Tensor, k: int) -> torch.Tensor:
    """Gaussian envelope ``G_σ(u, v) = exp(-(u² + v²) / (2σ²))``.

    Args:
        sigma: ``(C,)`` positive standard deviations in taps (one per output channel, or ``(1,)``).
        k: odd kernel size.

    Returns:
        ``(C, 1, k, k)`` tensor, differentiable w.r.t. ``sigma``.
    """
    r2 = _grid_consts(_check_kernel_size(k), sigma.device, sigma.dtype)[0]
    s = sigma.reshape(-1, 1, 1, 1)
    return torch.exp(-r2 / (2.0 * s * s))


def _blade_coords(theta: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Blade coordinates ``(a, b)`` shaped ``(C, 4, k, k)`` for angles ``theta`` ``(C,)``.

    The quarter turns j·π/2 are applied as exact integer rotations of the tap grid, θ as a float
    rotation, so that θ = 0 gives exact integer coordinates.
    """
    # (u, v) expressed in the frame of blade j at θ = 0: along = d_j·(u,v), across = n_j·(u,v)
    # d_0 = (1,0), n_0 = (0,1); each quarter turn maps d -> n.
    _, along0, across0 = _grid_consts(_check_kernel_size(k), theta.device, theta.dtype)  # (4, k, k) each
    c = torch.cos(theta).view(-1, 1, 1, 1)
    s = torch.sin(theta).view(-1, 1, 1, 1)
    # rotate the blade frame by θ: d = (cos θ, sin θ) in the j-frame, n = (-sin θ, cos θ)
    a = along0 * c + across0 * s
    b = -along0 * s + across0 * c
    return a, b


def pinwheel_mask_hard(theta: torch.Tensor, k: int) -> torch.Tensor:
    """Binary pinwheel mask (see module docstring).

    Args:
        theta: ``(C,)`` angles in radians.
        k: odd kernel size.

    Returns:
        ``(C, 1, k, k)`` tensor of 0/1 in ``theta``'s dtype, no gradient.
    """
    with torch.no_grad():
        return _hard_from_coords(*_blade_coords(theta.detach(), k), k, theta.dtype)


def _hard_from_coords(a: torch.Tensor, b: torch.Tensor, k: int, dtype: torch.dtype) -> torch.Tensor:
    r = (k - 1) // 2
    on = (a > 0.5) & (a <= r + 0.5) & (b > 0) & (b <= 1)
    m = on.any(dim=1, keepdim=True)
    m[..., r, r] = True
    return m.to(dtype)


def pinwheel_mask_soft(theta: torch.Tensor, k: int, tau: float = 0.5) -> torch.Tensor:
    """Soft pinwheel mask in (0, 1], differentiable w.r.t. ``theta``; ``(C, 1, k, k)``."""
    return _soft_from_coords(*_blade_coords(theta, k), k, tau)


def _soft_from_coords(a: torch.Tensor, b: torch.Tensor, k: int, tau: float) -> torch.Tensor:
    r = (k - 1) // 2
    s = (
        torch.sigmoid((a - 0.5) / tau)
        * torch.sigmoid((r + 0.5 - a) / tau)
        * torch.sigmoid(b / tau)
        * torch.sigmoid((1.0 - b) / tau)
    )
    q = 1.0 - s  # (C, 4, k, k): the product over the 4 blades written out — torch.prod's backward reads its input
    # back to the host to look for zeros, a GPU synchronisation in every training step of every such layer
    m = 1.0 - (q[:, 0:1] * q[:, 1:2] * q[:, 2:3] * q[:, 3:4])
    centre = torch.zeros_like(m)
    centre[..., r, r] = 1.0
    return m * (1.0 - centre) + centre


def pinwheel_mask(theta: torch.Tensor, k: int, tau: float = 0.5) -> torch.Tensor:
    """Straight-through pinwheel mask: forward value :func:`pinwheel_mask_hard`, gradient of
    :func:`pinwheel_mask_soft`. ``theta`` ``(C,)`` → ``(C, 1, k, k)``."""
    if not theta.requires_grad:
        return pinwheel_mask_hard(theta, k)
    a, b = _blade_coords(theta, k)  # one set of coordinates for both masks (the hard one reads them detached)
    with torch.no_grad():
        hard = _hard_from_coords(a, b, k, theta.dtype)
    soft = _soft_from_coords(a, b, k, tau)
    return hard + (soft - soft.detach())  # the bracket is exactly 0: the forward value is ``hard`` bit for bit



def _check_floor(m0: float) -> float:
    if not 0.0 <= float(m0) <= 1.0:
        raise ValueError(f"mask_floor must lie in [0, 1] (got {m0!r}); pass e.g. mask_floor={DEFAULT_MASK_FLOOR}")
    return float(m0)


def floor_mask(mask: torch.Tensor, m0: float) -> torch.Tensor:
    """``m₀ + (1 − m₀)·mask`` (any shape; differentiable through ``mask``). ``m₀ = 0`` returns ``mask``."""
    m0 = _check_floor(m0)
    return mask if m0 == 0.0 else m0 + (1.0 - m0) * mask


def blind_input_fraction(kernel: torch.Tensor, stride: int, size: int = 32, layers: int = 1) -> float:
    """Fraction of interior input pixels that no output reads, for ``layers`` stacked convs of stride ``stride``
    whose kernel support is ``kernel != 0`` (``(k, k)``, 'same' padding), measured by input-gradient reachability
    on a ``size × size`` input. Interior: pixels at least ``layers·k`` from the border."""
    k = kernel.shape[-1]
    w = (kernel.detach().abs() > 0).to(torch.float64).view(1, 1, k, k)
    x = torch.zeros(1, 1, size, size, dtype=torch.float64, requires_grad=True)
    y = x
    for _ in range(layers):
        y = F.conv2d(y, w, stride=stride, padding=k // 2)
    y.sum().backward()
    m = layers * k
    inner = x.grad[0, 0, m:-m, m:-m]
    return float((inner == 0).double().mean())
