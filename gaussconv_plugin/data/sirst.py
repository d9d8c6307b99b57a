"""Read datasets in the SIRST v1 layout and in the common IRSTD layout (NUDT-SIRST, IRSTD-1k).

Layouts (:mod:`gaussconv_plugin.data.layout` tells them apart from ``masks/``)::

    SIRST v1 (Dai et al. WACV 2021; also what :func:`make_synthetic_sirst` writes)
    root/images/<name>.png              any PIL mode (L, RGB, RGBA, P); content is IR grayscale
    root/masks/<name>_pixels0.png       binary target mask (0 / 255)
    root/masks/<name>.xml               Pascal-VOC boxes (optional)
    root/idx_427/{train,val,test,trainval,trainvaltest}.txt   one name per line

    IRSTD (NUDT-SIRST, IRSTD-1k, ...)
    root/images/<name>.png
    root/masks/<name>.png               same name as the image; no VOC xml
    root/<folder>/{train,test}.txt      one split folder (NUDT-SIRST: 50_50/)

Every function taking ``idx`` accepts ``None`` for the layout's default split folder
(:func:`~gaussconv_plugin.data.layout.default_idx`). Boxes are ``xyxy`` in pixel-edge coordinates: a target
covering columns 3..5 has ``x1 = 3, x2 = 6``.

Bad data ends in one ``ValueError`` / ``FileNotFoundError`` line that names the file and the fix, raised where the
file is read: a missing image or mask, an image or mask that does not decode (corrupt, truncated, not an image),
an unreadable VOC xml, a mask whose size breaks the rule of :func:`check_mask_size`.

Mask size rule (:func:`check_mask_size`). A mask may be stored at another size than its image only as the image
scaled by one factor: there must be one ``s > 0`` with ``|W_mask − s·W_image| ≤ 1`` and ``|H_mask − s·H_image| ≤ 1``
(the same aspect ratio up to a pixel of rounding on each side; SIRST v1's ``Misc_111``, image 325×220 and mask
592×400, is one such case). Such a mask is read at its own size and mapped to the image: its boxes are scaled
(:func:`target_boxes`) and the segmentation dataset resizes it with nearest neighbour. Any other size (another
aspect ratio: most likely the mask of another image) is an error.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import xml.etree.ElementTree as ET
from collections import deque
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: conversions into one folder are not serialised
    fcntl = None

import numpy as np
from PIL import Image

from .layout import check_names, default_idx, detect_layout, image_path, mask_path
from .split_lists import committed_split_file, read_names

__all__ = [
    "cache_dir", "dataset_root", "sirst_root", "nudt_root", "irstd1k_root", "read_split", "load_image", "load_mask",
    "load_voc_boxes", "mask_to_boxes", "check_boxes_against_voc", "target_boxes", "SHARED_DATASETS",
    "check_mask_size", "image_size", "check_out_dir", "DataFileError", "cache_label",
    "path_tag", "conversion_lock", "OWNER",
]

SPLITS = ("train", "val", "test", "trainval", "trainvaltest")

#: datasets with a default folder beside the checkout: name -> (environment variable, ../shared/data/<folder>)
SHARED_DATASETS = {"sirst": ("GAUSSCONV_SIRST_ROOT", "sirst"), "nudt_sirst": ("GAUSSCONV_NUDT_ROOT", "nudt_sirst"),
                   "irstd1k": ("GAUSSCONV_IRSTD1K_ROOT", "irstd1k")}


class DataFileError(ValueError):
    """A file of a dataset that cannot be used (an image or mask that does not decode, a mask of another image's
    shape, an unreadable VOC xml): its message is one line naming the file and the fix. The training and test
    tools print that line alone, also when a DataLoader worker raised it (:meth:`line`)."""

    @staticmethod
    def line(exc: BaseException) -> str:
        """The one line of ``exc`` — from inside the traceback text a DataLoader worker wraps it in, if so."""
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        for ln in reversed(lines):
            head, sep, tail = ln.partition("DataFileError: ")
            if sep and (not head or head.endswith(".")):
                return tail
        return lines[0] if lines else type(exc).__name__


def cache_dir(*parts: str) -> Path:
    """``$GAUSSCONV_CACHE`` or ``$XDG_CACHE_HOME/gaussconv_plugin`` (default ``~/.cache/gaussconv_plugin``),
    joined with ``parts`` and created."""
    base = os.environ.get("GAUSSCONV_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gaussconv_plugin"
    )
    p = Path(base, *parts)
    p.mkdir(parents=True, exist_ok=True)
    return p


#: the file a conversion creates in its output folder before it changes anything there, and keeps: it marks the folder
#: as this package's (an interrupted conversion's folder is taken up again) and is locked while a conversion runs
OWNER = ".gaussconv_conversion"


def check_out_dir(out: Path, own: tuple[str, ...], marker: str) -> None:
    """Refuse a conversion's output folder ``out`` that is a file, or that holds any of ``own`` (what the conversion
    replaces) without ``marker`` (the file a conversion writes last) or :data:`OWNER` (written before anything else):
    those entries are someone else's, and converting would delete or overwrite them. ValueError, one line naming the
    folder and the fix."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out_dir {out} is a file; name a new or empty folder")
    if (out / marker).is_file() or (out / OWNER).is_file():
        return
    found = [n for n in own if (out / n).exists()]
    if found:
        raise ValueError(f"out_dir {out} holds {', '.join(found)} that this package did not write (no {marker}); "
                         "name a new or empty folder, or move them away")


