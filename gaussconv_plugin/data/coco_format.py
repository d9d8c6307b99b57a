"""SIRST (or an IRSTD-layout dataset such as NUDT-SIRST) → COCO detection json (one class ``Target``) for
MMDetection's ``CocoDataset`` and ``CocoMetric``.

Output of :func:`prepare_coco` (default ``out_dir``: ``cache_dir("sirst_coco", idx)``, e.g.
``~/.cache/gaussconv_plugin/sirst_coco/idx_427``; with ``limit``: ``.../idx_427-limit16``; an IRSTD folder:
``cache_dir("<root name>_coco", idx)``, e.g. ``.../nudt_sirst_coco/50_50``)::

    out_dir/annotations/<split>.json     COCO json per split
    out_dir/summary.json                 counts and the VOC-xml problems per split

Images are referenced by **absolute path to the original files** (``file_name``); nothing is copied.
MMDetection's ``LoadImageFromFile`` (``color_type='color'``, cv2 ``IMREAD_COLOR``) decodes all four PNG modes
of SIRST (L, RGB, RGBA, palette) to 3-channel BGR whose gray value equals :func:`load_image` (checked by
``tests/test_mmdet_data.py``): palette files are expanded through their palette, RGBA drops alpha as PIL does.
Some files carry an iCCP profile that libpng warns about on stderr; the warning is harmless. Every image is
decoded once here (:func:`~gaussconv_plugin.data.sirst.load_image`), so a corrupt or truncated file fails now, in
one line naming it, not in the middle of a training run.

Boxes come from the mask's 8-connected components (:func:`~gaussconv_plugin.data.sirst.target_boxes`), the
ground truth used everywhere in this project; the VOC xml files (SIRST v1 only) are only cross-checked and their
problems counted. COCO ``bbox`` is ``[x, y, w, h]`` in pixel-edge coordinates (a target covering columns 3..5 has
``x = 3, w = 3``); ``area = w·h``. Category id 1, name ``Target``.

The function is idempotent: a json whose content would not change is not rewritten (its mtime stays), and
files are written atomically (safe when several distributed workers prepare the same directory). Every split is
read before anything is written: bad data (see :mod:`gaussconv_plugin.data.sirst`) leaves ``out_dir`` as it was.
A split an earlier conversion wrote and this one does not name stays (and stays listed in ``summary.json``) only
where both read the same source (root, split folder, limit); otherwise its json is removed.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Iterable


from .layout import default_splits, detect_layout, idx_label, mask_path, split_folders
from .sirst import (
    cache_dir, cache_label, check_out_dir, conversion_lock, load_image, read_split, sirst_root, target_boxes,
)

__all__ = ["prepare_coco", "coco_dict", "CLASSES", "default_coco_dir"]

CLASSES = ("Target",)


def default_coco_dir(idx: str = "idx_427", limit: int | None = None, dataset: str = "sirst") -> Path:
    """Default output folder of :func:`prepare_coco` (the one the ``mmdet_cfgs`` configs read by default):
    ``cache_dir("<dataset>_coco", idx[-limitN])``; ``dataset`` is the source's
    :func:`~gaussconv_plugin.data.sirst.cache_label` (``sirst`` for the default SIRST v1 folder)."""
    return cache_dir(f"{dataset}_coco", idx if limit is None else f"{idx}-limit{int(limit)}")


def coco_dict(root: str | os.PathLike, names: Iterable[str], description: str = "") -> tuple[dict, dict]:
    """COCO detection dict for the images ``names`` of the dataset folder ``root`` (either layout), and a summary.

    Returns:
        ``(coco, summary)`` with ``summary = {"images", "boxes", "images_with_voc_problems",
        "voc_problems": {name: [problem, ...]}}``.
    """
    root = Path(root).resolve()
    layout = detect_layout(root)
    images, annotations, problems = [], [], {}
    for img_id, name in enumerate(names, start=1):
        path = root / "images" / f"{name}.png"
        if not path.is_file():
            raise FileNotFoundError(f"image {path} not found; add it or drop {name!r} from the names/split list")
        height, width = load_image(root, name).shape  # decoded in full: a corrupt file fails here, in one line
        images.append(dict(id=img_id, file_name=str(path), width=width, height=height, sirst_name=name))
        boxes, probs = target_boxes(root, name, layout=layout)
        if probs:
            problems[name] = probs
        for x1, y1, x2, y2 in boxes.tolist():
            w, h = x2 - x1, y2 - y1
            annotations.append(dict(
                id=len(annotations) + 1, image_id=img_id, category_id=1, bbox=[x1, y1, w, h], area=w * h,
                iscrowd=0,
            ))
    coco = dict(
        info=dict(description=description or f"SIRST as COCO from {root}", version="1.0",
                  boxes=f"8-connected components of {mask_path('', '<name>', layout).as_posix()}, "
                        "pixel-edge coordinates"),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[dict(id=1, name=CLASSES[0], supercategory="target")],
    )
    summary = dict(images=len(images), boxes=len(annotations), images_with_voc_problems=len(problems),
                   voc_problems=problems)
    return coco, summary


def _write_if_changed(path: Path, text: str) -> bool:
    """Atomically write ``text`` to ``path`` unless it already holds exactly that; True if written."""
    if path.is_file() and path.read_text() == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache is meant to be shared like any other file
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return True


def prepare_coco(
    root: str | os.PathLike | None = None,
    out_dir: str | os.PathLike | None = None,
    splits: Iterable[str] | None = None,
    idx: str | None = None,
    limit: int | None = None,
    verbose: bool = True,
) -> Path:
    """Write ``out_dir/annotations/<split>.json`` for each split of a dataset (see the module docstring).

    Args:
        root: dataset folder, either layout (``images/``, ``masks/``, split folders); default :func:`sirst_root`.
        out_dir: output folder (never inside ``root``); default :func:`default_coco_dir` ``(idx, limit)``.
        splits: split names of ``root/idx/<split>.txt``; default (None) ``trainval, test`` (IRSTD: ``train, test``).
        idx: split folder, ``idx_427`` or ``idx_320`` (NUDT-SIRST ``50_50``); None = the layout's default.
        limit: keep only the first ``limit`` images of each split (small test subsets).
        verbose: print one line per split (images, boxes, VOC problems).

    Returns:
        ``out_dir`` (absolute). Use it as ``data_root`` of the ``mmdet_cfgs`` configs, or export it as
        ``GAUSSCONV_SIRST_COCO`` (they read that variable).
    """
    if limit is not None and int(limit) < 1:
        raise ValueError(f"limit must be a positive number of images (got {limit!r}); pass limit=None for all")
    root = sirst_root(root).resolve()
    layout = detect_layout(root)
    splits = tuple(default_splits(layout, root) if splits is None else splits)
    folders = split_folders(root, splits, idx, layout)
    idx = idx_label(folders)
    out = Path(out_dir) if out_dir is not None else default_coco_dir(idx, limit, cache_label(root))
    out = out.resolve()
    if out == root or root in out.parents:
        raise ValueError(f"out_dir {out} lies inside the read-only dataset {root}; choose a cache or temp folder")
    check_out_dir(out, ("annotations",), "summary.json")
    summaries, cocos = {}, {}
    for split in splits:  # read every split first: bad data leaves out_dir as it was
        names = read_split(root, split, folders[split])
        if limit is not None:
            names = names[: int(limit)]
        label = "SIRST" if layout == "sirst" else root.name
        desc = f"{label} {folders[split]}/{split} as COCO (from {root})"
        cocos[split], summaries[split] = coco_dict(root, names, desc)
    with conversion_lock(out):  # another process converting into out waits (distributed workers: same files)
        for split, coco in cocos.items():
            summary = summaries[split]
            _write_if_changed(out / "annotations" / f"{split}.json", json.dumps(coco, indent=1) + "\n")
            if verbose:
                print(
                    f"prepare_coco: {split}: {summary['images']} images, {summary['boxes']} boxes, VOC xml problems "
                    f"in {summary['images_with_voc_problems']} images -> {out / 'annotations' / f'{split}.json'}"
                )
        meta = dict(root=str(root), idx=idx, limit=limit, splits=summaries)
        if layout != "sirst":
            meta["layout"] = layout
        meta["splits"] = {**_other_splits(out, meta), **summaries}
        _write_if_changed(out / "summary.json", json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return out


def _other_splits(out: Path, meta: dict) -> dict:
    """The splits an earlier conversion into ``out`` wrote that this one (``meta``) does not name: kept (with their
    summaries) where that conversion read the same source (root, idx, limit, layout), deleted where it read another,
    so a folder never holds one dataset's ``train.json`` beside another's ``test.json``."""
    try:
        old = json.loads((out / "summary.json").read_text())
    except (OSError, ValueError):
        return {}
    same = all(old.get(k) == meta.get(k) for k in ("root", "idx", "limit", "layout"))
    kept = {}
    for split, summary in (old.get("splits") or {}).items():
        path = out / "annotations" / f"{split}.json"
        if split in meta["splits"] or not path.is_file():
            continue
        if same:
            kept[split] = summary
        else:
            path.unlink()
    return kept
