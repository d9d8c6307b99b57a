"""Tell the on-disk layout of an infrared small-target dataset folder: where its masks and split lists lie.

Two layouts are read; images are ``images/<name>.png`` in both:

=========  ================================  ================================  ======================================
layout     mask of image ``<name>``          VOC boxes                         split lists (``idx`` folder)
=========  ================================  ================================  ======================================
``sirst``  ``masks/<name>_pixels0.png``      ``masks/<name>.xml`` (optional)   ``idx_427/`` (default) or ``idx_320/``
``irstd``  ``masks/<name>.png``              none                              the one sub-folder holding
                                                                               ``<split>.txt`` (NUDT-SIRST: ``50_50/``;
                                                                               IRSTD-1k: ``idx/``; ``.``: lists in
                                                                               the root itself)
=========  ================================  ================================  ======================================

``sirst`` is SIRST v1 (Dai et al., WACV 2021) and what :func:`~gaussconv_plugin.data.make_synthetic_sirst`
writes; ``irstd`` is the common layout of the other IRSTD benchmarks (NUDT-SIRST, IRSTD-1k, …). A split list
holds one image name per line, without extension. The layout is told from ``masks/`` alone (which of the two
mask names exist for the images of ``images/``), so a folder without split lists (explicit names) works too.
Boxes are the masks' 8-connected components in both layouts (:func:`~gaussconv_plugin.data.sirst.target_boxes`);
the VOC cross-check runs only where an xml file exists.

Split lists that a dataset's own folder lacks (NUDT-SIRST's validation carve) can be committed with the package;
see :mod:`gaussconv_plugin.data.split_lists`. Nothing here writes into a dataset folder.
"""
from __future__ import annotations

import os
from pathlib import Path

from .split_lists import committed_idxs

__all__ = [
    "LAYOUTS", "SIRST_IDX", "detect_layout", "image_path", "mask_path", "default_idx", "split_folders", "idx_label",
    "default_splits", "check_names",
]

#: the layouts :func:`detect_layout` tells apart
LAYOUTS = ("sirst", "irstd")
#: default split folder of the ``sirst`` layout
SIRST_IDX = "idx_427"
_SUFFIX = {"sirst": "_pixels0.png", "irstd": ".png"}
_HINT = "SIRST v1: masks/<name>_pixels0.png; IRSTD (NUDT-SIRST, IRSTD-1k): masks/<name>.png"
_cache: dict[tuple, str] = {}


def _stems(folder: Path) -> set[str]:
    with os.scandir(folder) as it:
        return {e.name[:-4] for e in it if e.name.endswith(".png") and not e.name.startswith(".")}


def detect_layout(root: str | os.PathLike) -> str:
    """``'sirst'`` or ``'irstd'``: which mask name (``masks/<name>_pixels0.png`` or ``masks/<name>.png``) the
    images of ``root/images`` have. Cached per folder (refreshed when ``images/`` or ``masks/`` change).

    Raises:
        FileNotFoundError: ``root``, ``root/images`` or ``root/masks`` is missing.
        ValueError: no image has a mask under either name, or the two names are mixed.
    """
    root = Path(root)
    for sub in ("", "images", "masks"):
        if not (root / sub).is_dir():
            what = f"{root} is not a folder" if not sub else f"{root} has no {sub}/ folder"
            raise FileNotFoundError(f"{what}; a dataset folder holds images/<name>.png and masks/ ({_HINT})")
    key = (str(root.resolve()), (root / "images").stat().st_mtime_ns, (root / "masks").stat().st_mtime_ns)
    if key in _cache:
        return _cache[key]
    images, masks = _stems(root / "images"), _stems(root / "masks")
    n_sirst = sum(1 for m in masks if m.endswith("_pixels0") and m[: -len("_pixels0")] in images)
    n_irstd = len(masks & images)
    if n_sirst and n_irstd:
        raise ValueError(f"masks/ of {root} mixes {n_sirst} SIRST-style <name>_pixels0.png and {n_irstd} IRSTD-style "
                         "<name>.png masks; keep one naming per dataset folder")
    if not (n_sirst or n_irstd):
        raise ValueError(f"cannot tell the layout of {root}: none of the {len(images)} images of images/ has a mask "
                         f"in masks/ ({len(masks)} PNGs); name each image's mask as in one layout ({_HINT})")
    _cache[key] = layout = "sirst" if n_sirst else "irstd"
    return layout


def _layout(root, layout: str | None) -> str:
    if layout is None:
        return detect_layout(root)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS} or None to detect it (got {layout!r})")
    return layout