@contextlib.contextmanager
def conversion_lock(out: Path):
    """Hold ``out``'s :data:`OWNER` file (created, with ``out``, if missing) under an exclusive lock while converting
    into ``out``: a second conversion into the same folder (another process, a distributed worker) waits, then finds
    the first one's result instead of interleaving with it. Staging folders an interrupted conversion left are
    removed. If the block fails and ``out`` was new, nothing of it is left."""
    new = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    with open(out / OWNER, "a") as fh:
        if fcntl is not None:
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            for stale in out.glob(".staging.*"):
                shutil.rmtree(stale, ignore_errors=True)
            yield
        except BaseException:
            if new and {p.name for p in out.iterdir()} <= {OWNER}:
                shutil.rmtree(out, ignore_errors=True)
            raise
        finally:
            if fcntl is not None:
                fcntl.flock(fh, fcntl.LOCK_UN)


def cache_label(root: str | os.PathLike) -> str:
    """Name of a dataset's default conversion folders in the cache (``<label>_yolo``, ``<label>_coco``): ``sirst``
    for the SIRST v1 folder :func:`sirst_root` resolves by default (the one the RetinaNet configs' default COCO folder
    is made from), the folder's name for the shared NUDT-SIRST and IRSTD-1k (or their environment variables), and
    ``<name>-<sha1 of its absolute path, 8 hex>`` for any other folder: two datasets never share a default folder,
    where one conversion would replace the other's under a config or a training that reads it."""
    root = Path(root).resolve()
    for key in SHARED_DATASETS:
        try:
            if dataset_root(None, key).resolve() == root:
                return "sirst" if key == "sirst" else root.name
        except FileNotFoundError:
            continue
    return path_tag(root)


def path_tag(root: str | os.PathLike) -> str:
    """``<folder name>-<sha1 of its absolute path, 8 hex>``: a folder's name, made unique by its place."""
    root = Path(root).resolve()
    return f"{root.name}-{hashlib.sha1(str(root).encode()).hexdigest()[:8]}"


