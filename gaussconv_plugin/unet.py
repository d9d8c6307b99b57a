"""MSHNet-style U-Net for infrared small-target segmentation, with optional Gaussian-shaped convolutions.

Architecture (MSHNet, Liu et al. CVPR 2024, public code; channel widths ``C = (16, 32, 64, 128, 256)``)::

    x (N, in_channels, H, W)
    └ conv_init 1×1 → C0
      e0 = encoder_0(·)                 (N, C0, H,    W)      1 residual block
      e1 = encoder_1(pool e0)           (N, C1, H/2,  W/2)    blocks[0] blocks
      e2 = encoder_2(pool e1)           (N, C2, H/4,  W/4)    blocks[1]
      e3 = encoder_3(pool e2)           (N, C3, H/8,  W/8)    blocks[2]
      m  = middle(pool e3)              (N, C4, H/16, W/16)   blocks[3]
      d3 = decoder_3([e3, up m])        (N, C3, H/8,  W/8)
      d2 = decoder_2([e2, up d3])       (N, C2, H/4,  W/4)
      d1 = decoder_1([e1, up d2])       (N, C1, H/2,  W/2)
      d0 = decoder_0([e0, up d1])       (N, C0, H,    W)
      side_j = 1×1 conv(d_j) → 1 channel, at scale 1/2^j   (deep supervision, j = 0..3)
      fused  = 3×3 conv(cat[side_0, up×2 side_1, up×4 side_2, up×8 side_3])   (N, 1, H, W)

``pool`` is a 2×2 max-pool, ``up`` bilinear ×2 (``align_corners=True``, as MSHNet). A residual block is
``relu(SA(z)·z + shortcut(x))``, ``z = CA(y)·y``, ``y = bn(conv3×3(relu(bn(conv3×3 x))))``, where channel attention
``CA(x) = σ(fc(avgpool x) + fc(maxpool x))`` (``fc`` = 1×1 conv C→C/16→C, ReLU between, shared) and spatial
attention ``SA(x) = σ(conv7×7([mean_c x, max_c x]))`` (2 → 1 channels, no bias); both multiply the features.

Gaussian-shaped convolution (:class:`~gaussconv_plugin.conv.GaussianShapedConv2d`; the method in
``docs/method.md``), selected by ``gauss_conv``:

- ``'none'``: plain MSHNet.
- ``'spatial_attention'``: the 7×7 spatial-attention conv of **every** residual block (a 2→1-channel conv
  whose kernel is exactly a small-target detector on the [mean, max] maps; one σ and one θ per block).
- ``'first_stage'``: both 3×3 convs of the first encoder stage (``encoder_0``, full resolution, where the
  1–40 px targets live; the 1×1 ``conv_init`` and the shortcuts stay plain).
- ``'both'``: the two together.

Their initial pinwheel angle is θ₀ = 0 (:data:`~gaussconv_plugin.masks.PINNED_THETA_INIT`), not the package
default ``'mid'``: the published U-Net runs were trained with it and ``'mid'`` is not yet screened on the U-Net
(``gauss_kwargs=dict(theta_init='mid')`` opts in; the weight-free SA form keeps its own default ``'mid'``).

Every one of these convs is stride 1 (the 3×3 convs and the 7×7 SA conv keep the resolution; the encoder's
downsampling is a separate 2×2 max-pool), so even the hard pinwheel (``gauss_kwargs=dict(mask_floor=0)``) leaves no
input pixel unread: the centre tap is always on the mask (``docs/method.md``, "Forms that constrain").

``sa_form`` picks the form of the Gaussian spatial-attention conv (where ``gauss_conv`` puts one):

- ``'conv'`` (default): a :class:`GaussianShapedConv2d`, kernel ``W·G_σ·M̃_θ`` (98 weights + σ + θ).
- ``'free'``: the weight-free :class:`~gaussconv_plugin.shaped_kernel.ShapedFilter2d`, kernel
  ``G_σ·M_θ / Σ(G_σ·M_θ)`` (hard pinwheel, the same kernel on the mean and the max map, summed), σ and θ its only
  parameters (2 per block). ``gauss_kwargs``' ``sigma_init``, ``theta_init``, ``tau``, ``sigma_min``,
  ``learn_sigma`` and ``learn_theta`` apply to it; ``mask_floor`` and ``per_channel`` do not (its floor is 0, one σ/θ).

Input size: any ``H, W``. The network needs multiples of ``2⁴ = 16`` (four 2× poolings); other sizes are
zero-padded at the bottom/right inside :meth:`MSHUNet.forward` (zero = the mean grey level after the
dataset's normalisation) and every output is cropped back: the fused map to ``(H, W)``, side ``j`` to
``(⌈H/2^j⌉, ⌈W/2^j⌉)`` — exactly the size of the target max-pooled ``j`` times with ``ceil_mode=True``
(:func:`downsample_target`). Channels: ``in_channels=1`` (grey IR, what :mod:`~gaussconv_plugin.data.seg_dataset`
gives by default) or 3 (MSHNet's grey-as-RGB; set the dataset's ``channels=3`` too).

Training loss (:func:`deep_supervision_loss`): the mean of the mask loss over the fused map and the four side
maps, each against the target max-pooled to its scale (MSHNet: ``nn.MaxPool2d(2, 2)`` applied repeatedly, so
a 1-px target survives at every scale). The mask loss is :class:`~gaussconv_plugin.losses.ScaleIoULoss`
(``mode='var'`` + location = MSHNet's SLS, ``mode='diff'`` the proposed loss), location term at every scale.
During the warm-up epochs every term is the plain soft-IoU loss ``1 − softIoU``.

Deviation from MSHNet's code, on purpose: MSHNet's warm-up (``epoch ≤ warm_epoch``) trains and evaluates
only the full-resolution head ``side_0``; here all five outputs are supervised (with plain soft-IoU) from the
first epoch, so the fused head is trained throughout and evaluation never depends on the epoch.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .conv import GaussianShapedConv2d
from .masks import PINNED_THETA_INIT
from .shaped_kernel import ShapedFilter2d

__all__ = [
    "GAUSS_CONV_PLACES",
    "SA_FORMS",
    "ChannelAttention",
    "SpatialAttention",
    "ResidualAttentionBlock",
    "MSHUNet",
    "downsample_target",
    "deep_supervision_loss",
]

GAUSS_CONV_PLACES = ("none", "spatial_attention", "first_stage", "both")
SA_FORMS = ("conv", "free")
# the gauss_kwargs that the weight-free SA filter takes (the others shape the weighted convs only)
_FREE_KEYS = ("sigma_init", "theta_init", "tau", "sigma_min", "learn_sigma", "learn_theta")


def _conv_kwargs(gauss_kwargs: dict | None) -> dict:
    """The options of the U-Net's :class:`GaussianShapedConv2d`: ``gauss_kwargs`` over ``theta_init =``
    :data:`~gaussconv_plugin.masks.PINNED_THETA_INIT` (θ₀ = 0, what the published U-Net runs trained with)."""
    return {"theta_init": PINNED_THETA_INIT, **(gauss_kwargs or {})}


def _check_place(gauss_conv: str) -> str:
    if gauss_conv not in GAUSS_CONV_PLACES:
        raise ValueError(f"unknown gauss_conv {gauss_conv!r}; use one of {', '.join(GAUSS_CONV_PLACES)}")
    return gauss_conv


def _check_sa_form(sa_form: str, gauss_conv: str) -> str:
    if sa_form not in SA_FORMS:
        raise ValueError(f"unknown sa_form {sa_form!r}; use 'conv' (GaussianShapedConv2d) or 'free' (weight-free "
                         "G·M kernel)")
    if sa_form == "free" and gauss_conv not in ("spatial_attention", "both"):
        raise ValueError(f"sa_form='free' is a form of the Gaussian spatial-attention conv, which gauss_conv="
                         f"{gauss_conv!r} does not place; use gauss_conv='both' or 'spatial_attention' with it")
    return sa_form


class ChannelAttention(nn.Module):
    """CBAM channel attention as MSHNet: ``σ(fc(avgpool x) + fc(maxpool x))``, shared 1×1-conv MLP C→C/r→C.

    Shapes: ``(N, C, H, W)`` → ``(N, C, 1, 1)`` weights in (0, 1). The hidden width is ``max(C // ratio, 1)``.
    """

    def __init__(self, channels: int, ratio: int = 16):
        super().__init__()
        hidden = max(channels // ratio, 1)
        self.fc1 = nn.Conv2d(channels, hidden, 1, bias=False)
        self.fc2 = nn.Conv2d(hidden, channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc2(F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1))))
        mx = self.fc2(F.relu(self.fc1(F.adaptive_max_pool2d(x, 1))))
        return torch.sigmoid(avg + mx)


class SpatialAttention(nn.Module):
    """Spatial attention ``σ(conv_k×k([mean_c x, max_c x]))`` (2 → 1 channels, no bias, same padding).

    Args:
        kernel_size: odd, 7 in MSHNet.
        gauss: use a :class:`GaussianShapedConv2d` for the conv (``gauss_kwargs`` forwarded to it).
        free: with ``gauss``, the weight-free form instead: a
            :class:`~gaussconv_plugin.shaped_kernel.ShapedFilter2d` (``σ(K ⋆ mean + K ⋆ max)``,
            ``K = G_σ·M_θ / Σ G_σ·M_θ``, σ and θ its only parameters; the keys of ``gauss_kwargs`` it takes are
            forwarded, ``mask_floor``/``per_channel`` are not).

    Shapes: ``(N, C, H, W)`` → ``(N, 1, H, W)`` weights in (0, 1).
    """

    def __init__(self, kernel_size: int = 7, gauss: bool = False, gauss_kwargs: dict | None = None,
                 free: bool = False):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError(f"SpatialAttention needs an odd kernel_size (got {kernel_size}); use 7 as MSHNet")
        if free and not gauss:
            raise ValueError("SpatialAttention(free=True) is a form of the Gaussian SA conv; pass gauss=True with it")
        if free:
            kw = {k: v for k, v in (gauss_kwargs or {}).items() if k in _FREE_KEYS}
            self.conv = ShapedFilter2d(2, kernel_size, **kw)
        elif gauss:
            self.conv = GaussianShapedConv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False,
                                             **_conv_kwargs(gauss_kwargs))
        else:
            self.conv = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        desc = torch.cat([x.mean(1, keepdim=True), x.amax(1, keepdim=True)], 1)
        return torch.sigmoid(self.conv(desc))


class ResidualAttentionBlock(nn.Module):
    """MSHNet's residual block: ``relu(SA(z)·z + shortcut(x))``, ``z = CA(y)·y``,
    ``y = bn(conv3×3(relu(bn(conv3×3 x))))``.

    Args:
        in_channels, out_channels: widths; a 1×1 conv + BN shortcut is used when they differ.
        gauss_convs: make both 3×3 convs :class:`GaussianShapedConv2d`.
        gauss_sa: make the spatial-attention conv a :class:`GaussianShapedConv2d`.
        sa_form: ``'conv'`` or ``'free'``: the form of the Gaussian SA conv (``'free'`` needs ``gauss_sa``; see
            :class:`SpatialAttention`).
        sa_kernel: spatial-attention kernel size (7).
        gauss_kwargs: forwarded to every :class:`GaussianShapedConv2d` (``sigma_init``, ``tau`` …).

    Shapes: ``(N, in_channels, H, W)`` → ``(N, out_channels, H, W)``.
    """

    def __init__(self, in_channels: int, out_channels: int, *, gauss_convs: bool = False, gauss_sa: bool = False,
                 sa_form: str = "conv", sa_kernel: int = 7, gauss_kwargs: dict | None = None):
        super().__init__()
        gk = gauss_kwargs or {}
        _check_sa_form(sa_form, "both")  # the value; SpatialAttention says if 'free' lacks gauss_sa

        def conv3(ci, co):
            if gauss_convs:
                return GaussianShapedConv2d(ci, co, 3, padding=1, **_conv_kwargs(gk))
            return nn.Conv2d(ci, co, 3, padding=1)

        self.conv1 = conv3(in_channels, out_channels)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = conv3(out_channels, out_channels)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut = None
        if in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels))
        self.ca = ChannelAttention(out_channels)
        self.sa = SpatialAttention(sa_kernel, gauss=gauss_sa, gauss_kwargs=gk, free=sa_form == "free")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        residual = x if self.shortcut is None else self.shortcut(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = self.ca(out) * out
        out = self.sa(out) * out
        return F.relu(out + residual)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class MSHUNet(nn.Module):
    """MSHNet U-Net with deep supervision and optional Gaussian-shaped convs (see the module docstring).

    Args:
        in_channels: 1 (grey) or 3 (grey replicated to RGB, as MSHNet's ``MSHNet(3)``).
        channels: 5 widths (stem/encoder_0, encoder_1..3, middle); MSHNet ``(16, 32, 64, 128, 256)``.
        blocks: residual blocks in encoder_1..3 / middle (and the mirrored decoders); MSHNet ``(2, 2, 2, 2)``.
        gauss_conv: ``'none'`` | ``'spatial_attention'`` | ``'first_stage'`` | ``'both'``.
        gauss_kwargs: forwarded to every :class:`GaussianShapedConv2d` (e.g. ``dict(tau=0.5)``; ``mask_floor=0``:
            the hard pinwheel, which reads every pixel here since every such conv is stride 1).
        sa_form: ``'conv'`` (default) | ``'free'``: the form of the Gaussian spatial-attention convs (module
            docstring); ``'free'`` needs ``gauss_conv`` ``'both'`` or ``'spatial_attention'``.
        sa_kernel: spatial-attention kernel (7).

    Forward:
        ``x`` ``(N, in_channels, H, W)``, any H, W (padded to multiples of 16 internally, outputs cropped).

        - ``self.training``: ``(fused, sides)`` — ``fused`` logits ``(N, 1, H, W)`` and
          ``sides = [s0, s1, s2, s3]``, ``s_j`` logits ``(N, 1, ⌈H/2^j⌉, ⌈W/2^j⌉)``.
        - eval: ``fused`` logits ``(N, 1, H, W)`` only (``return_sides=True`` forces the tuple).
    """

    size_divisor = 16

    def __init__(
        self,
        in_channels: int = 1,
        channels=(16, 32, 64, 128, 256),
        blocks=(2, 2, 2, 2),
        gauss_conv: str = "none",
        gauss_kwargs: dict | None = None,
        sa_kernel: int = 7,
        sa_form: str = "conv",
    ):
        super().__init__()
        if len(channels) != 5 or len(blocks) != 4:
            raise ValueError(f"MSHUNet needs 5 channel widths and 4 block counts (got {channels!r}, {blocks!r}); "
                             "use channels=(16, 32, 64, 128, 256), blocks=(2, 2, 2, 2) as MSHNet")
        self.gauss_conv = _check_place(gauss_conv)
        self.sa_form = _check_sa_form(sa_form, gauss_conv)
        sa = gauss_conv in ("spatial_attention", "both")
        first = gauss_conv in ("first_stage", "both")
        kw = dict(gauss_sa=sa, sa_form=sa_form, sa_kernel=sa_kernel, gauss_kwargs=gauss_kwargs)
        c, b = list(channels), list(blocks)

        def stage(ci, co, n, gauss_convs=False):
            return nn.Sequential(*[ResidualAttentionBlock(ci if i == 0 else co, co, gauss_convs=gauss_convs, **kw)
                                   for i in range(n)])

        self.conv_init = nn.Conv2d(in_channels, c[0], 1)
        self.encoder_0 = stage(c[0], c[0], 1, gauss_convs=first)
        self.encoder_1 = stage(c[0], c[1], b[0])
        self.encoder_2 = stage(c[1], c[2], b[1])
        self.encoder_3 = stage(c[2], c[3], b[2])
        self.middle = stage(c[3], c[4], b[3])
        self.decoder_3 = stage(c[3] + c[4], c[3], b[2])
        self.decoder_2 = stage(c[2] + c[3], c[2], b[1])
        self.decoder_1 = stage(c[1] + c[2], c[1], b[0])
        self.decoder_0 = stage(c[0] + c[1], c[0], 1)
        self.side = nn.ModuleList([nn.Conv2d(c[j], 1, 1) for j in range(4)])
        self.final = nn.Conv2d(4, 1, 3, padding=1)
        self.in_channels = in_channels

    @staticmethod
    def _up(x: torch.Tensor, factor: int) -> torch.Tensor:
        return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=True)

    def forward(self, x: torch.Tensor, return_sides: bool | None = None):
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"MSHUNet expects (N, {self.in_channels}, H, W) input, got {tuple(x.shape)}; "
                             f"set in_channels={x.shape[1] if x.dim() == 4 else '?'} or the dataset's channels")
        h, w = x.shape[-2:]
        s = self.size_divisor
        ph, pw = _ceil_div(h, s) * s - h, _ceil_div(w, s) * s - w
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        pool = lambda t: F.max_pool2d(t, 2, 2)  # noqa: E731
        up = lambda t: self._up(t, 2)  # noqa: E731
        e0 = self.encoder_0(self.conv_init(x))
        e1 = self.encoder_1(pool(e0))
        e2 = self.encoder_2(pool(e1))
        e3 = self.encoder_3(pool(e2))
        m = self.middle(pool(e3))
        d3 = self.decoder_3(torch.cat([e3, up(m)], 1))
        d2 = self.decoder_2(torch.cat([e2, up(d3)], 1))
        d1 = self.decoder_1(torch.cat([e1, up(d2)], 1))
        d0 = self.decoder_0(torch.cat([e0, up(d1)], 1))
        sides = [head(d) for head, d in zip(self.side, (d0, d1, d2, d3))]
        fused = self.final(torch.cat([sides[0]] + [self._up(sj, 2**j) for j, sj in enumerate(sides) if j], 1))
        fused = fused[..., :h, :w]
        if return_sides is None:
            return_sides = self.training
        if not return_sides:
            return fused
        sides = [sj[..., : _ceil_div(h, 2**j), : _ceil_div(w, 2**j)] for j, sj in enumerate(sides)]
        return fused, sides


def downsample_target(target: torch.Tensor, levels: int = 4) -> list[torch.Tensor]:
    """The target at scales ``1, 1/2, …, 1/2^(levels−1)`` by repeated 2×2 max-pooling (``ceil_mode=True``).

    Max-pooling (MSHNet's rule) keeps every target, even a 1-px one, at every scale.

    Args:
        target: ``(N, 1, H, W)`` binary mask (any float/int dtype).

    Returns:
        ``levels`` float tensors, the ``j``-th ``(N, 1, ⌈H/2^j⌉, ⌈W/2^j⌉)``.
    """
    t = target.float()
    out = [t]
    for _ in range(levels - 1):
        t = F.max_pool2d(t, 2, 2, ceil_mode=True)
        out.append(t)
    return out


def deep_supervision_loss(
    fused: torch.Tensor,
    sides: list[torch.Tensor],
    target: torch.Tensor,
    loss_fn: nn.Module,
    warmup: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """MSHNet's deep-supervised loss: the mean of ``loss_fn`` over the fused map and the side maps.

    ``L = (ℓ(fused, t) + Σ_j ℓ(side_j, maxpool^j t)) / (1 + len(sides))`` with ``ℓ = loss_fn(logits, target,
    warmup=warmup)`` (e.g. :class:`~gaussconv_plugin.losses.ScaleIoULoss`; in warm-up it is ``1 − softIoU``).

    Args:
        fused: ``(N, 1, H, W)`` logits.
        sides: side logits, ``sides[j]`` ``(N, 1, ⌈H/2^j⌉, ⌈W/2^j⌉)`` (as :class:`MSHUNet` returns them).
        target: ``(N, 1, H, W)`` binary mask.
        loss_fn: callable ``(logits, target, warmup=bool) → scalar``.

    Returns:
        ``(total, parts)``: scalar total and ``{'fused': ℓ0, 'side0': …, 'side3': …}`` (scalars).
    """
    if target.dim() == 3:
        target = target.unsqueeze(1)
    if fused.shape != target.shape:
        raise ValueError(f"deep_supervision_loss: fused logits {tuple(fused.shape)} vs target {tuple(target.shape)}; "
                         "pass the (N, 1, H, W) mask of the same batch")
    targets = downsample_target(target, max(len(sides), 1))
    parts = {"fused": loss_fn(fused, targets[0], warmup=warmup)}
    for j, sj in enumerate(sides):
        if sj.shape[-2:] != targets[j].shape[-2:]:
            raise ValueError(f"side {j} has size {tuple(sj.shape[-2:])} but the target max-pooled {j}× has "
                             f"{tuple(targets[j].shape[-2:])}; side j must be (⌈H/2^j⌉, ⌈W/2^j⌉) as MSHUNet returns")
        parts[f"side{j}"] = loss_fn(sj, targets[j], warmup=warmup)
    total = torch.stack(list(parts.values())).mean()
    return total, parts
