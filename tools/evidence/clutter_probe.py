"""Where a trained YOLO detector's large false boxes on cluttered scenes come from (issue 33): layer by layer.

For each ``--weights`` (stock and twin, say), on a folder of out-of-distribution images: the images where the model
puts a box with a long side ≥ 100 px (conf ≥ 0.3), then the growth of the activations through the network on those
*cluttered* images against its own training images — per top-level layer, the channel mean of each image's 99th
percentile of |activation|, clutter mean / training mean. A stem that responded differently to high-frequency
clutter shows at layers 0–1; a blow-up grown in the neck shows further down. ``--bn-recal DATA.yaml`` also
re-estimates every BatchNorm's running statistics on the training images and scores ``DATA.yaml``'s val split
before and after (running statistics lagging the weights would show as a gain)::

    python -m tools.evidence.clutter_probe --weights STOCK/last.pt TWIN/last.pt \\
        --train-images ~/.cache/gaussconv_plugin/sirst_yolo/images/train \\
        --ood-images ~/.cache/gaussconv_plugin/eval_yolo/irstd1k-<hash>-val_sub/images/val [--bn-recal DATA.yaml]

The image folders are the YOLO conversions ``tools/ablation.py`` writes into the cache (training split; the
``--ood`` evaluation's split). Shapes: images are letterboxed to ``--imgsz`` / ``--ood-imgsz`` (square).
"""
from __future__ import annotations

import argparse
import copy
from pathlib import Path

__all__ = ["LAYERS", "load_images", "big_box_images", "layer_growth", "bn_recalibrated", "main"]

#: the top-level layers of a YOLOv8-P2 model that are probed (stem 0–1, backbone 2/4/6, SPPF 9, neck 15/18/21/24)
LAYERS = (0, 1, 2, 4, 6, 9, 15, 18, 21, 24)
IMG_EXT = (".png", ".jpg", ".jpeg", ".bmp")


def load_images(files, imgsz: int):
    """``(N, 3, imgsz, imgsz)`` float tensor in [0, 1], RGB, letterboxed as Ultralytics does for prediction."""
    import cv2
    import numpy as np
    import torch
    from ultralytics.data.augment import LetterBox

    lb = LetterBox((imgsz, imgsz), auto=False)
    x = []
    for f in files:
        im = cv2.imread(str(f))
        if im is None:
            raise SystemExit(f"clutter_probe: cannot read image {f}; pass a folder of images")
        x.append(lb(image=im)[:, :, ::-1].transpose(2, 0, 1))
    return torch.from_numpy(np.ascontiguousarray(np.stack(x))).float() / 255


def big_box_images(yolo, files, imgsz: int, conf: float = 0.3, long_side: float = 100.0) -> dict:
    """``{file name: number of boxes with a long side ≥ long_side}`` for the images where there is at least one."""
    out = {}
    for f in files:
        b = yolo.predict(str(f), imgsz=imgsz, conf=conf, device="cpu", verbose=False)[0].boxes.xywh
        n = int((b[:, 2:].max(1).values >= long_side).sum()) if len(b) else 0
        if n:
            out[Path(f).name] = n
    return out


def layer_growth(model, train_x, ood_x, layers=LAYERS, batch: int = 8) -> list[dict]:
    """Per layer of ``model.model``: mean over images of the channel-mean 99th percentile of |activation| on
    ``train_x`` and on ``ood_x``, and their ratio (ood / train)."""
    import torch

    acts = {}
    hooks = [model.model[i].register_forward_hook(lambda m, inp, o, i=i: acts.__setitem__(i, o)) for i in layers]
    try:
        stats = []
        for x in (train_x, ood_x):
            per = {i: [] for i in layers}
            with torch.no_grad():
                for j in range(0, len(x), batch):
                    model(x[j:j + batch])
                    for i in layers:
                        per[i].append(acts[i].abs().flatten(2).quantile(0.99, dim=2).mean(1))
            stats.append({i: float(torch.cat(per[i]).mean()) for i in layers})
    finally:
        for h in hooks:
            h.remove()
    return [{"layer": i, "train": stats[0][i], "ood": stats[1][i], "ratio": stats[1][i] / stats[0][i]}
            for i in layers]