def dataset_root(path: str | os.PathLike | None = None, dataset: str = "sirst") -> Path:
    """Resolve a dataset folder: ``path``, else the dataset's environment variable, else
    ``../shared/data/<folder>`` beside the project checkout (then beside the current directory), with
    ``dataset`` a key of :data:`SHARED_DATASETS` (``sirst``: ``$GAUSSCONV_SIRST_ROOT``, ``../shared/data/sirst``;
    ``nudt_sirst``: ``$GAUSSCONV_NUDT_ROOT``, ``../shared/data/nudt_sirst``; ``irstd1k``: ``$GAUSSCONV_IRSTD1K_ROOT``,
    ``../shared/data/irstd1k``). The folder must hold ``images/``
    and ``masks/``; otherwise one clear error names what is missing."""
    if dataset not in SHARED_DATASETS:
        raise ValueError(f"dataset must be one of {sorted(SHARED_DATASETS)} (got {dataset!r}); or pass the folder")
    env, folder = SHARED_DATASETS[dataset]
    candidates = []
    if path is not None:
        candidates.append(Path(path))
    elif os.environ.get(env):
        candidates.append(Path(os.environ[env]))
    else:
        repo = Path(__file__).resolve().parents[2]
        candidates += [repo.parent / "shared" / "data" / folder, Path.cwd().parent / "shared" / "data" / folder]
    for c in candidates:
        if (c / "images").is_dir() and (c / "masks").is_dir():
            return c
    if len(candidates) == 1 and candidates[0].is_dir():
        lack = " and ".join(f"{s}/" for s in ("images", "masks") if not (candidates[0] / s).is_dir())
        raise FileNotFoundError(
            f"{candidates[0]} has no {lack} folder: not a dataset (images/<name>.png + masks/<name>_pixels0.png "
            f"or masks/<name>.png); pass the dataset folder or set {env}"
        )
    raise FileNotFoundError(
        f"no {dataset} dataset at {', '.join(str(c) for c in candidates)}; set {env} or pass the "
        "folder holding images/ and masks/ (or make a synthetic one: python -m gaussconv_plugin.data.synthetic)"
    )


def sirst_root(path: str | os.PathLike | None = None) -> Path:
    """Resolve the SIRST root: ``path``, else ``$GAUSSCONV_SIRST_ROOT``, else ``../shared/data/sirst`` beside
    the project checkout (then beside the current directory). Raises one clear error if it is missing.
    Any folder in either layout is accepted as ``path``."""
    return dataset_root(path, "sirst")


def nudt_root(path: str | os.PathLike | None = None) -> Path:
    """Resolve the NUDT-SIRST root: ``path``, else ``$GAUSSCONV_NUDT_ROOT``, else ``../shared/data/nudt_sirst``
    beside the project checkout (then beside the current directory), as :func:`sirst_root` does."""
    return dataset_root(path, "nudt_sirst")


def irstd1k_root(path: str | os.PathLike | None = None) -> Path:
    """Resolve the IRSTD-1k root: ``path``, else ``$GAUSSCONV_IRSTD1K_ROOT``, else ``../shared/data/irstd1k``
    beside the project checkout (then beside the current directory), as :func:`sirst_root` does."""
    return dataset_root(path, "irstd1k")


def read_split(root: str | os.PathLike, split: str = "trainval", idx: str | None = None,
               check: bool = True) -> list[str]:
    """Image names of ``root/idx/split.txt`` (no extensions, blank lines dropped).

    Args:
        root: dataset folder (either layout).
        split: list name (SIRST: ``train``, ``val``, ``test``, ``trainval``, ``trainvaltest``; NUDT-SIRST:
            ``train``, ``test`` and the committed ``train_sub``, ``val_sub``).
        idx: split folder; ``None`` → the layout's default (``idx_427``; IRSTD: the one sub-folder holding
            ``<split>.txt``). A list missing from ``root/idx`` is looked up among the lists committed for this
            dataset (:mod:`gaussconv_plugin.data.split_lists`).
        check: raise if an image or mask of a listed name is missing.

    Raises:
        FileNotFoundError: no such list, or (``check``) a listed file is missing. ValueError: the list is empty.
    """
    root = Path(root)
    layout = detect_layout(root)
    if idx is None:
        idx = default_idx(root, split, layout)
    f = root / idx / f"{split}.txt"
    if not f.is_file():
        f = committed_split_file(root, idx, split) or f
    if not f.is_file():
        have = sorted(p.stem for p in (root / idx).glob("*.txt")) if (root / idx).is_dir() else []
        hint = f"lists in {root / idx}: {', '.join(have)}" if have else f"{root / idx} holds no lists"
        raise FileNotFoundError(f"split file {f} not found ({layout} layout; {hint}); pass one of those as split, "
                                "or another idx folder")
    names = read_names(f)
    if not names:
        raise ValueError(f"split file {f} lists no image names; write one name per line (no extension) or use "
                         "another split")
    seen: set[str] = set()
    twice = [n for n in names if n in seen or seen.add(n)]
    if twice:  # it would be trained and scored twice (COCO, U-Net) but written once (YOLO)
        raise ValueError(f"split file {f} lists {twice[0]!r} more than once ({len(twice)} repeated line(s)); keep one "
                         "line per image")
    if check:
        check_names(root, names, layout, source=f"split file {f}")
    return names


