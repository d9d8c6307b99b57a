"""Where the packaged YOLO model YAMLs live, and the bare-name look-up into them (stdlib only).

Installed wheel: ``gaussconv_plugin/yolo/cfgs/`` (``setup.py`` copies ``yolo_cfgs/*.yaml`` there). Editable install
or source checkout: ``yolo_cfgs/`` at the repository root, the source of truth.
"""
from __future__ import annotations

import importlib.resources
from pathlib import Path

__all__ = ["cfgs_dir", "list_cfgs", "packaged_cfg"]


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
