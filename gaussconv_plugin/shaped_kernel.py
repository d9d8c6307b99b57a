"""Weight-free Gaussian-pinwheel filter: a k×k kernel whose only parameters are one σ and one θ.

The kernel is the normalised product of the Gaussian envelope and the (floored) pinwheel mask, built with the same
functions as :class:`~gaussconv_plugin.conv.GaussianShapedConv2d` (:mod:`gaussconv_plugin.masks`: the envelope,
the straight-through pinwheel, σ's smooth lower bound σ_min)::

    K_σ,θ(u, v) = G_σ(u, v) · M̃_θ(u, v) / Σ_{u', v'} G_σ(u', v') · M̃_θ(u', v'),     M̃ = m₀ + (1 − m₀)·M_θ

K ≥ 0 and ΣK = 1 at every σ, θ: a local weighted average over the pinwheel footprint. The denominator is at least
the centre tap's value, 1 (G_σ(0, 0) = 1 and the centre is always on the mask), so it never vanishes. No weight,
no bias: K is fixed by σ and θ, unlike ``W · G · M̃``, which spans every kernel while m₀ > 0 (``docs/method.md``,
"Forms that constrain").

Input channels: the **same** K is applied to every input map and the results are summed, ``y = Σ_c K ⋆ x_c``,
i.e. a ``C → 1`` convolution whose weight is K replicated over the C input channels (:meth:`ShapedFilter2d.kernel`
returns that ``(1, C, k, k)`` weight). On MSHNet's spatial-attention descriptor ``[mean_c x, max_c x]`` this is
``K ⋆ mean + K ⋆ max``: the two maps describe the same spatial signal, one σ and one θ (2 parameters, as the
GaussianShapedConv2d it replaces adds to its weight) keep the form what it is meant to test — a footprint, not a
learned mixing — and the sum is what a 2 → 1 conv does with its two input slices. One σ/θ per input channel would
double the parameters without a reason in the descriptor.

Mask floor: m₀ = 0 (the hard pinwheel, the plain product G·M) by default. The filter is stride 1 with 'same'
padding, and the centre tap is always on the mask with G = 1 there, so every input pixel is read by the output at
its own position, at every σ ≥ σ_min and θ (the floor is needed only in strided convs: ``tools/coverage.py``).

Shapes: :func:`shaped_kernel` ``σ (1,), θ (1,)`` → ``(1, 1, k, k)``; :func:`shaped_filter` and
:class:`ShapedFilter2d` ``(N, C, H, W)`` → ``(N, 1, H, W)``.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .masks import (
    SIGMA_MIN,
    _check_floor,
    _check_kernel_size,
    _check_sigma_min,
    _fixed_or_learnt,
    _theta_init,
    default_sigma,
    floor_mask,
    gaussian_envelope,
    pinwheel_mask,
    sigma_from_raw,
    sigma_to_raw,
)

__all__ = ["shaped_kernel", "shaped_filter", "ShapedFilter2d"]


def _one(t: torch.Tensor, name: str) -> torch.Tensor:
    if t.numel() != 1:
        raise ValueError(f"shaped_kernel takes one {name} (got shape {tuple(t.shape)}); pass a (1,) tensor, "
                         "one σ and one θ per filter")
    return t.reshape(1)


def shaped_kernel(sigma: torch.Tensor, theta: torch.Tensor, k: int, *, tau: float = 0.5,
                  mask_floor: float = 0.0) -> torch.Tensor:
    """``K = G_σ·M̃_θ / Σ(G_σ·M̃_θ)`` (module docstring), differentiable w.r.t. σ and θ (θ straight-through).

    Args:
        sigma: ``(1,)`` σ in taps, > 0 (already bounded: :class:`ShapedFilter2d` applies σ_min).
        theta: ``(1,)`` pinwheel angle in radians.
        k: odd kernel size.
        tau: temperature of the soft mask whose gradient θ receives (taps, > 0).
        mask_floor: m₀ ∈ [0, 1]; 0 = the hard pinwheel.

    Returns:
        ``(1, 1, k, k)`` non-negative kernel summing to 1, in the dtype of ``sigma``/``theta`` promoted.
    """
    k = _check_kernel_size(k)
    sigma, theta = _one(sigma, "sigma"), _one(theta, "theta")
    if not tau > 0:
        raise ValueError(f"tau must be > 0 (got {tau!r}); pass a positive soft-mask temperature such as 0.5")
    env = gaussian_envelope(sigma, k) * floor_mask(pinwheel_mask(theta, k, tau), _check_floor(mask_floor))
    return env / env.sum(dim=(-2, -1), keepdim=True)


def shaped_filter(x: torch.Tensor, sigma: torch.Tensor, theta: torch.Tensor, k: int, *, tau: float = 0.5,
                  mask_floor: float = 0.0) -> torch.Tensor:
    """``y = Σ_c K ⋆ x_c``: the :func:`shaped_kernel` K on every input channel, summed; stride 1, 'same' zero padding.

    Args:
        x: ``(N, C, H, W)``.
        sigma, theta, k, tau, mask_floor: as :func:`shaped_kernel`.

    Returns:
        ``(N, 1, H, W)`` in ``x``'s dtype.
    """
    if x.dim() != 4:
        raise ValueError(f"shaped_filter expects (N, C, H, W) input, got {tuple(x.shape)}; add the batch dimension")
    kern = shaped_kernel(sigma, theta, k, tau=tau, mask_floor=mask_floor)
    return F.conv2d(x, kern.expand(1, x.shape[1], k, k).to(x.dtype), padding=k // 2)


class ShapedFilter2d(nn.Module):
    """:func:`shaped_filter` with a learnable σ and θ, the only parameters (no weight, no bias).

    Args:
        in_channels: C, the input maps the one kernel is applied to and summed over (2 for the SA descriptor).
        kernel_size: odd k (7 for MSHNet's spatial attention).
        sigma_init: initial σ in taps (> ``sigma_min``); default :func:`~gaussconv_plugin.masks.default_sigma` = k/2.
        theta_init: initial pinwheel angle in radians, or ``'mid'`` (default):
            :func:`~gaussconv_plugin.masks.default_theta`, the windmill of θ = 0 started away from the mask's flip
            at θ = 0.
        tau: soft-mask temperature (taps) of θ's straight-through gradient.
        mask_floor: m₀ ∈ [0, 1], default 0 (the hard pinwheel; every pixel is read at stride 1, module docstring).
        sigma_min: σ's smooth lower bound (as GaussianShapedConv2d, default
            :data:`~gaussconv_plugin.masks.SIGMA_MIN`).
        learn_sigma, learn_theta: make σ / θ trainable. They stay parameters either way; a fixed one enters
            the kernel detached, so it stays fixed also where a host sets ``requires_grad`` back (Ultralytics'
            trainer does so for every parameter outside ``freeze=``).

    Parameters: ``sigma_raw`` ``(1,)`` (σ = bound(softplus(σ_raw))) and ``theta`` ``(1,)`` — the names of
    GaussianShapedConv2d's, so no-decay rules keyed on them apply.

    Shapes: ``(N, in_channels, H, W)`` → ``(N, 1, H, W)``.
    """

    def __init__(self, in_channels: int = 2, kernel_size: int = 7, *, sigma_init: float | None = None,
                 theta_init: float | str = "mid", tau: float = 0.5, mask_floor: float = 0.0, sigma_min: float = SIGMA_MIN,
                 learn_sigma: bool = True, learn_theta: bool = True):
        super().__init__()
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"ShapedFilter2d needs in_channels >= 1 (got {in_channels!r}); use 2 for [mean, max]")
        try:
            k = _check_kernel_size(kernel_size)
        except ValueError:
            raise ValueError(f"ShapedFilter2d needs an odd int kernel_size (got {kernel_size!r}); use 7 as MSHNet's "
                             "spatial attention") from None
        if not tau > 0:
            raise ValueError(f"tau must be > 0 (got {tau!r}); pass a positive soft-mask temperature such as 0.5")
        self.in_channels, self.kernel_size = in_channels, k
        self.tau = float(tau)
        self.mask_floor = _check_floor(mask_floor)
        self.sigma_min = _check_sigma_min(sigma_min)
        sigma_init = default_sigma(k) if sigma_init is None else float(sigma_init)
        self.sigma_raw = nn.Parameter(sigma_to_raw(sigma_init, self.sigma_min).reshape(1), requires_grad=learn_sigma)
        self.theta = nn.Parameter(torch.full((1,), _theta_init(theta_init, k)), requires_grad=learn_theta)
        self.learn_sigma, self.learn_theta = bool(learn_sigma), bool(learn_theta)

    @property
    def sigma(self) -> torch.Tensor:
        """σ ``(1,)``, ≥ ``sigma_min``."""
        return sigma_from_raw(self.sigma_raw, self.sigma_min)

    def kernel(self) -> torch.Tensor:
        """The conv weight ``(1, in_channels, k, k)``: K replicated over the input channels, in float32 (float64 for
        float64 parameters); ``F.conv2d(x, kernel(), padding=k // 2)`` is the forward pass."""
        dt = torch.promote_types(self.sigma_raw.dtype, torch.float32)
        sraw, theta = _fixed_or_learnt(self)
        sigma = sigma_from_raw(sraw.to(dt), self.sigma_min)
        kern = shaped_kernel(sigma, theta.to(dt), self.kernel_size, tau=self.tau, mask_floor=self.mask_floor)
        return kern.expand(1, self.in_channels, self.kernel_size, self.kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ShapedFilter2d expects (N, {self.in_channels}, H, W) input, got {tuple(x.shape)}; "
                             f"set in_channels to the number of input maps")
        return F.conv2d(x, self.kernel().to(x.dtype), padding=self.kernel_size // 2)

    @torch.no_grad()
    def to_conv2d(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d(in_channels, 1, k, padding=k // 2, bias=False)`` holding :meth:`kernel` (export)."""
        k = self.kernel_size
        conv = nn.Conv2d(self.in_channels, 1, k, padding=k // 2, bias=False, device=self.sigma_raw.device,
                         dtype=self.sigma_raw.dtype)
        conv.weight.copy_(self.kernel())
        conv.train(self.training)
        return conv

    def extra_repr(self) -> str:
        return (f"{self.in_channels}, kernel_size={self.kernel_size}, tau={self.tau}, mask_floor={self.mask_floor}, "
                f"sigma_min={self.sigma_min}")