def _pil_open(p: Path) -> Image.Image:
    """PIL's own ``Image.open``. A host may patch it: Ultralytics retries a file PIL cannot identify through a HEIF
    plugin it imports (and installs, unless YOLO_AUTOINSTALL=false); here such a file is bad data, never a reason to
    install anything. The patch keeps the original as ``_image_open`` in its module."""
    opener = Image.open
    original = getattr(opener, "__globals__", {}).get("_image_open")
    return (original if getattr(original, "__module__", None) == Image.__name__ else opener)(p)


def _decode(p: Path, what: str, name: str, convert) -> np.ndarray:
    """Open and fully decode ``p`` with PIL and ``convert(im) -> array``; a file that does not decode is one
    ``ValueError`` line naming it and the fix, whatever a host's patch of ``Image.open`` raises."""
    try:
        with _pil_open(p) as im:
            return convert(im)
    except _Unusable as e:  # decodes, but its content cannot be used as it is
        raise DataFileError(f"{what} {p} {e}; or drop {name!r} from the split list") from None
    except Exception as e:  # noqa: BLE001 — any failure to decode this file is this file's fault
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataFileError(f"{what} {p} cannot be read ({reason}): it is corrupt, truncated or not an image; "
                         f"replace it with a valid PNG or drop {name!r} from the split list") from None


class _Unusable(ValueError):
    """A file that decodes but whose content cannot be used as it is (the message says why and the fix)."""


def _grey(im: Image.Image) -> np.ndarray:
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):  # PIL's 'L' clips these to 255, not scales them
        raise _Unusable(f"holds {'32' if im.mode in ('I', 'F') else '16'}-bit pixels (mode {im.mode}), which would "
                        "read as one flat grey; save it as 8-bit greyscale (mode L)")
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA"):
        im = im.convert("RGB")
    return np.asarray(im.convert("L"), dtype=np.uint8).copy()


def load_image(root: str | os.PathLike, name: str) -> np.ndarray:
    """``(H, W)`` uint8 grayscale image ``images/<name>.png``; L, RGB, RGBA and palette files are all converted
    with PIL's 'L'. A missing or undecodable file raises one line naming it."""
    p = image_path(root, name)
    if not p.is_file():
        raise FileNotFoundError(f"image {p} not found; add it or drop {name!r} from the names/split list")
    return _decode(p, "image", name, _grey)


def image_size(root: str | os.PathLike, name: str) -> tuple[int, int]:
    """``(W, H)`` of ``images/<name>.png`` from its header (not decoded); one error line if it is no image."""
    p = image_path(root, name)
    if not p.is_file():
        raise FileNotFoundError(f"image {p} not found; add it or drop {name!r} from the names/split list")
    return _decode(p, "image", name, lambda im: im.size)


def load_mask(root: str | os.PathLike, name: str, layout: str | None = None) -> np.ndarray:
    """``(H, W)`` bool target mask (pixel > 127: the rule and why in :mod:`gaussconv_plugin.data`) of image
    ``name``: ``masks/<name>_pixels0.png`` (SIRST) or ``masks/<name>.png`` (IRSTD); ``layout=None`` detects the
    layout. Its size may differ from the image's only as :func:`check_mask_size` allows (checked where both are
    read)."""
    p = mask_path(root, name, layout)
    if not p.is_file():
        raise FileNotFoundError(f"mask {p} of image {name!r} not found; add it or drop {name!r} from the "
                                "names/split list")
    return _decode(p, "mask", name, _binary_mask)


def _binary_mask(im: Image.Image) -> np.ndarray:
    """Target where the grey value is > 127; a mask whose brightest pixel is 1 … 127 (label indices 0/1, a mask saved
    without scaling) would have no target at all: an error, not an empty mask."""
    a = np.asarray(im.convert("L"))
    top = int(a.max()) if a.size else 0
    if 0 < top <= 127:
        raise _Unusable(f"has no target pixel (> 127): its brightest is {top}, a label-index mask (0/1)?; save "
                        "targets as 255 (mask * 255)")
    return a > 127


