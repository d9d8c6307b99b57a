"""Environment for running Ultralytics with no network (tests, CI, air-gapped machines). Stdlib only.

What Ultralytics 8.4 would otherwise reach for, and the switch that stops it:

- ``YOLO_OFFLINE=1``: ``is_online()`` is False without DNS probes, so no update checks, no analytics/Sentry,
  and ``check_requirements`` does not try an AutoUpdate.
- ``YOLO_AUTOINSTALL=false``: never ``pip install`` a missing requirement (e.g. ``onnxslim`` for
  ``export simplify=True``: export with ``simplify=False`` where it is not installed).
- ``YOLO_CONFIG_DIR``: where ``settings.json`` lives (``<dir>/Ultralytics/``). ``check_dataset`` always calls
  ``check_font('Arial.ttf')``, which ignores ``YOLO_OFFLINE`` and sends a HEAD request to GitHub when the font is
  not in ``<dir>/Ultralytics/``; :func:`ensure_fonts` puts matplotlib's DejaVuSans there under the names
  Ultralytics asks for, so no request is made. Plots need nothing else (cv2/matplotlib), so ``plots=True`` works.
- ``MPLBACKEND=Agg``: no display.
"""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

__all__ = ["OFFLINE_VARS", "default_config_dir", "ensure_fonts", "offline_env"]

OFFLINE_VARS = {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "HF_HUB_OFFLINE": "1", "MPLBACKEND": "Agg"}
FONT_NAMES = ("Arial.ttf", "Arial.Unicode.ttf")


def ensure_fonts(config_dir) -> Path:
    """Copy matplotlib's bundled DejaVuSans to ``<config_dir>/Ultralytics/{Arial,Arial.Unicode}.ttf`` if missing.

    Returns the Ultralytics settings folder ``<config_dir>/Ultralytics``."""
    d = Path(config_dir) / "Ultralytics"
    d.mkdir(parents=True, exist_ok=True)
    missing = [n for n in FONT_NAMES if not (d / n).is_file()]
    if missing:
        import matplotlib  # ultralytics depends on it

        src = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
        if not src.is_file():
            raise FileNotFoundError(f"{src} missing: reinstall matplotlib (pip install --force-reinstall matplotlib)")
        for n in missing:
            shutil.copyfile(src, d / n)
    return d


def default_config_dir() -> Path:
    """``$YOLO_CONFIG_DIR`` if set, else ``<venv>/ultralytics`` (what ``make setup`` writes), else
    ``~/.cache/gaussconv_plugin/ultralytics``."""
    if os.environ.get("YOLO_CONFIG_DIR"):
        return Path(os.environ["YOLO_CONFIG_DIR"])
    venv = Path(sys.prefix) / "ultralytics"
    if venv.is_dir():
        return venv
    base = os.environ.get("GAUSSCONV_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gaussconv_plugin")
    return Path(base, "ultralytics")


def offline_env(config_dir=None, base: dict | None = None, threads: int | None = None) -> dict[str, str]:
    """A copy of ``base`` (default ``os.environ``) with the offline switches above and
    ``YOLO_CONFIG_DIR=config_dir`` (default :func:`default_config_dir`; created, with stand-in fonts); with
    ``threads``, also ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/``OPENBLAS_NUM_THREADS`` for child processes."""
    config_dir = default_config_dir() if config_dir is None else config_dir
    env = dict(os.environ if base is None else base)
    env.update(OFFLINE_VARS)
    if threads is not None:
        env.update({k: str(int(threads)) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")})
    env["YOLO_CONFIG_DIR"] = str(Path(config_dir).resolve())
    ensure_fonts(config_dir)
    return env
