"""Gaussian-shaped convolution: a conv whose kernel is shaped by a learnable Gaussian and a rotated pinwheel.

Effective kernel of a k×k conv with weight ``W[o, i, u, v]`` (formulas of the envelopes in
:mod:`gaussconv_plugin.masks`)::

    K[o, i, u, v] = W[o, i, u, v] · G_σo(u, v) · (m₀ + (1 − m₀) · M_θo(u, v))

m₀ is the mask floor (default :data:`~gaussconv_plugin.masks.DEFAULT_MASK_FLOOR`): the pinwheel taps weigh 1,
the others m₀, so no tap is cut and every input pixel reaches the output at every stride and θ. σ and θ are learnable, one of each per output channel (``per_channel=True``) or one per layer.
The mask M is binary in the forward pass and passes the gradient of its soft version to θ
(straight-through estimator). Parameters: those of the ``nn.Conv2d`` it replaces plus
``σ_raw`` and ``θ`` (2 scalars per output channel). In eval the kernel is a constant, so
:meth:`GaussianShapedConv2d.to_conv2d` returns a plain ``nn.Conv2d`` with identical outputs, and an unfused module in
eval mode without autograd computes it once and reuses it until a parameter changes.
"""
from __future__ import annotations

import torch
import torch.nn as nn

from .masks import (
    DEFAULT_MASK_FLOOR,
    _check_floor,
    default_sigma,
    floor_mask,
    gaussian_envelope,
    pinwheel_mask,
    sigma_from_raw,
    sigma_to_raw,
)

__all__ = ["GaussianShapedConv2d", "GaussianShapedConv", "autopad", "fuse_conv_bn"]


def _tracing() -> bool:
    """Inside ``torch.jit`` scripting/tracing, ONNX export or ``torch.compile`` (no Python-side kernel cache)."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
                or (compiling is not None and compiling()))


def _square_odd_kernel(kernel_size) -> int:
    ks = (kernel_size, kernel_size) if isinstance(kernel_size, int) else tuple(kernel_size)
    if len(ks) != 2 or ks[0] != ks[1] or not isinstance(ks[0], int) or ks[0] < 1 or ks[0] % 2 == 0:
        raise ValueError(
            f"GaussianShapedConv2d needs an odd square kernel_size (got {kernel_size!r}); "
            "use an odd size such as 3 or 5, or keep nn.Conv2d for this layer"
        )
    return ks[0]


def autopad(k, p=None, d=1):
    """'Same' padding for kernel ``k`` and dilation ``d`` (Ultralytics' rule); ``p`` wins if given."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


class GaussianShapedConv2d(nn.Conv2d):
    """Drop-in ``nn.Conv2d`` whose kernel is ``W · G_σ · M_θ``.

    Same positional arguments and ``.weight``/``.bias`` as ``nn.Conv2d`` (so MMCV's ``build_conv_layer``
    and :func:`gaussconv_plugin.swap_convs` can create it), except that ``padding=None`` (the default)
    means "same" padding ``dilation·(k−1)/2``.

    Args:
        in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode:
            as ``nn.Conv2d``; ``kernel_size`` must be odd and square.
        sigma_init: initial σ in taps (> 0); default :func:`~gaussconv_plugin.masks.default_sigma` = k/2.
        theta_init: initial pinwheel angle in radians (default 0: the PConv windmill).
        per_channel: one σ and one θ per output channel (default) or one per layer.
        learn_sigma, learn_theta: make σ / θ trainable (they stay parameters either way).
        tau: temperature of the soft mask whose gradient θ receives, in taps (> 0).
        mask_floor: m₀ ∈ [0, 1], the weight of the taps off the pinwheel (default
            :data:`~gaussconv_plugin.masks.DEFAULT_MASK_FLOOR`). 0 is the hard pinwheel, which leaves input pixels
            unread in strided convs (see :func:`~gaussconv_plugin.masks.blind_input_fraction`); 1 drops the pinwheel.

    Shapes:
        input ``(N, in_channels, H, W)`` → output ``(N, out_channels, H', W')`` as ``nn.Conv2d``.
    """

    # Modules pickled before the floor existed (whole-module checkpoints, e.g. Ultralytics') were hard pinwheels.
    mask_floor: float = 0.0

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size,
        stride=1,
        padding=None,
        dilation=1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        *,
        sigma_init: float | None = None,
        theta_init: float = 0.0,
        per_channel: bool = True,
        learn_sigma: bool = True,
        learn_theta: bool = True,
        tau: float = 0.5,
        mask_floor: float = DEFAULT_MASK_FLOOR,
    ):
        k = _square_odd_kernel(kernel_size)
        mask_floor = _check_floor(mask_floor)
        if padding is None:
            d = dilation if isinstance(dilation, int) else dilation[0]
            padding = d * (k - 1) // 2
        if not tau > 0:
            raise ValueError(f"tau must be > 0 (got {tau!r}); pass a positive soft-mask temperature such as 0.5")
        super().__init__(
            in_channels, out_channels, k, stride, padding, dilation, groups, bias, padding_mode,
            device=device, dtype=dtype,
        )
        sigma_init = default_sigma(k) if sigma_init is None else float(sigma_init)
        n = out_channels if per_channel else 1
        pkw = dict(device=device, dtype=dtype)
        self.sigma_raw = nn.Parameter(sigma_to_raw(sigma_init).to(**pkw).expand(n).clone(), requires_grad=learn_sigma)
        self.theta = nn.Parameter(torch.full((n,), float(theta_init), **pkw), requires_grad=learn_theta)
        self.tau = float(tau)
        self.mask_floor = mask_floor
        self.per_channel = per_channel

    @property
    def sigma(self) -> torch.Tensor:
        """σ per output channel (or per layer), ``(C,)`` or ``(1,)``, always > 0."""
        return sigma_from_raw(self.sigma_raw)

    def envelope(self) -> torch.Tensor:
        """``G_σ · (m₀ + (1 − m₀)·M_θ)`` shaped ``(C or 1, 1, k, k)`` (mask straight-through)."""
        k = self.kernel_size[0]
        return gaussian_envelope(self.sigma, k) * floor_mask(pinwheel_mask(self.theta, k, self.tau), self.mask_floor)

    def effective_kernel(self) -> torch.Tensor:
        """``W · G_σ · M_θ``, shaped like ``.weight`` ``(out, in/groups, k, k)``."""
        return self.weight * self.envelope().to(self.weight.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training or torch.is_grad_enabled() or _tracing():
            return self._conv_forward(x, self.effective_kernel(), self.bias)
        return self._conv_forward(x, self._eval_kernel(), self.bias)

    def _eval_kernel(self) -> torch.Tensor:
        """:meth:`effective_kernel` computed once and reused while nothing changes it (eval mode, no grad: a
        validation pass or unfused inference). The key holds each tensor's version counter and storage, which
        in-place updates (optimizer steps, ``load_state_dict``, ``.to()``) change, and the mask settings."""
        ps = (self.weight, self.sigma_raw, self.theta)
        key = (*(t._version for t in ps), *(t.data_ptr() for t in ps), self.weight.dtype, self.tau, self.mask_floor)
        cached = self.__dict__.get("_kernel_cache")
        if cached is None or cached[0] != key:
            cached = (key, self.effective_kernel())
            self.__dict__["_kernel_cache"] = cached
        return cached[1]

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_kernel_cache", None)  # never pickled or deep-copied (whole-module checkpoints stay as they were)
        return state

    def train(self, mode: bool = True):
        self.__dict__.pop("_kernel_cache", None)
        return super().train(mode)

    @torch.no_grad()
    def to_conv2d(self) -> nn.Conv2d:
        """A plain ``nn.Conv2d`` holding the effective kernel (same device, dtype, geometry, bias)."""
        conv = nn.Conv2d(
            self.in_channels, self.out_channels, self.kernel_size, self.stride, self.padding, self.dilation,
            self.groups, self.bias is not None, self.padding_mode, device=self.weight.device, dtype=self.weight.dtype,
        )
        conv.weight.copy_(self.effective_kernel())
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        conv.train(self.training)
        return conv

    def extra_repr(self) -> str:
        return super().extra_repr() + f", tau={self.tau}, mask_floor={self.mask_floor}, per_channel={self.per_channel}"


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """Fold ``bn`` (eval statistics) into a plain ``conv``: ``w' = w·γ/√(var+ε)``, ``b' = (b−μ)·γ/√(var+ε) + β``."""
    fused = nn.Conv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
        conv.groups, True, conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype,
    )
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    b = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_((b - bn.running_mean) * scale + bn.bias)
    fused.requires_grad_(False)
    return fused


