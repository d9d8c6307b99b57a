"""Segmentation dataset for SIRST v1 and IRSTD-layout folders (NUDT-SIRST, IRSTD-1k; see
:mod:`gaussconv_plugin.data.layout`) (pure numpy/torch/PIL; the MMEngine registration lives in
:mod:`gaussconv_plugin.mmdet.segmentation`).

Images may have any PIL mode (L, RGB, RGBA, P: all read as 8-bit grey by
:func:`~gaussconv_plugin.data.sirst.load_image`) and any size. A mask whose size differs from its image's is
accepted only as the image scaled by one factor, up to a pixel of rounding per side
(:func:`~gaussconv_plugin.data.sirst.check_mask_size`; SIRST v1 has one: ``Misc_111``, image 325×220, mask
592×400, in the ``test`` split): it is resized to the image with nearest neighbour (:func:`resize_mask`, with a
warning), as MSHNet's loader does implicitly; metrics are computed at the image's size. A mask of another aspect
ratio, or a file that does not decode, raises one line naming the file when the sample is first read.

Sample (what ``dataset[i]`` returns)::

    {'inputs': (C, H, W) float32 tensor,  (grey/255 − mean) / std, C = ``channels`` (1, or 3 = grey replicated)
     'data_samples': {'gt_mask': (H, W) uint8 tensor (0/1), 'name': str, 'img_path': str, 'root': str,
                      'ori_shape': (H0, W0) of the file, 'img_shape': (H, W) of this sample}}

Size handling:

- ``mode='train'`` — MSHNet's ``_sync_transform``, on the grey image and the mask together:
  1. horizontal flip with probability ``hflip`` (0.5), vertical flip with probability ``vflip`` (0: the sky is
     up in IR scenes; MSHNet flips horizontally only);
  2. random rescale keeping the aspect ratio: the long side becomes ``L ~ U{⌊s0·base⌋, …, ⌊s1·base⌋}`` with
     ``(s0, s1) = scale_range`` (0.5, 2.0) and ``base = base_size`` (default ``crop_size``); image bilinear,
     mask nearest;
  3. zero padding at the bottom/right up to ``crop_size`` where a side is shorter;
  4. a uniformly random ``crop_size × crop_size`` crop (images larger than the crop work the same way: IRSTD-1k's
     512² images with ``crop_size=256, base_size=512`` give 256-px crops of the image rescaled 0.5–2×);
  5. Gaussian blur of the image with probability ``blur_prob`` (0.5), radius ``~ U(0, 1)`` px (PIL).
  Random numbers come from NumPy's global generator (seeded per worker by MMEngine / PyTorch's
  ``worker_init_fn``), or from ``rng`` if given.
- ``mode='test'`` — the image at its native size (or resized to ``test_size``², MSHNet's test transform), no
  augmentation. Batches of different sizes are padded
  by :func:`pad_collate` (bottom/right, to a multiple of ``size_divisor``; inputs with 0, masks with 0) and
  every sample records its valid ``img_shape``; predictions are cropped back to it before any metric.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, ImageFilter

from .layout import check_names, detect_layout, image_path, mask_path
from .sirst import check_mask_size, dataset_root, load_image, load_mask, read_split

__all__ = ["SIRSTSegDataset", "train_transform", "pad_collate", "resize_mask", "GREY_MEAN", "GREY_STD"]

# ImageNet's RGB mean/std averaged over the channels: what MSHNet's Normalize does to a grey image stored as RGB.
GREY_MEAN = 0.449
GREY_STD = 0.226


def _pair(size) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize a bool mask ``(h, w)`` to ``shape = (H, W)`` with nearest neighbour; if that drops every target
    pixel of a non-empty mask, any-coverage (box filter > 0) is used instead, so no image loses all its targets."""
    h, w = int(shape[0]), int(shape[1])
    src = Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255)
    out = np.asarray(src.resize((w, h), Image.NEAREST)) > 127
    if not out.any() and np.asarray(mask).any():
        out = np.asarray(src.resize((w, h), Image.BOX)) > 0
    return out


