"""Convert a dataset in the SIRST v1 or the IRSTD layout (NUDT-SIRST, IRSTD-1k; see
:mod:`gaussconv_plugin.data.layout`) to an Ultralytics YOLO detection dataset (read-only on the source).

Output layout (``out_dir``)::

    images/train/<name>.png   labels/train/<name>.txt     # from the source split ``trainval`` (IRSTD: ``train``)
    images/val/<name>.png     labels/val/<name>.txt       # from the source split ``test``
    data.yaml                 manifest.json               voc_problems.txt

- **Splits.** SIRST v1 is normally used as trainval (train + val, 341 images) for training and test (86) for
  evaluation; there is no separate held-out validation set in the standard protocol. So YOLO's ``train`` is
  ``trainval`` and YOLO's ``val`` (what ``yolo val`` and the per-epoch validation report) is ``test``;
  ``data.yaml`` also names it ``test``. An IRSTD folder's default is train ← ``train``, val ← ``test``
  (NUDT-SIRST: 663 / 664 images; its committed validation carve: ``splits=(("train", "train_sub"),
  ("val", "val_sub"), ("test", "test"))``). Other pairs can be given with ``splits``.
- **Image size.** ``data.yaml`` notes the images' long side (NUDT-SIRST: all 256 × 256, so train and
  validate with ``imgsz=256``); ``manifest.json`` records it as ``long_side: [min, max]``.
- **Images.** Every input mode (L, RGB, RGBA, palette; content is IR grayscale) is read with
  :func:`~gaussconv_plugin.data.sirst.load_image` → ``(H, W)`` uint8 and written as an 8-bit grayscale PNG
  (``channels=1``, default; Ultralytics' loader reads it as 3 equal channels) or as a 3-channel RGB PNG
  (``channels=3``). Rewriting drops the iCCP profiles libpng warns about.
- **Labels.** One line per target ``0 cx cy w h`` (class 0 ``Target``, normalised by the image width/height,
  6 decimals) from the mask's 8-connected components (:func:`~gaussconv_plugin.data.sirst.target_boxes`,
  pixel-edge xyxy). An image without a target gets an empty label file (a background image for YOLO).
- **VOC check.** The images whose ``masks/<name>.xml`` boxes disagree with the mask components (SIRST's VOC
  boxes are approximate) are counted in ``manifest.json`` and listed with their problems in
  ``voc_problems.txt``; the labels always come from the masks. IRSTD folders have no xml: nothing to check.
- **Idempotent.** ``manifest.json`` records the parameters and the source — the names of every split and the size
  and modification time of every image and mask it read (:func:`source_stamp`), and the converter's own code
  (:func:`converter_stamp`) — so a second call returns at once only while all of that is unchanged and the folder is
  where it was written. A name dropped from a split list, an
  edited mask or a moved folder rebuilds the ``images/``, ``labels/`` folders (and Ultralytics' ``*.cache`` files
  in them).
- **One at a time.** A conversion holds ``out_dir``'s lock file (:func:`~gaussconv_plugin.data.sirst.conversion_lock`,
  kept as the folder's mark of ownership): a second one into the same folder waits and then finds the first's
  result; a folder an interrupted conversion left (no ``manifest.json``) is converted again, not refused.
- **All or nothing.** The new ``images/`` and ``labels/`` are written to a staging folder inside ``out_dir`` and
  swapped in only when every image, mask and split list has been read: bad data (a missing, corrupt or truncated
  file, a mask of another aspect ratio, see :mod:`gaussconv_plugin.data.sirst`) raises one line naming the file
  and leaves ``out_dir`` as it was (a previous conversion stays whole and usable).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from .layout import default_splits, detect_layout, idx_label, image_path, mask_path, split_folders
from .sirst import (
    cache_dir, cache_label, check_out_dir, conversion_lock, load_image, read_split, sirst_root, target_boxes,
)

__all__ = [
    "prepare_yolo", "boxes_to_yolo_lines", "read_manifest", "default_yolo_splits", "source_stamp", "converter_stamp",
    "DEFAULT_SPLITS",
]

#: SIRST v1's default ``((yolo_split, source_split), ...)``
DEFAULT_SPLITS = (("train", "trainval"), ("val", "test"))
#: the modules whose code decides what a conversion writes (images, boxes, labels, split lists)
_CONVERTER_MODULES = ("yolo_format.py", "sirst.py", "layout.py", "split_lists.py")


def converter_stamp() -> str:
    """SHA-1 of the code that decides a conversion's output (:data:`_CONVERTER_MODULES`, this package's files): a
    changed rule (how boxes are drawn, how a mask is read) rebuilds every converted folder, without a version number
    that a change has to remember to bump."""
    h = hashlib.sha1()
    here = Path(__file__).resolve().parent
    for name in _CONVERTER_MODULES:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    return h.hexdigest()


def default_yolo_splits(layout: str, root=None) -> tuple[tuple[str, str], ...]:
    """Default ``((yolo_split, source_split), ...)`` of a layout: train ← trainval (IRSTD: train, or trainval where
    ``root``'s lists hold no train, as IRSTD-1k's), val ← test."""
    train, ev = default_splits(layout, root)
    return (("train", train), ("val", ev))


def boxes_to_yolo_lines(boxes: np.ndarray, width: int, height: int, cls: int = 0) -> list[str]:
    """``(K, 4)`` pixel-edge xyxy boxes of a ``width × height`` image → YOLO lines ``"cls cx cy w h"`` (normalised).

    Boxes are clipped to the image first; zero-area boxes are dropped."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive (got {width}x{height})")
    b = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    b[:, [0, 2]] = b[:, [0, 2]].clip(0, width)
    b[:, [1, 3]] = b[:, [1, 3]].clip(0, height)
    lines = []
    for x1, y1, x2, y2 in b:
        w, h = x2 - x1, y2 - y1
        if w <= 0 or h <= 0:
            continue
        lines.append(
            f"{cls} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} {w / width:.6f} {h / height:.6f}"
        )
    return lines


