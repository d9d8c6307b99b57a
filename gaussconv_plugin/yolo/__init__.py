"""Ultralytics YOLO integration of the Gaussian-shaped convolution and the scale box loss.

After ``pip install gaussconv-plugin`` nothing needs importing: the auto-hook (:mod:`gaussconv_plugin._autohook`)
calls :func:`register` as soon as Ultralytics imports ``ultralytics.nn.tasks``. Then, with the stock CLI::

    yolo train model=yolo26n-p2-gauss.yaml data=sirst.yaml imgsz=320    # packaged config, scale n
    yolo train model=yolov8s-p2-base.yaml data=sirst.yaml               # baseline twin, P2 head, scale s

Packaged configs (source: ``yolo_cfgs/`` of the repository; list them with :func:`list_cfgs`), for YOLOv8, YOLO11
and YOLO26 (``V`` = ``yolov8``, ``yolo11``, ``yolo26``):

- ``V-gauss.yaml`` / ``V-base.yaml`` (P3–P5 head),
- ``V-p2-gauss.yaml`` / ``V-p2-base.yaml`` (P2–P5 head; ``yolo11-p2`` laid out as Ultralytics' ``yolo26-p2``).

``*-gauss`` uses ``GaussianShapedConv`` in backbone layers 0–1 (``scale_loss: none`` since issue 33; ``scale_loss:
diff`` adds the paper's scale term); the ``*-base`` twin is
the stock model (``Conv``, ``scale_loss: none``; YOLO26 keeps its end-to-end head, the scale term then sits in
both branches of ``E2ELoss``). Put a scale letter after the version (``yolov8n-gauss.yaml``) as
for stock configs. See :mod:`gaussconv_plugin.yolo.adapter` for what :func:`register` changes.

This package imports Ultralytics only inside :func:`register` (and the modules it names: :mod:`.internals`,
:mod:`.keys`, :mod:`.parse`, :mod:`.model`, :mod:`.loss`, :mod:`.optim`, :mod:`.registration`).
"""
from __future__ import annotations

from .configs import cfgs_dir, list_cfgs, packaged_cfg

__all__ = ["register", "cfgs_dir", "list_cfgs", "packaged_cfg"]


def register() -> None:
    """Make Ultralytics understand ``GaussianShapedConv`` and ``scale_loss`` (idempotent); see the adapter."""
    from .registration import register as _register

    _register()
