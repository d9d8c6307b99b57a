"""Target-level evaluation of a trained YOLO detector on a SIRST split (:mod:`gaussconv_plugin.boxmetrics`).

Fixed protocol, the same for every variant: each image of the split is predicted on its own (batch 1) with
Ultralytics' predictor at ``--imgsz`` (letterboxed to the long side, minimal padding), confidence ≥ ``--conf``
(0.3), NMS IoU 0.7; targets are the 8-connected components of the mask (their boxes); a detection matches a
target when the box centres are ≤ 3 px apart. Prints and writes (``--out``) Pd, false alarms per image and the
median predicted/target area ratio; ``--by-area 9 25 64`` adds Pd per bin of target box area (px², the
original image's pixels). From Python, ``imgsz='native'`` predicts each image at its long side rounded
up to 32 (:func:`native_imgsz`) and ``per_image=True`` records each image's shape, the size asked for and the
network's input shape (:mod:`tools.evidence.evaluate` uses both). Every record carries ``false_boxes``
(:meth:`~gaussconv_plugin.boxmetrics.BoxTargetMetrics.false_boxes`): the unmatched detections' long sides, their
scores and the head (stride) each comes from, read from the anchor index NMS keeps (:func:`kept_anchor_strides`)::

    python -m tools.evidence.boxeval --weights runs/detect/train/weights/last.pt --split val
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a file: make `tools` and `gaussconv_plugin` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from gaussconv_plugin.boxmetrics import EVAL_CONF, PD_RADIUS, BoxTargetMetrics  # noqa: E402
from gaussconv_plugin.data import load_image, read_split, sirst_root, target_boxes  # noqa: E402

__all__ = ["evaluate_weights", "native_imgsz", "parse_imgsz", "kept_anchor_strides", "anchor_strides",
           "false_box_metrics", "silence_coarse_heads", "main"]


def false_box_metrics(detail: dict) -> dict:
    """The table columns of a detector evaluation's ``false_boxes`` (this module's for YOLO, :mod:`.retina_eval`'s
    for RetinaNet): the share of the unmatched boxes whose long side is ≥ 32 and ≥ 100 px, and (YOLO, which records
    each box's head) the share of them fired by a head coarser than the
    model's finest (P3–P5 of a P2 model: TAL gives them next to no box-loss weight on 1–30 px targets, so the box
    they draw is untrained and large; docs/ablation/ood_yolo_train_val). Empty where none were recorded."""
    fb = detail.get("false_boxes") or {}
    if not fb.get("n"):
        return {}
    out = {"false_ge32": fb["share_long_ge32"], "false_ge100": fb["share_long_ge100"]}
    if fb.get("by_stride") and fb.get("model_strides"):
        finest = min(fb["model_strides"])
        out["false_coarse"] = sum(n for s, n in fb["by_stride"].items() if int(s) > finest) / fb["n"]
    return out


def anchor_strides(input_hw, strides) -> np.ndarray:
    """Stride of every anchor of a YOLO head, in the order of its output: level by level, row-major.

    ``input_hw``: the network input ``(H, W)``; ``strides``: the model's ``stride`` per level. → ``(A,)`` ints."""
    h, w = input_hw
    return np.concatenate([np.full(int(math.ceil(h / s)) * int(math.ceil(w / s)), int(s)) for s in strides])