def bn_recalibrated(model, x, batch: int = 16):
    """A copy of ``model`` (eval mode) whose BatchNorm running statistics are re-estimated on ``x`` (cumulative
    average, no augmentation); everything else unchanged."""
    import torch

    m = copy.deepcopy(model).eval()
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    momenta = [b.momentum for b in bns]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None
        b.train()
    with torch.no_grad():
        for j in range(0, len(x), batch):
            m(x[j:j + batch])
    for b, mom in zip(bns, momenta):
        b.momentum = mom
    return m.eval()


def _files(folder: str, limit: int | None = None) -> list[Path]:
    d = Path(folder).expanduser()
    if not d.is_dir():
        raise SystemExit(f"clutter_probe: {d} is not a folder of images; pass the YOLO conversion's images/<split>")
    fs = sorted(p for p in d.iterdir() if p.suffix.lower() in IMG_EXT)
    if not fs:
        raise SystemExit(f"clutter_probe: no images in {d}")
    return fs[:limit] if limit else fs


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", nargs="+", required=True)
    ap.add_argument("--train-images", required=True, help="the training images (folder)")
    ap.add_argument("--ood-images", required=True, help="the out-of-distribution images (folder)")
    ap.add_argument("--imgsz", type=int, default=320, help="training size (default 320)")
    ap.add_argument("--ood-imgsz", type=int, default=512, help="size of the out-of-distribution images (512)")
    ap.add_argument("--train-limit", type=int, default=48, help="training images used (default the first 48)")
    ap.add_argument("--bn-recal", default=None, metavar="DATA.yaml",
                    help="also re-estimate BN statistics on the training images and score this yaml's val split")
    a = ap.parse_args(argv)
    import torch
    from ultralytics import YOLO

    import gaussconv_plugin.yolo  # noqa: F401  (registers the modules a checkpoint names)

    torch.set_num_threads(1)
    ood_files = _files(a.ood_images)
    train_x = load_images(_files(a.train_images, a.train_limit), a.imgsz)
    yolos = {w: YOLO(w) for w in a.weights}
    big = {w: big_box_images(y, ood_files, a.ood_imgsz) for w, y in yolos.items()}
    cluttered = sorted(set().union(*big.values()))
    print(f"{len(ood_files)} images in {a.ood_images}; with a box ≥ 100 px:")
    for w in a.weights:
        print(f"  {w}: {len(big[w])} images, {sum(big[w].values())} boxes")
    result = {"big_boxes": big, "cluttered": cluttered, "growth": {}, "bn_recal": {}}
    if not cluttered:
        print("no image with a box ≥ 100 px: nothing to probe")
        return result
    ood_x = load_images([Path(a.ood_images).expanduser() / n for n in cluttered], a.ood_imgsz)
    rows = {w: layer_growth(y.model.float().eval(), train_x, ood_x) for w, y in yolos.items()}
    result["growth"] = rows
    print(f"\nactivation growth on those {len(cluttered)} images against {len(train_x)} training images "
          "(p99 |act| ratio, per layer):\n")
    print("| layer | " + " | ".join(Path(w).parts[-5] if len(Path(w).parts) > 5 else w for w in a.weights) + " |")
    print("|---|" + "---|" * len(a.weights))
    for k, i in enumerate(LAYERS):
        print(f"| {i} | " + " | ".join(f"{rows[w][k]['ratio']:.2f}" for w in a.weights) + " |")
    if a.bn_recal:
        import tempfile

        all_train_x = load_images(_files(a.train_images), a.imgsz)
        for w, y in yolos.items():
            ck = torch.load(w, weights_only=False, map_location="cpu")
            ck["model"] = bn_recalibrated(ck["model"].float(), all_train_x).half()
            with tempfile.TemporaryDirectory() as d:
                f = Path(d) / "bn_recal.pt"
                torch.save(ck, f)
                maps = [float(YOLO(p).val(data=a.bn_recal, imgsz=a.imgsz, batch=32, device="cpu", plots=False,
                                          verbose=False, workers=0).box.map50) for p in (w, f)]
            result["bn_recal"][w] = maps
            print(f"{w}: val mAP50 {maps[0]:.4f} as trained, {maps[1]:.4f} with BN statistics re-estimated")
    return result


if __name__ == "__main__":
    main()
