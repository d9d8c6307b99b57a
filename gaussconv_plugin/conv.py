"""Gaussian-shaped convolution: a conv whose kernel is shaped by a learnable Gaussian and a rotated pinwheel.

Effective kernel of a k×k conv with weight ``W[o, i, u, v]`` (formulas of the envelopes in
:mod:`gaussconv_plugin.masks`)::

    K[o, i, u, v] = W[o, i, u, v] · G_σo(u, v) · (m₀ + (1 − m₀) · M_θo(u, v))

m₀ is the mask floor (default :data:`~gaussconv_plugin.masks.DEFAULT_MASK_FLOOR`): the pinwheel taps weigh 1,
the others m₀, so no tap is cut and every input pixel reaches the output at every stride and θ (in float32; under
float16 a tap outside the inner 3×3 can round to 0 at small σ, so there coverage holds at strides 1–3, see below). σ and θ are
learnable, one of each per output channel (``per_channel=True``) or one per layer. σ has a smooth lower bound
σ_min (default :data:`~gaussconv_plugin.masks.SIGMA_MIN` = 0.4, identity from σ = 0.9 up) so that the envelope
never shrinks to its centre tap: coverage holds at every σ training can reach, in float32 and bfloat16 at every
stride, and under float16 autocast at strides 1–3 (at σ near 0.4 the envelope of a 5×5 or 7×7 kernel's outer taps,
e.g. e⁻²⁵ at the 5×5 corner, is below float16's smallest subnormal, so a stride ≥ 4 can leave pixels unread there;
:mod:`gaussconv_plugin.masks`). The envelope is computed in float32 (float64 for float64
parameters) even when the module's parameters are half precision.
The mask M is binary in the forward pass and passes the gradient of its soft version to θ
(straight-through estimator). Parameters: those of the ``nn.Conv2d`` it replaces plus
``σ_raw`` and ``θ`` (2 scalars per output channel). In eval the kernel is a constant, so
:meth:`GaussianShapedConv2d.to_conv2d` returns a plain ``nn.Conv2d`` with identical outputs, and an unfused module in
eval mode without autograd computes it once and reuses it until a parameter changes. The state dict records
m₀, τ and σ_min beside the weights (``_extra_state``): a state dict saved with other values refuses to load, in one
line naming them (state dicts saved before they were recorded load as before).
"""
from __future__ import annotations

import math
import operator
import warnings

import torch
import torch.fx
import torch.nn as nn

