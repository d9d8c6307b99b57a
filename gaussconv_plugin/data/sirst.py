"""Read datasets in the SIRST layout.

Layout (SIRST v1, Dai et al. WACV 2021; also what :func:`make_synthetic_sirst` writes)::

    root/images/<name>.png              any PIL mode (L, RGB, RGBA, P); content is IR grayscale
    root/masks/<name>_pixels0.png       binary target mask (0 / 255)
    root/masks/<name>.xml               Pascal-VOC boxes (optional)
    root/idx_427/{train,val,test,trainval,trainvaltest}.txt   one name per line

Boxes are ``xyxy`` in pixel-edge coordinates: a target covering columns 3..5 has ``x1 = 3, x2 = 6``.
"""
from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "cache_dir", "sirst_root", "read_split", "load_image", "load_mask", "load_voc_boxes", "mask_to_boxes",
    "check_boxes_against_voc", "target_boxes",
]

SPLITS = ("train", "val", "test", "trainval", "trainvaltest")


def cache_dir(*parts: str) -> Path:
    """``$GAUSSCONV_CACHE`` or ``$XDG_CACHE_HOME/gaussconv_plugin`` (default ``~/.cache/gaussconv_plugin``),
    joined with ``parts`` and created."""
    base = os.environ.get("GAUSSCONV_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gaussconv_plugin"
    )
    p = Path(base, *parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


def sirst_root(path: str | os.PathLike | None = None) -> Path:
    """Resolve the SIRST root: ``path``, else ``$GAUSSCONV_SIRST_ROOT``, else ``../shared/data/sirst`` beside
    the project checkout (then beside the current directory). Raises one clear error if it is missing."""
    candidates = []
    if path is not None:
        candidates.append(Path(path))
    elif os.environ.get("GAUSSCONV_SIRST_ROOT"):
        candidates.append(Path(os.environ["GAUSSCONV_SIRST_ROOT"]))
    else:
        repo = Path(__file__).resolve().parents[2]
        candidates += [repo.parent / "shared" / "data" / "sirst", Path.cwd().parent / "shared" / "data" / "sirst"]
    for c in candidates:
        if (c / "images").is_dir() and (c / "masks").is_dir():
            return c
    raise FileNotFoundError(
        f"no SIRST dataset at {', '.join(str(c) for c in candidates)}; set GAUSSCONV_SIRST_ROOT or pass the "
        "folder holding images/ and masks/ (or make a synthetic one: python -m gaussconv_plugin.data.synthetic)"
    )


def read_split(root: str | os.PathLike, split: str = "trainval", idx: str = "idx_427") -> list[str]:
    """Image names of ``root/idx/split.txt`` (no extensions, blank lines dropped)."""
    f = Path(root) / idx / f"{split}.txt"
    if not f.is_file():
        raise FileNotFoundError(f"split file {f} not found; use split one of {SPLITS} and idx 'idx_427' or 'idx_320'")
    return [ln.strip() for ln in f.read_text().splitlines() if ln.strip()]


def load_image(root: str | os.PathLike, name: str) -> np.ndarray:
    """``(H, W)`` uint8 grayscale image; L, RGB, RGBA and palette files are all converted with PIL's 'L'."""
    with Image.open(Path(root) / "images" / f"{name}.png") as im:
        if im.mode == "P":
            im = im.convert("RGBA")
        if im.mode in ("RGBA", "LA"):
            im = im.convert("RGB")
        return np.asarray(im.convert("L"), dtype=np.uint8).copy()


def load_mask(root: str | os.PathLike, name: str) -> np.ndarray:
    """``(H, W)`` bool target mask (pixel > 127)."""
    with Image.open(Path(root) / "masks" / f"{name}_pixels0.png") as im:
        return np.asarray(im.convert("L")) > 127


def load_voc_boxes(root: str | os.PathLike, name: str) -> np.ndarray:
    """``(K, 4)`` float32 xyxy boxes from ``masks/<name>.xml`` converted to pixel edges (VOC max is inclusive)."""
    f = Path(root) / "masks" / f"{name}.xml"
    if not f.is_file():
        return np.zeros((0, 4), np.float32)
    boxes = []
    for obj in ET.parse(f).getroot().iter("object"):
        bb = obj.find("bndbox")
        x1, y1, x2, y2 = (float(bb.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append((x1, y1, x2 + 1, y2 + 1))
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def mask_to_boxes(mask: np.ndarray, connectivity: int = 8) -> np.ndarray:
    """Boxes of the connected components of a binary mask: ``(H, W)`` → ``(K, 4)`` float32 xyxy pixel edges,
    sorted by (y1, x1). ``connectivity`` is 4 or 8."""
    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8 (got {connectivity})")
    m = np.asarray(mask).astype(bool)
    h, w = m.shape
    seen = np.zeros_like(m)
    nbrs = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if connectivity == 8:
        nbrs += [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    boxes = []
    for y0, x0 in zip(*np.nonzero(m)):
        if seen[y0, x0]:
            continue
        seen[y0, x0] = True
        q = deque([(y0, x0)])
        ys, xs = [y0], [x0]
        while q:
            y, x = q.popleft()
            for dy, dx in nbrs:
                yy, xx = y + dy, x + dx
                if 0 <= yy < h and 0 <= xx < w and m[yy, xx] and not seen[yy, xx]:
                    seen[yy, xx] = True
                    q.append((yy, xx))
                    ys.append(yy)
                    xs.append(xx)
        boxes.append((min(xs), min(ys), max(xs) + 1, max(ys) + 1))
    boxes.sort(key=lambda b: (b[1], b[0]))
    return np.asarray(boxes, np.float32).reshape(-1, 4)


def check_boxes_against_voc(boxes: np.ndarray, voc: np.ndarray, tol: float = 2.0) -> list[str]:
    """Compare mask-component boxes with the VOC boxes of the same image; returns the problems found (empty
    list: consistent).

    SIRST v1's VOC files are approximate: coordinates are off by up to one pixel (0- or 1-based), and some
    files (69 of 427) hold one box spanning several targets. So the check is: every component box lies inside
    some VOC box (± ``tol`` px), and every VOC box equals the union of the component boxes inside it (± ``tol``).
    """
    problems = []
    if len(voc) == 0:
        return ["no VOC boxes"] if len(boxes) else []
    inside = (
        (boxes[:, None, 0] >= voc[None, :, 0] - tol) & (boxes[:, None, 1] >= voc[None, :, 1] - tol)
        & (boxes[:, None, 2] <= voc[None, :, 2] + tol) & (boxes[:, None, 3] <= voc[None, :, 3] + tol)
    )  # (K, V)
    for i in np.nonzero(~inside.any(1))[0]:
        problems.append(f"mask component {boxes[i].tolist()} lies in no VOC box")
    for j in range(len(voc)):
        members = boxes[inside[:, j]]
        if len(members) == 0:
            problems.append(f"VOC box {voc[j].tolist()} holds no mask component")
            continue
        union = np.array([members[:, 0].min(), members[:, 1].min(), members[:, 2].max(), members[:, 3].max()])
        if np.abs(union - voc[j]).max() > tol:
            problems.append(f"VOC box {voc[j].tolist()} != union of its mask components {union.tolist()}")
    return problems


def target_boxes(root: str | os.PathLike, name: str, tol: float = 2.0) -> tuple[np.ndarray, list[str]]:
    """Boxes of one image from its mask's 8-connected components (the ground truth used everywhere), and the
    problems :func:`check_boxes_against_voc` finds against ``masks/<name>.xml`` (if that file exists)."""
    boxes = mask_to_boxes(load_mask(root, name))
    xml = Path(root) / "masks" / f"{name}.xml"
    return boxes, (check_boxes_against_voc(boxes, load_voc_boxes(root, name), tol) if xml.is_file() else [])
