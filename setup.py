"""Packaging extras that pyproject.toml cannot express (all metadata lives in pyproject.toml).

``build_py`` is extended to

1. put ``gaussconv_plugin_autohook.pth`` at the root of site-packages, so that the stock ``yolo`` CLI and
   ``from ultralytics import YOLO`` find ``GaussianShapedConv`` without importing this package (see
   ``gaussconv_plugin/_autohook.py``; its stdlib-only ``pth_line()`` gives the file's one line, so no ``*.pth``
   file lives in the repository). A regular build writes it into ``build_lib`` (the wheel root); an editable
   build (PEP 660, ``pip install -e .``) writes it into the editable wheel's root (``install_lib``), which
   setuptools packs next to its own ``__editable__*.pth`` (ours sorts after it, so the package is findable);
2. copy the model configs ``yolo_cfgs/*.yaml`` (their source stays at the top level of the repository) into
   ``gaussconv_plugin/yolo/cfgs/`` of the wheel, where ``importlib.resources`` finds them. An editable install
   reads them from ``yolo_cfgs/`` of the checkout instead (``gaussconv_plugin.yolo.cfgs_dir``).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py as _build_py

HERE = Path(__file__).resolve().parent


def _autohook():
    """``gaussconv_plugin/_autohook.py`` loaded on its own (stdlib only; the package needs torch)."""
    spec = importlib.util.spec_from_file_location("_gaussconv_autohook_build", HERE / "gaussconv_plugin" / "_autohook.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_HOOK = _autohook()
PTH = _HOOK.PTH_NAME
CFG_SRC = HERE / "yolo_cfgs"
CFG_DST = Path("gaussconv_plugin", "yolo", "cfgs")


class build_py(_build_py):
    """``build_py`` that also ships the auto-hook ``.pth`` and the YOLO model YAMLs."""

    def run(self):
        super().run()
        if getattr(self, "editable_mode", False):
            # editable_wheel points install_lib at the directory that becomes the wheel's root
            root = self.get_finalized_command("install").install_lib
            self._write_pth(root)
            return
        self._write_pth(self.build_lib)
        dst = Path(self.build_lib, CFG_DST)
        self.mkpath(str(dst))
        for f in sorted(CFG_SRC.glob("*.yaml")):
            self.copy_file(str(f), str(dst / f.name), preserve_mode=0)

    def _write_pth(self, folder: str) -> None:
        self.mkpath(folder)
        target = os.path.join(folder, PTH)
        self.announce(f"writing {target}", level=2)
        if not self.dry_run:
            with open(target, "w", encoding="utf-8") as f:
                f.write(_HOOK.pth_line() + "\n")

    def get_outputs(self, include_bytecode=1):
        outs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outs.append(os.path.join(self.build_lib, PTH))
            outs += [str(Path(self.build_lib, CFG_DST, f.name)) for f in sorted(CFG_SRC.glob("*.yaml"))]
        return outs


setup(cmdclass={"build_py": build_py})
