"""Ultralytics YOLO integration of the Gaussian-shaped convolution and the scale box loss.

After ``pip install gaussconv-plugin`` nothing needs importing: the auto-hook (:mod:`gaussconv_plugin._autohook`)
calls :func:`register` as soon as Ultralytics imports ``ultralytics.nn.tasks``. Then, with the stock CLI::

    yolo train model=yolov8n-gauss.yaml data=sirst.yaml imgsz=320       # packaged config, scale n
    yolo train model=yolov8s-p2-base.yaml data=sirst.yaml               # baseline twin, P2 head, scale s

Packaged configs (source: ``yolo_cfgs/`` of the repository; list them with :func:`list_cfgs`):

- ``yolov8-gauss.yaml`` / ``yolov8-base.yaml`` (P3–P5 head),
- ``yolov8-p2-gauss.yaml`` / ``yolov8-p2-base.yaml`` (P2–P5 head).

``*-gauss`` uses ``GaussianShapedConv`` in backbone layers 0–1 and ``scale_loss: diff``; the ``*-base`` twin is
stock YOLOv8 (``Conv``, ``scale_loss: none``). Put a scale letter after the version (``yolov8n-gauss.yaml``) as
for stock configs. See :mod:`gaussconv_plugin.yolo.adapter` for what :func:`register` changes.

This package imports Ultralytics only inside :func:`register` (and the adapter).
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["register", "cfgs_dir", "list_cfgs", "packaged_cfg"]


def register() -> None:
    """Make Ultralytics understand ``GaussianShapedConv`` and ``scale_loss`` (idempotent); see the adapter."""
    from .adapter import register as _register

    _register()


def cfgs_dir() -> Path:
    """Folder of the packaged model YAMLs.

    Installed wheel: ``gaussconv_plugin/yolo/cfgs`` (found with :mod:`importlib.resources`). Editable install or
    source checkout: ``yolo_cfgs/`` at the repository root (the source of truth)."""
    try:
        res = importlib.resources.files("gaussconv_plugin.yolo") / "cfgs"
        if res.is_dir():
            return Path(str(res))
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - unusual loaders
        pass
    src = Path(__file__).resolve().parents[2] / "yolo_cfgs"
    if src.is_dir():
        return src
    raise FileNotFoundError(
        "gaussconv_plugin's YOLO configs are missing (neither gaussconv_plugin/yolo/cfgs nor yolo_cfgs/ exists); "
        "reinstall with: pip install --force-reinstall gaussconv-plugin"
    )


def list_cfgs() -> list[str]:
    """File names of the packaged model YAMLs, sorted (e.g. ``['yolov8-base.yaml', 'yolov8-gauss.yaml', ...]``)."""
    return sorted(p.name for p in cfgs_dir().glob("*.yaml"))


def packaged_cfg(file) -> Path | None:
    """Path of the packaged YAML named ``file`` (a bare file name such as ``yolov8-gauss.yaml``), else None.

    Names with a folder part (``cfgs/x.yaml``) are never redirected: a path means the user's own file."""
    name = str(file).strip()
    if not name or Path(name).name != name:
        return None
    try:
        p = cfgs_dir() / name
    except FileNotFoundError:
        return None
    return p if p.is_file() else None