def image_path(root: str | os.PathLike, name: str) -> Path:
    """``root/images/<name>.png`` (both layouts)."""
    return Path(root) / "images" / f"{name}.png"


def mask_path(root: str | os.PathLike, name: str, layout: str | None = None) -> Path:
    """Mask file of image ``name``: ``masks/<name>_pixels0.png`` (``sirst``) or ``masks/<name>.png`` (``irstd``);
    ``layout=None`` detects it."""
    return Path(root) / "masks" / f"{name}{_SUFFIX[_layout(root, layout)]}"


def default_idx(root: str | os.PathLike, split: str | None = None, layout: str | None = None) -> str:
    """Default split folder of ``root``: ``'idx_427'`` (``sirst``), or (``irstd``) the one sub-folder holding
    ``<split>.txt`` (any ``*.txt`` if ``split`` is None), counting lists committed for this dataset
    (:func:`~gaussconv_plugin.data.split_lists.committed_idxs`) and ``'.'`` for lists lying in ``root`` itself.

    Raises:
        FileNotFoundError: no sub-folder holds the list. ValueError: several do (pass ``idx``).
    """
    if _layout(root, layout) == "sirst":
        return SIRST_IDX
    root = Path(root)
    pattern = f"{split}.txt" if split else "*.txt"
    own = [d.name for d in root.iterdir() if d.is_dir() and d.name not in ("images", "masks")
           and not d.name.startswith(".") and any(d.glob(pattern))]
    own += ["."] if any(root.glob(pattern)) else []
    found = sorted(set(own) | set(committed_idxs(root, split) if split else ()))
    what = f"{split}.txt" if split else "split lists (*.txt)"
    if not found:
        raise FileNotFoundError(f"no sub-folder of {root} (IRSTD layout) holds {what}; add <folder>/{split or 'train'}"
                                ".txt with one image name per line (no extension), or pass idx=<folder>")
    if len(found) > 1:
        raise ValueError(f"several sub-folders of {root} hold {what}: {', '.join(found)}; pass idx= one of them")
    return found[0]


def split_folders(root: str | os.PathLike, splits, idx: str | None = None, layout: str | None = None) -> dict:
    """``{split: idx}`` for the source ``splits``: ``idx`` for all, or each split's :func:`default_idx`."""
    layout = _layout(root, layout)
    return {s: idx if idx is not None else default_idx(root, s, layout) for s in splits}


def idx_label(folders: dict) -> str:
    """One label for the split folders of :func:`split_folders` (``'idx_427'``, or ``'a+b'`` if they differ)."""
    return "+".join(sorted(set(folders.values())))


def default_splits(layout: str, root: str | os.PathLike | None = None) -> tuple[str, str]:
    """``(train, evaluation)`` source splits of a layout's standard protocol: SIRST v1 ``('trainval', 'test')``
    (no separate validation set), IRSTD ``('train', 'test')`` (NUDT-SIRST's lists). Given the IRSTD folder
    ``root``, a dataset whose lists hold ``trainval`` but no ``train`` gets ``('trainval', 'test')`` (IRSTD-1k's
    ``idx/{trainval,test}.txt``, the split of the dataset's authors)."""
    if _layout(None, layout) == "sirst":
        return ("trainval", "test")
    if root is not None and not _has_list(root, "train") and _has_list(root, "trainval"):
        return ("trainval", "test")
    return ("train", "test")


def _has_list(root, split: str) -> bool:
    """Whether some split folder of the IRSTD folder ``root`` (or a list committed for it) holds ``<split>.txt``."""
    try:
        default_idx(root, split, "irstd")
    except FileNotFoundError:
        return False
    except ValueError:  # several folders hold it: it exists
        pass
    return True


def check_names(root: str | os.PathLike, names, layout: str | None = None, source: str = "") -> None:
    """Raise one ``FileNotFoundError`` if an image or mask of ``names`` is missing in ``root`` (``source``: where
    the names come from, for the message)."""
    layout = _layout(root, layout)
    missing = [p for n in names for p in (image_path(root, n), mask_path(root, n, layout)) if not p.is_file()]
    if missing:
        src = f"{source} lists" if source else "the names list"
        ext = [n for n in names if os.path.splitext(str(n))[1].lower() in (".png", ".jpg", ".jpeg", ".bmp", ".tif")]
        fix = (f"list names without extension (e.g. {os.path.splitext(ext[0])[0]!r}, not {ext[0]!r})" if ext
               else "add the image/mask or drop the name from the list")
        raise FileNotFoundError(f"{src} {len(missing)} missing file(s) in {root} ({layout} layout), first "
                                f"{missing[0]}; {fix}")