def train_transform(
    img: np.ndarray,
    mask: np.ndarray,
    rng: np.random.Generator | np.random.RandomState,
    crop_size=256,
    base_size: int | None = None,
    scale_range: tuple[float, float] = (0.5, 2.0),
    hflip: float = 0.5,
    vflip: float = 0.0,
    blur_prob: float = 0.5,
) -> tuple[np.ndarray, np.ndarray]:
    """MSHNet's training augmentation (see the module docstring): flip, rescale, pad, crop, blur.

    Args:
        img: ``(H, W)`` uint8 grey image; mask: ``(H, W)`` bool.
        rng: ``np.random.Generator`` or ``RandomState`` (its ``random``/``uniform`` and integer draws are used).
        crop_size: output size, int or ``(h, w)``.
        base_size: reference for the long side (default: ``max(crop_size)``).

    Returns:
        ``(crop_h, crop_w)`` uint8 image and ``(crop_h, crop_w)`` bool mask.
    """
    ch, cw = _pair(crop_size)
    base = max(ch, cw) if base_size is None else int(base_size)
    randint = rng.integers if hasattr(rng, "integers") else rng.randint
    im = Image.fromarray(np.asarray(img, np.uint8))
    mk = Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255)
    if rng.random() < hflip:
        im, mk = im.transpose(Image.FLIP_LEFT_RIGHT), mk.transpose(Image.FLIP_LEFT_RIGHT)
    if rng.random() < vflip:
        im, mk = im.transpose(Image.FLIP_TOP_BOTTOM), mk.transpose(Image.FLIP_TOP_BOTTOM)
    lo, hi = int(base * scale_range[0]), int(base * scale_range[1])
    long_side = int(randint(lo, hi + 1)) if hi > lo else lo
    w, h = im.size
    if h > w:
        oh, ow = long_side, max(int(w * long_side / h + 0.5), 1)
    else:
        ow, oh = long_side, max(int(h * long_side / w + 0.5), 1)
    im = im.resize((ow, oh), Image.BILINEAR)
    mk = mk.resize((ow, oh), Image.NEAREST)
    a = np.zeros((max(oh, ch), max(ow, cw)), np.uint8)
    m = np.zeros_like(a)
    a[:oh, :ow] = np.asarray(im)
    m[:oh, :ow] = np.asarray(mk)
    y0 = int(randint(0, a.shape[0] - ch + 1))
    x0 = int(randint(0, a.shape[1] - cw + 1))
    a, m = a[y0:y0 + ch, x0:x0 + cw], m[y0:y0 + ch, x0:x0 + cw]
    if rng.random() < blur_prob:
        a = np.asarray(Image.fromarray(a).filter(ImageFilter.GaussianBlur(radius=float(rng.random()))))
    return np.ascontiguousarray(a), m > 127