def read_manifest(out_dir) -> dict:
    """The ``manifest.json`` of a converted folder (``{}`` if absent or unreadable)."""
    try:
        return json.loads((Path(out_dir) / "manifest.json").read_text())
    except (OSError, ValueError):
        return {}


def _yaml_str(s: str) -> str:
    return json.dumps(str(s))  # a JSON string is a valid YAML scalar (quotes any odd character)


def source_stamp(root: Path, names: dict[str, list[str]], layout: str) -> str:
    """SHA-1 of the split names (in order) and of each named image's and mask's size and modification time: what a
    conversion read. Changes when a split list changes, or an image or mask is replaced or edited."""
    h = hashlib.sha1()
    for ys, ns in names.items():
        h.update(f"[{ys}]\n".encode())
        for n in ns:
            stats = []
            for f in (image_path(root, n), mask_path(root, n, layout)):
                try:
                    st = f.stat()
                    stats.append(f"{st.st_size}:{st.st_mtime_ns}")
                except OSError:
                    stats.append("-")
            h.update(f"{n}\t{' '.join(stats)}\n".encode())
    return h.hexdigest()


def prepare_yolo(
    root=None,
    out_dir=None,
    splits=None,
    idx: str | None = None,
    limit: int | None = None,
    channels: int = 1,
) -> Path:
    """Convert ``root`` (SIRST v1 or IRSTD layout) to a YOLO dataset in ``out_dir``; returns the path of ``data.yaml``.

    Args:
        root: dataset folder (default :func:`~gaussconv_plugin.data.sirst.sirst_root`).
        out_dir: output folder (default ``cache_dir("<label>_yolo")``, ``label`` the source's
            :func:`~gaussconv_plugin.data.sirst.cache_label`: ``sirst_yolo`` for the default SIRST v1 folder,
            ``nudt_sirst_yolo`` / ``irstd1k_yolo`` for the shared ones, ``<name>-<path hash>_yolo`` for others;
            ``-limit<N>`` added with ``limit``, as COCO's); never inside the source.
        splits: ``((yolo_split, source_split), ...)``; default (None) train ← trainval (IRSTD: train), val ← test.
        idx: split folder of the source (``idx_427`` or ``idx_320``; NUDT-SIRST ``50_50``); None = the layout's
            default (:func:`~gaussconv_plugin.data.layout.default_idx`).
        limit: keep only the first ``limit`` names of each source split (small subsets for tests); None = all.
        channels: 1 (grayscale PNG, default) or 3 (RGB PNG).

    Returns:
        absolute path of ``data.yaml`` (absolute ``path``/``train``/``val``/``test`` entries, ``names: {0: Target}``).
    """
    root = sirst_root(root).resolve()
    layout = detect_layout(root)
    out = Path(out_dir).expanduser().resolve() if out_dir is not None else cache_dir(
        f"{cache_label(root)}_yolo" + (f"-limit{int(limit)}" if limit else "")).resolve()
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (gray PNG) or 3 (RGB PNG), got {channels!r}")
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be a positive number of images per split (got {limit!r}); omit it for all")
    if out == root or root in out.parents:
        raise ValueError(f"out_dir {out} lies inside the read-only dataset {root}; choose a cache or temp folder")
    check_out_dir(out, ("images", "labels", "data.yaml"), "manifest.json")
    splits = tuple((str(a), str(b)) for a, b in (default_yolo_splits(layout, root) if splits is None else splits))
    dup = sorted({ys for ys, _ in splits if [y for y, _ in splits].count(ys) > 1})
    if dup:
        raise ValueError(f"splits name the YOLO split {', '.join(map(repr, dup))} twice; give each (e.g. train, val) "
                         "one source split")
    folders = split_folders(root, [ss for _, ss in splits], idx, layout)
    idx = idx_label(folders)
    names = {ys: read_split(root, ss, folders[ss])[: int(limit) if limit else None] for ys, ss in splits}
    params = {
        "code": converter_stamp(), "root": str(root), "idx": idx, "splits": [list(s) for s in splits],
        "limit": limit, "channels": channels, "source": source_stamp(root, names, layout),
    }
    data_yaml = out / "data.yaml"
    with conversion_lock(out):  # one conversion into a folder at a time; a failed first one leaves no folder
        return _convert_locked(out, data_yaml, root, layout, idx, splits, names, params, limit, channels)