from .masks import (
    DEFAULT_MASK_FLOOR,
    DEFAULT_THETA_INIT,
    SIGMA_MIN,
    _check_floor,
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

__all__ = ["GaussianShapedConv2d", "GaussianShapedConv", "autopad", "fuse_conv_bn", "check_groups_dilation"]

_ROW = "YAML row [c2, k, s, p, g, d] / constructor argument"


def _tracing() -> bool:
    """Inside ``torch.jit`` scripting/tracing, ONNX export or ``torch.compile`` (no Python-side kernel cache)."""
    compiling = getattr(getattr(torch, "compiler", None), "is_compiling", None)
    return bool(torch.jit.is_scripting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
                or (compiling is not None and compiling()))


def _square_odd_kernel(kernel_size) -> int:
    ks = (kernel_size, kernel_size) if not isinstance(kernel_size, (tuple, list)) else tuple(kernel_size)
    if len(ks) != 2 or ks[0] != ks[1] or not isinstance(ks[0], int) or ks[0] < 1 or ks[0] % 2 == 0:
        raise ValueError(
            f"GaussianShapedConv2d needs an odd square kernel_size (got {kernel_size!r}); "
            "use an odd size such as 3 or 5, or keep nn.Conv2d for this layer"
        )
    return ks[0]


def _pos_int(v) -> int | None:
    """``v`` as an int if it is a positive integer (not a bool), else None."""
    if isinstance(v, bool):
        return None
    try:
        i = operator.index(v)
    except TypeError:
        return None
    return i if i >= 1 else None


def check_groups_dilation(in_channels: int | None, out_channels: int | None, groups=1,
                          dilation=1) -> tuple[int, int | tuple[int, int]]:
    """``(groups, dilation)``, or one ``ValueError`` line saying what to pass.

    Supported: ``groups`` a positive int dividing both channel counts (depthwise included); ``dilation`` a positive
    int or a pair of them (rows, columns; returned as an int when both are equal; the envelope stays in taps).
    With ``in_channels``/``out_channels`` None (a YAML row before channel inference) only the values are checked,
    not the divisibility."""
    g = _pos_int(groups)
    chans = [c for c in (in_channels, out_channels) if c is not None]
    if g is None or any(c % g for c in chans):
        what = f"({in_channels}->{out_channels}) " if chans else " "
        both = [x for x in range(1, min(chans) + 1) if all(c % x == 0 for c in chans)] if chans else "1, 2, ..."
        div = f" dividing in_channels {in_channels} and out_channels {out_channels}" if chans else ""
        raise ValueError(f"GaussianShapedConv2d{what}cannot use groups={groups!r}: groups must be a positive int{div}; "
                         f"use one of {both} ({_ROW} g)")
    pair = tuple(dilation) if isinstance(dilation, (tuple, list)) else (dilation, dilation)
    d = tuple(_pos_int(x) for x in pair) if len(pair) == 2 else (None,)
    if None in d:
        raise ValueError(f"GaussianShapedConv2d cannot use dilation={dilation!r}: it takes a positive int or a pair "
                         f"of them (rows, columns); use e.g. 1 or 2 ({_ROW} d)")
    return g, d[0] if d[0] == d[1] else d


def _same_padding(k: int, dilation) -> int | tuple[int, int]:
    """'Same' padding ``d·(k−1)/2`` per axis for an odd k (``dilation`` an int or a pair)."""
    if isinstance(dilation, tuple):
        return tuple(d * (k - 1) // 2 for d in dilation)
    return dilation * (k - 1) // 2


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
        sigma_init: initial σ in taps (> ``sigma_min``, the bound's floor); default
            :func:`~gaussconv_plugin.masks.default_sigma` = k/2.
        theta_init: initial pinwheel angle: ``'mid'`` (default, :data:`~gaussconv_plugin.masks.DEFAULT_THETA_INIT`):
            :func:`~gaussconv_plugin.masks.default_theta`, PConv's windmill started in the middle of the angle
            range that keeps it, so that small moves of θ do not flip the mask; or an angle in radians (0 is the
            same windmill on a flip of the hard mask: sub-degree moves of θ then swap patterns).
        per_channel: one σ and one θ per output channel (default) or one per layer.
        learn_sigma, learn_theta: make σ / θ trainable. They stay parameters either way; a fixed one enters
            the kernel detached, so it stays fixed also where a host sets ``requires_grad`` back (Ultralytics'
            trainer does so for every parameter outside ``freeze=``).
        tau: temperature of the soft mask whose gradient θ receives, in taps (> 0).
        sigma_min: lower bound of σ in taps (≥ 0, default :data:`~gaussconv_plugin.masks.SIGMA_MIN`; smooth, the
            identity from ``sigma_min + 0.5`` up, see :func:`~gaussconv_plugin.masks.bound_sigma`). 0 removes it
            (blind input pixels at small σ; for comparison only).
        mask_floor: m₀ ∈ [0, 1], the weight of the taps off the pinwheel (default
            :data:`~gaussconv_plugin.masks.DEFAULT_MASK_FLOOR`). 0 is the hard pinwheel, which leaves input pixels
            unread in strided convs (see :func:`~gaussconv_plugin.masks.blind_input_fraction`); 1 drops the pinwheel.

    Shapes:
        input ``(N, in_channels, H, W)`` → output ``(N, out_channels, H', W')`` as ``nn.Conv2d``.
    """

    # Modules pickled before the floor existed (whole-module checkpoints, e.g. Ultralytics') were hard pinwheels.
    mask_floor: float = 0.0
    # Modules pickled before the bound existed get it (trained σ ≥ 0.9 is unchanged by it, bit for bit).
    sigma_min: float = SIGMA_MIN

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
        theta_init: float | str = DEFAULT_THETA_INIT,
        per_channel: bool = True,
        learn_sigma: bool = True,
        learn_theta: bool = True,
        tau: float = 0.5,
        mask_floor: float = DEFAULT_MASK_FLOOR,
        sigma_min: float = SIGMA_MIN,
    ):
        k = _square_odd_kernel(kernel_size)
        mask_floor = _check_floor(mask_floor)
        sigma_min = _check_sigma_min(sigma_min)
        groups, dilation = check_groups_dilation(in_channels, out_channels, groups, dilation)
        if padding is None:
            padding = _same_padding(k, dilation)
        if not 0 < tau < math.inf:
            raise ValueError(f"tau must be a finite number > 0 (got {tau!r}); pass a soft-mask temperature such as 0.5")
        if sigma_init is not None and not math.isfinite(float(sigma_init)):
            raise ValueError(f"sigma_init must be a finite width in taps (got {sigma_init!r}); omit it for the default")
        super().__init__(
            in_channels, out_channels, k, stride, padding, dilation, groups, bias, padding_mode,
            device=device, dtype=dtype,
        )
        sigma_init = default_sigma(k) if sigma_init is None else float(sigma_init)
        theta_init = _theta_init(theta_init, k)
        n = out_channels if per_channel else 1
        pkw = dict(device=device, dtype=dtype)
        raw = sigma_to_raw(sigma_init, sigma_min)
        self.sigma_raw = nn.Parameter(raw.to(**pkw).expand(n).clone(), requires_grad=learn_sigma)
        self.theta = nn.Parameter(torch.full((n,), float(theta_init), **pkw), requires_grad=learn_theta)
        self.learn_sigma, self.learn_theta = bool(learn_sigma), bool(learn_theta)
        self.tau = float(tau)
        self.mask_floor = mask_floor
        self.sigma_min = sigma_min
        self.per_channel = per_channel

    @property
    def sigma(self) -> torch.Tensor:
        """σ per output channel (or per layer), ``(C,)`` or ``(1,)``, always ≥ ``sigma_min`` (> 0)."""
        self._check_shape_params()
        return sigma_from_raw(self.sigma_raw, self.sigma_min)

    def _compute_dtype(self) -> torch.dtype:
        """float32, or float64 for float64 parameters: the envelope never underflows in half precision."""
        return torch.promote_types(self.sigma_raw.dtype, torch.float32)

    def envelope(self) -> torch.Tensor:
        """``G_σ · (m₀ + (1 − m₀)·M_θ)`` shaped ``(C or 1, 1, k, k)`` (mask straight-through), in float32 (float64
        for float64 parameters)."""
        self._check_shape_params()
        k, dt = self.kernel_size[0], self._compute_dtype()
        sraw, theta = _fixed_or_learnt(self)
        sigma = sigma_from_raw(sraw.to(dt), self.sigma_min)
        return gaussian_envelope(sigma, k) * floor_mask(pinwheel_mask(theta.to(dt), k, self.tau), self.mask_floor)

    def effective_kernel(self) -> torch.Tensor:
        """``W · G_σ · M_θ``, shaped like ``.weight`` ``(out, in/groups, k, k)``, in ``.weight``'s dtype (the product
        is formed in float32 or wider and rounded once)."""
        env = self.envelope()
        return (self.weight.to(env.dtype) * env).to(self.weight.dtype)

    def _lacks_message(self, lacks) -> str:
        return (f"this GaussianShapedConv2d ({self.in_channels}->{self.out_channels}, k={self.kernel_size[0]}) was "
                f"loaded from a checkpoint saved without {' and '.join(lacks)} (before σ/θ existed), so it cannot "
                "run; rebuild the model from its YAML/config and transfer the weights: yolo train model=<gauss yaml> "
                "pretrained=<checkpoint> (MMDetection: load_from=<checkpoint>); σ/θ start at sigma_init/theta_init")

    def _check_shape_params(self) -> None:
        lacks = self.__dict__.get("_lacks_shape_params")
        if lacks:
            raise RuntimeError(self._lacks_message(lacks))

    def __setstate__(self, state):
        super().__setstate__(state)
        lacks = [n for n in ("sigma_raw", "theta") if n not in self.__dict__.get("_parameters", {})]
        if lacks:  # unpickling succeeds (its weights can still be transferred), says what to do; running it raises
            self.__dict__["_lacks_shape_params"] = lacks
            warnings.warn(self._lacks_message(lacks), UserWarning, stacklevel=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_shape_params()
        if isinstance(x, torch.fx.Proxy):  # torch.fx.symbolic_trace (make_fx and torch.export pass tensors)
            raise RuntimeError(
                "GaussianShapedConv2d cannot be traced by torch.fx (MMEngine's efficient_conv_bn_eval=[...] traces "
                "the modules it names); leave the modules holding it out of efficient_conv_bn_eval, or use "
                "ConvModule(..., efficient_conv_bn_eval=True), which works with it")
        return self._conv_forward(x, self.weight, self.bias)

    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The conv with ``weight · G_σ · M_θ``. ``weight`` is ``.weight`` (from :meth:`forward`) or a host's
        per-output-channel rescaling of it, ``c · W``: MMCV's ``efficient_conv_bn_eval`` folds BatchNorm that way
        and calls this method; the envelope is per output channel too, so ``(c·W)·G·M = c·(W·G·M)``."""
        if weight is not self.weight:
            env = self.envelope()
            return super()._conv_forward(x, (weight.to(env.dtype) * env).to(weight.dtype), bias)
        if self.training or torch.is_grad_enabled() or _tracing():
            return super()._conv_forward(x, self.effective_kernel(), bias)
        return super()._conv_forward(x, self._eval_kernel(), bias)

    def _eval_kernel(self) -> torch.Tensor:
        """:meth:`effective_kernel` computed once and reused while nothing changes it (eval mode, no grad: a
        validation pass or unfused inference). The key holds each tensor's version counter and storage, which
        in-place updates (optimizer steps, ``load_state_dict``, ``.to()``) change, and the mask settings. A write
        through ``.data`` (``p.data.mul_(2)``) bumps no version counter: call ``.eval()`` after one (it clears the
        cache, as ``.train()`` does; MMEngine's EMA hook swaps weights that way and its loops call ``.eval()``), and so
does a fused optimizer step (``torch.optim.AdamW(fused=True)``) taken while the module stays in eval mode."""
        ps = (self.weight, self.sigma_raw, self.theta)
        key = (*(t._version for t in ps), *(t.data_ptr() for t in ps), self.weight.dtype, self.tau, self.mask_floor,
               self.sigma_min)
        cached = self.__dict__.get("_kernel_cache")
        if cached is None or cached[0] != key:
            cached = (key, self.effective_kernel())
            self.__dict__["_kernel_cache"] = cached
        return cached[1]

    #: the settings that decide what σ_raw and θ mean, saved in the state dict (as ``_extra_state``)
    SHAPE_SETTINGS = ("mask_floor", "tau", "sigma_min")

    def get_extra_state(self) -> torch.Tensor:
        """``[mask_floor, tau, sigma_min]`` (float64 ``(3,)``): saved with the weights, so that a state dict cannot
        load into a module that would compute another kernel from the same σ_raw, θ and W."""
        return torch.tensor([float(getattr(self, n)) for n in self.SHAPE_SETTINGS], dtype=torch.float64)

    def set_extra_state(self, state) -> None:
        got = [float(x) for x in torch.as_tensor(state, dtype=torch.float64).reshape(-1).tolist()]
        want = [float(getattr(self, n)) for n in self.SHAPE_SETTINGS]
        diff = [(n, g, w) for n, g, w in zip(self.SHAPE_SETTINGS, got, want) if not math.isclose(g, w, abs_tol=1e-12)]
        if len(got) != len(want) or diff:
            saved = ", ".join(f"{n}={g:g}" for n, g, _ in diff) or f"settings {got}"
            built = ", ".join(f"{n}={w:g}" for n, _, w in diff) or f"settings {want}"
            raise ValueError(f"a GaussianShapedConv2d state saved with {saved} cannot load into one built with {built} "
                             f"(the same weights would give another kernel); build the model with {saved} (YAML row "
                             "or gauss_kwargs) or train it from this checkpoint's config")

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        n = len(missing_keys)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
        key = prefix + "_extra_state"
        if key in missing_keys[n:]:  # saved before the settings were recorded: loads as it always did
            missing_keys.remove(key)

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
        return super().extra_repr() + (f", tau={self.tau}, mask_floor={self.mask_floor}, sigma_min={self.sigma_min}, "
                                       f"per_channel={self.per_channel}")


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
        g, d = check_groups_dilation(c1, c2, g, d)  # one line before anything is built
        if p is None:  # 'same', as Ultralytics' autopad; a dilation pair per axis
            p = _same_padding(k, d) if isinstance(d, tuple) else autopad(k, None, d)
        self.conv = GaussianShapedConv2d(c1, c2, k, s, p, dilation=d, groups=g, bias=False, **kwargs)
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
