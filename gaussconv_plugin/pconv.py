"""Pinwheel-shaped convolution (PConv) of Yang et al., AAAI 2025, written here from the paper's description.

"Pinwheel-shaped Convolution and Scale-based Dynamic Loss for Infrared Small Target Detection": four branches, each a
``1×k`` or ``k×1`` conv (with BN and activation, ``c2/4`` output channels) applied to the input padded asymmetrically,
so that the four strips point left, right, up and down from the centre (in the order of the pads below) and are
shifted one pixel sideways (a windmill); the four outputs are concatenated and merged by a ``2×2`` conv (BN,
activation)::

    pads (left, right, top, bottom):  (k, 0, 1, 0), (0, k, 0, 1), (0, 1, k, 0), (1, 0, 0, k)
    y = Conv2x2( cat[ Conv1xk(pad₀ x), Conv1xk(pad₁ x), Convkx1(pad₂ x), Convkx1(pad₃ x) ] )

The two ``1×k`` branches share one conv, as do the two ``k×1`` branches (the paper's code). Stride ``s`` is
applied in the branches; the ``2×2`` merge has stride 1 and no padding, so the output is ``⌊H/s⌋ × ⌊W/s⌋``: the
size of a 'same' conv with stride ``s`` whenever ``s`` divides H and W (as in YOLO), one less than its ``⌈H/s⌉`` for
odd sides at s = 2. It is this project's peer row for :class:`~gaussconv_plugin.GaussianShapedConv`
(Ultralytics YAML name ``PConv``, arguments ``[c2, k, s]``).

Shapes: ``(N, c1, H, W)`` → ``(N, c2, ⌊H/s⌋, ⌊W/s⌋)``; ``c2`` must be a multiple of 4.
"""
from __future__ import annotations

import torch
import torch.nn as nn

__all__ = ["PConv"]


class _ConvBNAct(nn.Sequential):
    def __init__(self, c1: int, c2: int, k, s: int, act: nn.Module):
        super().__init__(nn.Conv2d(c1, c2, k, s, 0, bias=False), nn.BatchNorm2d(c2), act)


class PConv(nn.Module):
    """Pinwheel-shaped conv block (module docstring). Argument order of Ultralytics' ``Conv`` (``c1, c2, k, s``).

    Args:
        c1, c2: input / output channels (``c2 % 4 == 0``); k: strip length; s: stride;
        act: True (SiLU), an ``nn.Module``, or False (identity), as Ultralytics' ``Conv``.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, act=True):
        super().__init__()
        if c2 % 4:
            raise ValueError(f"PConv needs c2 divisible by 4 (got {c2}); use a channel count such as {c2 + 4 - c2 % 4}")
        act = nn.SiLU() if act is True else act if isinstance(act, nn.Module) else nn.Identity()
        self.pad = nn.ModuleList(nn.ZeroPad2d(p) for p in [(k, 0, 1, 0), (0, k, 0, 1), (0, 1, k, 0), (1, 0, 0, k)])
        self.cw = _ConvBNAct(c1, c2 // 4, (1, k), s, act)
        self.ch = _ConvBNAct(c1, c2 // 4, (k, 1), s, act)
        self.cat = _ConvBNAct(c2, c2, 2, 1, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        yw0, yw1 = self.cw(self.pad[0](x)), self.cw(self.pad[1](x))
        yh0, yh1 = self.ch(self.pad[2](x)), self.ch(self.pad[3](x))
        return self.cat(torch.cat([yw0, yw1, yh0, yh1], 1))