def _convert_locked(out, data_yaml, root, layout, idx, splits, names, params, limit, channels) -> Path:
    """:func:`prepare_yolo`'s conversion, under :func:`~gaussconv_plugin.data.sirst.conversion_lock`."""
    old = read_manifest(out)
    if old.get("params") == params and old.get("data_yaml") == str(data_yaml) and data_yaml.is_file() and all(
        (out / "images" / ys / f"{n}.png").is_file() and (out / "labels" / ys / f"{n}.txt").is_file()
        for ys, ns in names.items() for n in ns
    ):
        return data_yaml

    stage = Path(tempfile.mkdtemp(prefix=".staging.", dir=out))  # swapped in only once every file was read
    problems: dict[str, list[str]] = {}
    counts: dict[str, dict[str, int]] = {}
    sides: list[int] = []
    try:
        for ys, ns in names.items():
            (stage / "images" / ys).mkdir(parents=True, exist_ok=True)
            (stage / "labels" / ys).mkdir(parents=True, exist_ok=True)
            n_obj = n_bg = 0
            for n in ns:
                img = load_image(root, n)  # (H, W) uint8
                h, w = img.shape
                sides.append(max(h, w))
                boxes, probs = target_boxes(root, n, layout=layout)
                if probs:
                    problems[n] = probs
                lines = boxes_to_yolo_lines(boxes, w, h)
                n_obj += len(lines)
                n_bg += not lines
                im = Image.fromarray(img, mode="L")
                (im if channels == 1 else im.convert("RGB")).save(stage / "images" / ys / f"{n}.png")
                (stage / "labels" / ys / f"{n}.txt").write_text("".join(f"{ln}\n" for ln in lines))
            counts[ys] = {"images": len(ns), "targets": n_obj, "background_images": n_bg}
        (out / "manifest.json").unlink(missing_ok=True)  # from here on the old conversion is replaced
        for sub in ("images", "labels"):
            shutil.rmtree(out / sub, ignore_errors=True)
            (stage / sub).replace(out / sub)
    finally:
        shutil.rmtree(stage, ignore_errors=True)

    ysplits = dict(splits)
    val_key = "val" if "val" in ysplits else splits[-1][0]
    long_side = [min(sides), max(sides)]
    lines = [
        f"# {'SIRST' if layout == 'sirst' else root.name} ({idx}, {layout} layout) as a YOLO detection dataset, "
        "written by gaussconv_plugin.data.yolo_format.prepare_yolo",
        f"# source (read-only): {root}",
        "# splits: " + ", ".join(f"{ys} <- {ss}" for ys, ss in splits)
        + (f"; limit {limit} per split" if limit else ""),
        f"# long side of the images: {long_side[0]}..{long_side[1]} px"
        + (f" (one size: train/val with imgsz={long_side[0]})" if long_side[0] == long_side[1] else ""),
        f"path: {_yaml_str(out)}",
    ]
    for ys, _ in splits:
        lines.append(f"{ys}: {_yaml_str(out / 'images' / ys)}")
    if "test" not in ysplits:
        lines.append(f"test: {_yaml_str(out / 'images' / val_key)}")
    for key in ("train", "val"):  # Ultralytics' check_det_dataset needs both keys (an evaluation-only conversion)
        if key not in ysplits:
            lines.append(f"{key}: {_yaml_str(out / 'images' / val_key)}")
    # no `channels:` key: Ultralytics' default (3) reads gray PNGs as 3 equal channels and builds 3-channel models
    lines += ["nc: 1", "names:", "  0: Target", ""]
    data_yaml.write_text("\n".join(lines))
    (out / "voc_problems.txt").write_text(
        "".join(f"{n}: {'; '.join(p)}\n" for n, p in sorted(problems.items()))
    )
    manifest = {
        "params": params, "layout": layout, "long_side": long_side, "counts": counts,
        "n_voc_problem_images": len(problems),
        "voc_problem_images": sorted(problems), "data_yaml": str(data_yaml),
    }
    tmp = out / f".manifest.{os.getpid()}.json"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(out / "manifest.json")
    return data_yaml