def check_mask_size(image_hw: tuple[int, int], mask_hw: tuple[int, int], image_file, mask_file) -> bool:
    """The mask size rule (module docstring): True if the mask has the image's size, False if it is the image
    scaled by one factor (up to a pixel of rounding per side: map it to the image), else one ``ValueError`` line
    naming both files and the fix."""
    (h, w), (mh, mw) = (int(x) for x in image_hw), (int(x) for x in mask_hw)
    if (h, w) == (mh, mw):
        return True
    lo = max((mw - 1) / w, (mh - 1) / h, 0.0)  # the scale factors s allowed by each side overlap
    hi = min((mw + 1) / w, (mh + 1) / h)
    if lo <= hi and hi > 0:
        return False
    raise DataFileError(f"mask {mask_file} is {mw}x{mh} but its image {image_file} is {w}x{h}, another aspect ratio "
                     "(a mask may differ in size only as the image scaled by one factor): it is probably another "
                     f"image's mask; save the mask at {w}x{h} or drop the name from the split list")


def load_voc_boxes(root: str | os.PathLike, name: str) -> np.ndarray:
    """``(K, 4)`` float32 xyxy boxes from ``masks/<name>.xml`` converted to pixel edges (VOC max is inclusive);
    an unreadable file raises one line naming it."""
    f = Path(root) / "masks" / f"{name}.xml"
    if not f.is_file():
        return np.zeros((0, 4), np.float32)
    boxes = []
    try:
        for obj in ET.parse(f).getroot().iter("object"):
            bb = obj.find("bndbox")
            x1, y1, x2, y2 = (float(bb.find(t).text) for t in ("xmin", "ymin", "xmax", "ymax"))
            boxes.append((x1, y1, x2 + 1, y2 + 1))
    except (ET.ParseError, AttributeError, TypeError, ValueError) as e:
        reason = " ".join(str(e).split()) or "an <object> without a numeric bndbox xmin/ymin/xmax/ymax"
        raise DataFileError(f"VOC file {f} cannot be read ({reason}); fix or delete it (the boxes come from the mask, "
                         "the xml is only cross-checked)") from None
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


def boxes_inside(boxes: np.ndarray, voc: np.ndarray, tol: float = 2.0) -> np.ndarray:
    """``(K, V)`` bool: component box k lies inside VOC box v (± ``tol`` px). Boxes ``(K, 4)`` / ``(V, 4)`` xyxy."""
    return (
        (boxes[:, None, 0] >= voc[None, :, 0] - tol) & (boxes[:, None, 1] >= voc[None, :, 1] - tol)
        & (boxes[:, None, 2] <= voc[None, :, 2] + tol) & (boxes[:, None, 3] <= voc[None, :, 3] + tol)
    )


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
    inside = boxes_inside(boxes, voc, tol)  # (K, V)
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


def target_boxes(root: str | os.PathLike, name: str, tol: float = 2.0,
                 layout: str | None = None) -> tuple[np.ndarray, list[str]]:
    """Boxes of one image from its mask's 8-connected components (the ground truth used everywhere, both
    layouts), in the image's pixel coordinates, and the problems :func:`check_boxes_against_voc` finds against
    ``masks/<name>.xml`` where that file exists (SIRST v1; IRSTD folders have none, so the list is empty).

    A mask stored at another size than its image as :func:`check_mask_size` allows (e.g. SIRST v1 ``Misc_111``:
    image 325×220, mask and VOC file 592×400) is read at its own size and its boxes (like the VOC check, done in
    mask coordinates) are scaled to the image: components are never merged or lost by resizing the mask. Any other
    size raises one line naming both files."""
    mask = load_mask(root, name, layout)
    w, h = image_size(root, name)
    same = check_mask_size((h, w), mask.shape, image_path(root, name), mask_path(root, name, layout))
    boxes = mask_to_boxes(mask)
    xml = Path(root) / "masks" / f"{name}.xml"
    problems = check_boxes_against_voc(boxes, load_voc_boxes(root, name), tol) if xml.is_file() else []
    if not same:
        boxes = boxes * np.array([w / mask.shape[1], h / mask.shape[0]] * 2, np.float32)
    return boxes, problems
