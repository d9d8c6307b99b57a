"""Default schedule and sizes of each part of the ablation (the ``tools/ablation.py`` options they back).

The runs that used them are published in ``docs/ablation`` (each table states its schedule):

- YOLOv8n-P2: 15 epochs at imgsz 320, batch 16 — the screens and the final SIRST v1 table
  (``docs/ablation/screen_v2_train_val``, ``docs/ablation/final_v2_trainval_test``);
  ``docs/ablation/screen_long_train_val`` shows that 15 epochs rank how fast a variant starts (40 there);
- MSHNet U-Net: 15 epochs on SIRST v1 (``docs/ablation/unet_trainval_test``);
- RetinaNet-R18: 12 epochs, batch 4 (the measurement below; ``docs/ablation/retina_trainval_test`` ran 24).

Plain data, importing nothing of the evidence tool: the parts and the command line read it.
"""
from __future__ import annotations

__all__ = ["YOLO", "UNET", "RETINA", "ALL"]

#: YOLOv8n part (``--yolo-epochs``, ``--imgsz``, ``--batch``, ``--yolo-arch``)
YOLO = {"yolo_epochs": 15, "imgsz": 320, "batch": 16, "yolo_arch": "p2"}
#: MSHNet U-Net part (``--unet-epochs``)
UNET = {"unet_epochs": 15}
#: RetinaNet-R18 part (``--retina-epochs``; batch of the configs). Default epochs: half the configs' 24 (LR steps
#: after epochs 8 and 11). Measured: 98 s per epoch of train:val (255 images = 64 iterations + validation on the 85
#: val images; 91 s and 106 s) on one CPU thread beside two YOLO trainings on a 2-core machine, so ~20 min per run;
#: stock reached mAP50 0.04 / 0.15 on val after epochs 1 / 2, so 12 epochs is well past the start-up phase for
#: ranking the variants
RETINA = {"retina_epochs": 12, "retina_batch": 4}
#: every part's defaults in one mapping (the keys do not overlap)
ALL = {**YOLO, **UNET, **RETINA}