class GaussianShapedConv(nn.Module):
    """Conv + BatchNorm + activation with a :class:`GaussianShapedConv2d`, argument order of Ultralytics' ``Conv``.

    Args:
        c1, c2: input / output channels; k: odd kernel size; s: stride; p: padding (None = same);
        g: groups; d: dilation; act: True (``default_act``, SiLU), an ``nn.Module``, or False (identity).
        **kwargs: forwarded to :class:`GaussianShapedConv2d` (``sigma_init``, ``theta_init``, ``tau`` …).

    Shapes: ``(N, c1, H, W)`` → ``(N, c2, H/s, W/s)``.

    ``fuse()`` replaces the Gaussian conv and the BN by one plain ``nn.Conv2d`` and switches ``forward`` to
    ``forward_fuse``, as Ultralytics does for ``Conv``.
    """

    default_act = nn.SiLU()

    def __init__(self, c1, c2, k=3, s=1, p=None, g=1, d=1, act=True, **kwargs):
        super().__init__()
        self.conv = GaussianShapedConv2d(c1, c2, k, s, autopad(k, p, d), dilation=d, groups=g, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(c2)
        self.act = self.default_act if act is True else act if isinstance(act, nn.Module) else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))

    def forward_fuse(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.conv(x))

    def fuse(self) -> "GaussianShapedConv":
        """Fold σ, θ and BN into one ``nn.Conv2d`` (eval statistics); idempotent."""
        if hasattr(self, "bn"):
            conv = self.conv.to_conv2d() if isinstance(self.conv, GaussianShapedConv2d) else self.conv
            self.conv = fuse_conv_bn(conv, self.bn)
            delattr(self, "bn")
            self.forward = self.forward_fuse
        return self
