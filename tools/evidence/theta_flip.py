"""How much a trained YOLO twin depends on the sign of its pinwheel angles θ (issue 33).

θ = 0 is a flip of the hard pinwheel (:func:`gaussconv_plugin.masks.mask_flip_angles`): a channel with θ < 0 carries
the plus, θ ≥ 0 the X (k = 3). A stem trained from ``theta_init=0`` ends with |θ| of a fraction of a degree on
both sides. This scores the checkpoint with θ as trained, with every θ turned to ``|θ|`` (every channel the X:
only the channels below 0 change), to ``-|θ|`` (every channel the plus) and to ``'mid'``
(:func:`~gaussconv_plugin.masks.default_theta`, the X again), and prints the sign census per layer::

    python -m tools.evidence.theta_flip --weights RUN/train/weights/last.pt --data DATA.yaml [--imgsz 320]

``DATA.yaml``: a YOLO dataset file, e.g. the validation pair that ``tools/ablation.py`` converts into the cache
(``~/.cache/gaussconv_plugin/sirst_yolo_train-val/data.yaml``). Only a validation split should be read.
"""
from __future__ import annotations

import argparse
import math

__all__ = ["THETA_MAPS", "theta_census", "main"]


def _mid(t):
    import torch

    from gaussconv_plugin.masks import default_theta

    return torch.full_like(t, default_theta(3))


#: name -> map applied to every θ tensor of the model
THETA_MAPS = {
    "trained": lambda t: t,
    "all X (|θ|)": lambda t: t.abs(),
    "all plus (-|θ|)": lambda t: -t.abs().clamp_min(1e-4),
    "mid": _mid,
}


def theta_census(model) -> list[dict]:
    """Per Gaussian layer: channels, how many have θ < 0, and the median |θ| in degrees."""
    out = []
    for n, p in model.named_parameters():
        if n.endswith("theta"):
            d = p.detach().float() * (180 / math.pi)
            out.append({"layer": n, "channels": d.numel(), "below_0": int((d < 0).sum()),
                        "median_abs_deg": float(d.abs().median())})
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--weights", required=True)
    ap.add_argument("--data", required=True, help="YOLO dataset yaml (its val split is scored)")
    ap.add_argument("--imgsz", type=int, default=320)
    a = ap.parse_args(argv)
    import torch
    from ultralytics import YOLO

    import gaussconv_plugin.yolo  # noqa: F401  (registers the modules a checkpoint names)

    for row in theta_census(YOLO(a.weights).model):
        print(f"{row['layer']}: {row['below_0']} of {row['channels']} channels below 0, "
              f"median |θ| {row['median_abs_deg']:.2f}°")
    for name, f in THETA_MAPS.items():
        m = YOLO(a.weights)
        with torch.no_grad():
            for n, p in m.model.named_parameters():
                if n.endswith("theta"):
                    p.copy_(f(p))
        r = m.val(data=a.data, imgsz=a.imgsz, batch=16, device="cpu", plots=False, verbose=False, workers=0)
        print(f"{name:16s} mAP50 {r.box.map50:.4f}  P {r.box.mp:.3f}  R {r.box.mr:.3f}", flush=True)


if __name__ == "__main__":
    main()