class SIRSTSegDataset(torch.utils.data.Dataset):
    """Image + binary mask pairs of a dataset folder in either layout: SIRST v1 (``images/``,
    ``masks/<name>_pixels0.png``, ``idx_*/``) or IRSTD (``images/``, ``masks/<name>.png``, e.g. ``50_50/``).
    Registered in MMEngine as ``SIRSTSegDataset`` (the name is kept for every layout).

    Args:
        data_root: the folder; ``None`` → the shared folder of ``default_root``, resolved when the dataset is built.
        split: split file name (SIRST: ``train``, ``val``, ``test``, ``trainval``, ``trainvaltest``; NUDT-SIRST:
            ``train``, ``test`` and the committed ``train_sub``, ``val_sub``; IRSTD-1k: ``trainval``, ``test`` and
            the committed ``trainval_sub``, ``val_sub``).
        idx: split folder (``idx_427`` or ``idx_320``; NUDT-SIRST ``50_50``; IRSTD-1k ``idx``); ``None`` → the
            layout's default (:func:`~gaussconv_plugin.data.layout.default_idx`).
        default_root: which shared dataset ``data_root=None`` means (:func:`~gaussconv_plugin.data.sirst.dataset_root`):
            ``'sirst'`` (``$GAUSSCONV_SIRST_ROOT`` or ``../shared/data/sirst`` beside the checkout),
            ``'nudt_sirst'`` (``$GAUSSCONV_NUDT_ROOT`` or ``../shared/data/nudt_sirst``) or ``'irstd1k'``
            (``$GAUSSCONV_IRSTD1K_ROOT`` or ``../shared/data/irstd1k``).
        names: explicit image names (overrides ``split``).
        max_images: keep only the first ``max_images`` names (small test subsets).
        mode: ``'train'`` (random crop/rescale/flip/blur to ``crop_size``) or ``'test'`` (native size, or
            ``test_size``).
        test_size: in ``'test'`` mode, resize every image (bilinear) and mask (nearest) to ``test_size``² before
            the network and the metrics: MSHNet's ``_testval_sync_transform`` (its base size, 256), for a
            comparison with its published figures; ``None`` (default) scores the native images.
        crop_size, base_size, scale_range, hflip, vflip, blur_prob: training augmentation (module docstring).
        channels: 1 (grey) or 3 (grey replicated, for a 3-channel network).
        mean, std: normalisation of ``grey/255``.
        cache: keep decoded images/masks in memory after first use (the dataset is small).
        rng: optional ``np.random.Generator`` for the augmentation (default: NumPy's global generator).
    """

    def __init__(
        self,
        data_root: str | os.PathLike | None = None,
        split: str = "trainval",
        idx: str | None = None,
        names: Sequence[str] | None = None,
        max_images: int | None = None,
        mode: str = "train",
        crop_size=256,
        base_size: int | None = None,
        scale_range: tuple[float, float] = (0.5, 2.0),
        hflip: float = 0.5,
        vflip: float = 0.0,
        blur_prob: float = 0.5,
        channels: int = 1,
        mean: float = GREY_MEAN,
        std: float = GREY_STD,
        cache: bool = True,
        rng: np.random.Generator | None = None,
        default_root: str = "sirst",
        test_size: int | None = None,
    ):
        if mode not in ("train", "test"):
            raise ValueError(f"mode must be 'train' or 'test' (got {mode!r})")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (grey) or 3 (grey as RGB) (got {channels!r})")
        if not std > 0:
            raise ValueError(f"std must be > 0 (got {std!r}); use the default {GREY_STD}")
        if test_size is not None and (isinstance(test_size, bool) or not isinstance(test_size, int) or test_size < 1):
            raise ValueError(f"test_size must be None (native size) or a side in pixels such as 256 (got "
                             f"{test_size!r})")
        self.root = dataset_root(data_root, default_root)
        self.layout = detect_layout(self.root)
        self.names = list(names) if names is not None else read_split(self.root, split, idx, check=False)
        if max_images is not None:
            self.names = self.names[: int(max_images)]
        check_names(self.root, self.names, self.layout,
                    source="names=[...]" if names is not None else f"split {split!r} (idx={idx!r})")
        if not self.names:
            raise ValueError(f"no images selected from {self.root} (split={split!r}, idx={idx!r}, names={names!r}); "
                             "check the split file or pass names=[...]")
        self.mode, self.crop_size, self.base_size = mode, _pair(crop_size), base_size
        self.scale_range, self.hflip, self.vflip, self.blur_prob = tuple(scale_range), hflip, vflip, blur_prob
        self.channels, self.mean, self.std = channels, float(mean), float(std)
        self.cache = cache
        self.rng = rng
        self.test_size = test_size
        self._store: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def __len__(self) -> int:
        return len(self.names)

    def load(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """``(H, W)`` uint8 image and ``(H, W)`` bool mask of image ``i`` at native size."""
        if i in self._store:
            return self._store[i]
        name = self.names[i]
        img, mask = load_image(self.root, name), load_mask(self.root, name, self.layout)
        if not check_mask_size(img.shape, mask.shape, image_path(self.root, name),
                               mask_path(self.root, name, self.layout)):
            warnings.warn(f"{name}: mask {mask.shape} resized to the image's {img.shape} (nearest)", stacklevel=2)
            mask = resize_mask(mask, img.shape)
        if self.cache:
            self._store[i] = (img, mask)
        return img, mask

    def normalise(self, img: np.ndarray) -> torch.Tensor:
        """``(H, W)`` uint8 → ``(C, H, W)`` float32 ``(img/255 − mean)/std``."""
        x = (torch.from_numpy(np.asarray(img, np.float32)) / 255.0 - self.mean) / self.std
        return x.unsqueeze(0).repeat(self.channels, 1, 1)

    def __getitem__(self, i: int) -> dict:
        img, mask = self.load(i)
        ori_shape = tuple(img.shape)
        if self.mode == "train":
            rng = self.rng if self.rng is not None else np.random
            img, mask = train_transform(img, mask, rng, self.crop_size, self.base_size, self.scale_range,
                                        self.hflip, self.vflip, self.blur_prob)
        elif self.test_size is not None:  # MSHNet's test transform: image bilinear, mask nearest, to test_size²
            side = self.test_size
            img = np.asarray(Image.fromarray(np.asarray(img, np.uint8)).resize((side, side), Image.BILINEAR))
            mask = np.asarray(Image.fromarray(np.asarray(mask, bool).astype(np.uint8) * 255).resize(
                (side, side), Image.NEAREST)) > 127
        name = self.names[i]
        return {
            "inputs": self.normalise(img),
            "data_samples": {
                "gt_mask": torch.from_numpy(np.asarray(mask, np.uint8).copy()),
                "name": name,
                "img_path": str(Path(self.root) / "images" / f"{name}.png"),
                "root": str(self.root),
                "ori_shape": ori_shape,
                "img_shape": tuple(img.shape),
            },
        }


def pad_collate(batch: Sequence[dict], size_divisor: int = 32, pad_value: float = 0.0) -> dict:
    """Stack samples of possibly different sizes, padding bottom/right to a common multiple of ``size_divisor``.

    Args:
        batch: samples as :class:`SIRSTSegDataset` returns them.
        size_divisor: padded ``H, W`` are the batch maxima rounded up to a multiple of it (1: no rounding).
        pad_value: input value in the padding (0 = the mean grey after normalisation); masks are padded with 0.

    Returns:
        ``{'inputs': (N, C, Hp, Wp) float32, 'data_samples': [dict, …]}``; each data sample's ``gt_mask`` is
        padded to ``(Hp, Wp)`` and gets ``pad_shape = (Hp, Wp)``; ``img_shape`` keeps the valid size.
    """
    if not batch:
        raise ValueError("pad_collate got an empty batch; check the dataset length and the sampler")
    d = max(int(size_divisor), 1)
    hs = [b["inputs"].shape[-2] for b in batch]
    ws = [b["inputs"].shape[-1] for b in batch]
    hp, wp = -(-max(hs) // d) * d, -(-max(ws) // d) * d
    c = batch[0]["inputs"].shape[0]
    inputs = torch.full((len(batch), c, hp, wp), float(pad_value), dtype=torch.float32)
    samples = []
    for k, b in enumerate(batch):
        x = b["inputs"]
        inputs[k, :, : x.shape[-2], : x.shape[-1]] = x
        ds = dict(b["data_samples"])
        m = ds["gt_mask"]
        pm = torch.zeros((hp, wp), dtype=m.dtype)
        pm[: m.shape[-2], : m.shape[-1]] = m
        ds["gt_mask"] = pm
        ds["pad_shape"] = (hp, wp)
        samples.append(ds)
    return {"inputs": inputs, "data_samples": samples}
