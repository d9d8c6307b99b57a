"""Which way the mask loss pushes each pixel of a trained U-Net: the share that goes the wrong way.

A right-way push raises a target pixel and lowers a background pixel (descent moves a logit against its gradient,
so: gradient ≤ 0 on target pixels, ≥ 0 on background). The soft-IoU factor of ``1 − α·IoU`` only ever pushes the
right way; the area weight α can push background up while a map is smaller than its target and target pixels
down while it is larger (:mod:`gaussconv_plugin.losses`, "Masks"), and MSHNet's location term (first moments not
divided by the mass) can push either way. This measures how much of that happens on a
checkpoint's own fused output over images of a split (native size, no augmentation, no deep supervision sides;
MSHNet's location term only with ``--with-location``)::

    python -m tools.evidence.pixel_push --weights RUN/epoch_20.pth --data-root ../shared/data/nudt_sirst --split train

``--config`` defaults to the one config file MMEngine dumped beside the checkpoint (an ablation run's folder).
Prints images with P < T, the shares of background pixels pushed up and target pixels pushed down, and the share of
the total |gradient| that points the wrong way, for ``--area-grad all`` (or ``directed``: 0 by construction).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `tools` and `gaussconv_plugin` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import torch  # noqa: E402

from gaussconv_plugin.losses import AREA_GRADS, SCALE_MODES, scale_iou_loss  # noqa: E402

__all__ = ["pixel_push", "measure", "main"]

_KEYS = ("images", "under", "bg", "bg_up", "tg", "tg_down", "wrong", "total")


def pixel_push(logits: torch.Tensor, target: torch.Tensor, mode: str = "diff", area_grad: str = "all",
               with_location: bool = False) -> dict:
    """Counts for ``(N, 1, H, W)`` logits and binary targets under ``scale_iou_loss(mode, area_grad)`` (with
    MSHNet's location term if ``with_location``; it is a batch term: pass one image at a time): ``images``,
    ``under`` (images with P < T), ``bg`` / ``bg_up`` (background pixels / those pushed up), ``tg`` / ``tg_down``
    (target pixels / those pushed down), ``wrong`` / ``total`` (Σ |grad| the wrong way / in all)."""
    x = logits.detach().float().clone().requires_grad_(True)
    t = target.float()
    scale_iou_loss(x, t, mode, with_location=with_location, area_grad=area_grad, reduction="sum").backward()
    g = x.grad
    bg, tg = t == 0, t > 0
    p_area = torch.sigmoid(x.detach()).sum((1, 2, 3))
    return {"images": int(x.shape[0]), "under": int((p_area < t.sum((1, 2, 3))).sum()),
            "bg": int(bg.sum()), "bg_up": int((g[bg] < 0).sum()),
            "tg": int(tg.sum()), "tg_down": int((g[tg] > 0).sum()),
            "wrong": float(g[bg].clamp(max=0).abs().sum() + g[tg].clamp(min=0).sum()), "total": float(g.abs().sum())}


def _config_beside(weights: Path) -> Path:
    cfgs = sorted(weights.parent.glob("*.py"))
    if len(cfgs) != 1:
        raise SystemExit(f"--config: {weights.parent} holds {len(cfgs)} config files, not one; pass --config "
                         "(e.g. mmdet_cfgs/unet_gauss_diff_nudt_cpu.py)")
    return cfgs[0]


def measure(weights, config=None, root=None, split: str = "train", images: int = 64, mode: str = "diff",
            area_grad: str = "all", with_location: bool = False) -> dict:
    """:func:`pixel_push` summed over ``images`` evenly spaced images of ``split`` of ``root`` (one at a time)."""
    import gaussconv_plugin.mmdet  # noqa: F401  (registers the U-Net's types)
    from gaussconv_plugin.data import sirst_root
    from gaussconv_plugin.data.seg_dataset import SIRSTSegDataset
    from gaussconv_plugin.mmdet.runner import load_config
    from gaussconv_plugin.mmdet.segmentation import IRSTDSegmentor

    weights = Path(weights)
    if not weights.is_file():
        raise SystemExit(f"--weights {weights}: no such file; pass a U-Net checkpoint (a run's epoch_<k>.pth)")
    cfg = load_config(str(config or _config_beside(weights)))
    model = IRSTDSegmentor(net=cfg.model.net, loss=cfg.model.get("loss"), warmup_epochs=0)
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=False)["state_dict"])
    model.eval()
    ds = SIRSTSegDataset(data_root=sirst_root(root), split=split, idx=None, mode="test")
    out = dict.fromkeys(_KEYS, 0)
    for i in range(0, len(ds), max(1, len(ds) // max(1, images)))[:images]:
        s = ds[i]
        t = torch.as_tensor(s["data_samples"]["gt_mask"]).float()[None, None]
        with torch.no_grad():
            logits = model.net(s["inputs"][None].float(), return_sides=False)[..., : t.shape[-2], : t.shape[-1]]
        for k, v in pixel_push(logits, t, mode, area_grad, with_location).items():
            out[k] += v
    return out


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--config", default=None)
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--split", default="train")
    ap.add_argument("--images", type=int, default=64)
    ap.add_argument("--mode", default="diff", choices=SCALE_MODES)
    ap.add_argument("--area-grad", default="all", choices=AREA_GRADS)
    ap.add_argument("--with-location", action="store_true", help="add MSHNet's location term (as in training)")
    a = ap.parse_args(argv)
    try:
        r = measure(a.weights, a.config, a.data_root, a.split, a.images, a.mode, a.area_grad, a.with_location)
    except ValueError as e:  # e.g. --mode var --area-grad directed
        raise SystemExit(f"pixel_push: {e}") from None
    print(f"{a.weights}: {r['images']} images of {a.split}, {r['under']} with P < T; background pixels pushed up "
          f"{r['bg_up'] / max(1, r['bg']):.4f}, target pixels pushed down {r['tg_down'] / max(1, r['tg']):.4f}; "
          f"wrong-way share of |grad| {r['wrong'] / max(r['total'], 1e-30):.4f} "
          f"(mode {a.mode}, area_grad {a.area_grad}{', with the location term' if a.with_location else ''})")
    return r


if __name__ == "__main__":
    main()