class kept_anchor_strides:
    """Context manager that records, for every image an Ultralytics predictor post-processes inside it, the anchor
    index of each detection NMS keeps (``non_max_suppression(..., return_idxs=True)``, the one host function touched
    here; a host without ``return_idxs`` fails loudly). ``.indices`` holds one ``(N,)`` array per image, in the
    order of ``Results.boxes`` (NMS output order; the confidence filter of the predictor comes from NMS itself);
    ``.scores`` the best class score of every anchor before NMS, ``(A,)`` per image (which head fires where)."""

    def __init__(self):
        self.indices: list[np.ndarray] = []
        self.scores: list[np.ndarray] = []

    def __enter__(self):
        import inspect

        from ultralytics.utils import nms

        self._nms, self._orig = nms, nms.non_max_suppression
        if "return_idxs" not in inspect.signature(self._orig).parameters:
            raise RuntimeError("ultralytics.utils.nms.non_max_suppression has no return_idxs: this Ultralytics is "
                               "not supported by tools.evidence.boxeval; install the version in "
                               "requirements/constraints.txt")

        def nms_with_idx(*args, **kwargs):
            want = kwargs.pop("return_idxs", False)
            pred = args[0] if args else kwargs["prediction"]
            pred = pred[0] if isinstance(pred, (list, tuple)) else pred
            if pred.dim() == 3 and pred.shape[1] > 4:  # (B, 4 + nc, A): not an end-to-end head
                self.scores += list(pred[:, 4:].amax(1).float().cpu().numpy())
            out, keep = self._orig(*args, return_idxs=True, **kwargs)
            self.indices += [k.cpu().numpy().astype(np.int64) for k in keep]
            return (out, keep) if want else out

        nms.non_max_suppression = nms_with_idx
        return self

    def __exit__(self, *exc):
        self._nms.non_max_suppression = self._orig
        return False


def native_imgsz(height: int, width: int, stride: int = 32) -> int:
    """The input size that keeps an image at its own scale: its long side rounded up to a multiple of ``stride``."""
    return int(math.ceil(max(height, width) / stride) * stride)


def parse_imgsz(text: str, option: str = "--imgsz") -> int | str:
    """An input size from a command line: ``'native'`` or a positive whole number of pixels (the long side); anything
    else stops with one line naming ``option``."""
    if text == "native":
        return text
    if not (text.isdigit() and int(text)):
        raise SystemExit(f"{option} {text}: give a whole number of pixels (e.g. 320) or 'native'")
    return int(text)


def silence_coarse_heads(det, logit: float = -50.0) -> list[int]:
    """Make every level of an Ultralytics detection head but the finest (P3–P5 of a P2 model) score nothing: the
    bias of each coarser level's last classification conv (``cv3[i][-1]``, and ``one2one_cv3`` where the head has
    it) is set to ``logit`` (sigmoid(-50) ≈ 2e-22), so those anchors fall below any confidence threshold before
    NMS and suppress nothing. ``det``: the ``Detect`` module (``model.model[-1]``), changed in place. Returns the
    strides silenced. A diagnostic of issue 33 (do the coarse heads of a small-target model find anything?), not
    a training option."""
    strides = [int(s) for s in det.stride.tolist()]
    finest = strides.index(min(strides))
    for branch in [b for b in (getattr(det, "cv3", None), getattr(det, "one2one_cv3", None)) if b is not None]:
        for i, level in enumerate(branch):
            if i != finest:
                level[-1].bias.data.fill_(logit)
    return [s for i, s in enumerate(strides) if i != finest]


def evaluate_weights(weights, root=None, split: str = "test", imgsz: int | str = 320, conf: float = EVAL_CONF,
                     radius: float = PD_RADIUS, limit: int | None = None, device: str = "cpu",
                     per_image: bool = False, by_area=None, finest_head_only: bool = False) -> dict:
    """Pd / Fa per image / median area ratio of ``weights`` on ``split`` of the SIRST-layout ``root``.

    ``imgsz``: the long side of the prediction input, or ``'native'`` (:func:`native_imgsz` of each image).
    ``per_image``: add ``per_image`` = [{name, orig_shape, imgsz, input_shape, targets, detections}].
    ``by_area``: bin edges (px²) for ``Pd_by_area`` (:meth:`BoxTargetMetrics.pd_by_area`); None leaves it out.
    ``finest_head_only``: score the weights with every coarser head silenced (:func:`silence_coarse_heads`)."""
    from ultralytics import YOLO

    if by_area is not None:
        BoxTargetMetrics().pd_by_area(by_area)  # bad edges fail here, before the model runs
    root = sirst_root(root)
    names = read_split(root, split)[: limit or None]
    model = YOLO(str(weights))
    silenced = silence_coarse_heads(model.model.model[-1]) if finest_head_only else []
    acc = BoxTargetMetrics(radius)
    inputs, rows, level_max = [], [], {}  # inputs: the network input (H, W) of the image being predicted
    hook = model.model.register_forward_pre_hook(lambda m, a: inputs.append(tuple(a[0].shape[-2:])))
    strides = [int(s) for s in model.model.stride.tolist()]
    for n in names:
        img = load_image(root, n)
        size = native_imgsz(*img.shape) if imgsz == "native" else imgsz
        inputs.clear()
        with kept_anchor_strides() as kept:
            res = model.predict(np.repeat(img[:, :, None], 3, axis=2), imgsz=size, conf=conf, iou=0.7, device=device,
                                verbose=False)[0]
        det, tgt = res.boxes.xyxy.cpu().numpy(), target_boxes(root, n)[0]
        a_strides = anchor_strides(inputs[-1], strides)
        det_strides = a_strides[kept.indices[-1]] if len(det) else np.zeros(0, int)
        if kept.scores and len(kept.scores[-1]) == len(a_strides):
            for s_ in strides:
                level_max.setdefault(str(s_), []).append(float(kept.scores[-1][a_strides == s_].max()))
        acc.update(det, tgt, det_strides=det_strides, det_scores=res.boxes.conf.cpu().numpy())
        if per_image:
            rows.append({"name": n, "orig_shape": list(img.shape), "imgsz": size,
                         "input_shape": list(inputs[-1]), "targets": len(tgt),
                         "detections": len(det)})
    hook.remove()
    rec = {**acc.result(), "weights": str(weights), "root": str(root), "split": split, "imgsz": imgsz,
           "conf": conf, "radius": radius}
    if finest_head_only:
        rec["silenced_strides"] = silenced
    rec["false_boxes"]["model_strides"] = strides
    if level_max:  # per head: the median over images of the image's best anchor score (does a head fire at all?)
        rec["false_boxes"]["level_max_score_median"] = {k: float(np.median(v)) for k, v in level_max.items()}
        rec["false_boxes"]["level_share_images_ge_conf"] = {k: float(np.mean(np.asarray(v) >= conf))
                                                           for k, v in level_max.items()}
    if by_area is not None:
        rec["Pd_by_area"] = acc.pd_by_area(by_area)
    if per_image:
        rec["per_image"] = rows
    return rec


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data-root", default=None, help="SIRST-layout folder (default: the shared SIRST v1)")
    ap.add_argument("--split", default="test")
    ap.add_argument("--imgsz", default="320", help="long side of the input, or 'native' (each image's own size)")
    ap.add_argument("--conf", type=float, default=EVAL_CONF)
    ap.add_argument("--radius", type=float, default=PD_RADIUS)
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--by-area", type=float, nargs="+", default=None, metavar="PX2",
                    help="also give Pd per bin of target box area, split at these areas in px² (e.g. 9 25 64)")
    ap.add_argument("--finest-head-only", action="store_true",
                    help="silence every head but the finest (P3-P5 of a P2 model) before predicting")
    ap.add_argument("--out", default=None, help="also write the figures to this JSON file")
    a = ap.parse_args(argv)
    if not Path(a.weights).is_file():
        raise SystemExit(f"--weights {a.weights} does not exist; pass the last.pt of a finished run")
    rec = evaluate_weights(a.weights, a.data_root, a.split, parse_imgsz(a.imgsz), a.conf, a.radius, a.limit,
                           by_area=a.by_area, finest_head_only=a.finest_head_only)
    print(json.dumps(rec, indent=1))
    if a.out:
        Path(a.out).write_text(json.dumps(rec, indent=1))
    return rec


if __name__ == "__main__":
    main()
