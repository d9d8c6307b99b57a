"""A small synthetic infrared small-target dataset in the SIRST (or IRSTD) layout (the embedded default: no
download).

Each image: a smooth cloudy background (bilinearly up-sampled coarse noise at two scales plus a linear
gradient), a few elongated bright clutter streaks, Gaussian sensor noise, and 0–3 targets. A target is a
2-D Gaussian blob ``A·exp(−((x−x₀)²/(2s_x²) + (y−y₀)²/(2s_y²)))`` with ``s ∈ [0.6, 2.0]`` px and contrast
``A`` 25–90 grey levels above the background; its mask is where the blob exceeds ``A/2`` (1–40 px,
the SIRST size range). About 10 % of the images hold no target. Image sizes vary (W 200–320, H 160–256).

Every one of these numbers is a keyword argument of :func:`make_synthetic_sirst` (and of
:func:`make_synthetic_image`): ``height``, ``width``, ``p_empty``, ``n_targets``, ``sigma``, ``amplitude``
(inclusive ranges). With the defaults the images are the same as before these arguments existed.

How small a target can be: ``s = 0.6`` px is the smallest blob whose mask always covers a pixel (the half-maximum
ellipse has radius 1.18·s = 0.71 px, the distance from a pixel's corner to its centre); ``sigma=(0.6, 1.2)`` gives
masks of 1–9 px, 1–3 px across, the smallest real IR targets. The U-Net learns them in a few CPU minutes (DEMO_SMALL
with that ``sigma``, 96 images, the demo's U-Net settings at batch 8: test mIoU 0.44, Pd 0.82 after 20 epochs, ~2 min
on one thread). YOLO does not: Ultralytics' training augmentation (``RandomPerspective.box_candidates``,
``wh_thr=2``) drops every box not wider and higher than 2 px from the labels, so 1–2 px targets are trained as
background. :data:`DEMO_SMALL`, the set of ``tools/demo.py`` (``make demo``), therefore uses ``s`` 1.2–1.8 px: masks
of 6–20 px, 3–5 px across (≥ 3 px on both sides for 98 % of the targets): real small-target sizes that both hosts
learn.

Command line::

    python -m gaussconv_plugin.data.synthetic --out /tmp/synth --n 64 --seed 0 [--demo-small] [--sigma 0.6 1.2]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from .sirst import mask_to_boxes

__all__ = ["make_synthetic_image", "make_synthetic_sirst", "DEMO_SMALL"]

#: Settings of ``tools/demo.py``'s synthetic set (keyword arguments of :func:`make_synthetic_sirst`): images 160 px
#: wide and 120–160 px high, 1–4 targets per image (10 % of the images empty), blobs of ``s`` 1.2–1.8 px (masks of
#: 6–20 px, 3–5 px across: see the module docstring), contrast 30–90 grey levels.
DEMO_SMALL = dict(height=(120, 160), width=(160, 160), n_targets=(1, 4), sigma=(1.2, 1.8), amplitude=(30, 90))


def _range(name: str, v, cast=float) -> tuple:
    lo, hi = (v, v) if np.isscalar(v) else tuple(v)
    lo, hi = cast(lo), cast(hi)
    if not lo <= hi:
        raise ValueError(f"{name} must be a (low, high) range with low <= high (got {v!r})")
    return lo, hi


def _upsample(coarse: np.ndarray, h: int, w: int) -> np.ndarray:
    im = Image.fromarray(coarse.astype(np.float32), mode="F")
    return np.asarray(im.resize((w, h), Image.BILINEAR), dtype=np.float32)


def make_synthetic_image(rng: np.random.Generator, h: int, w: int, p_empty: float = 0.1, *,
                         n_targets=(1, 3), sigma=(0.6, 2.0), amplitude=(25, 90), margin: float = 8):
    """One image: ``(H, W)`` uint8 image and ``(H, W)`` bool mask.

    ``p_empty``: probability of an image without a target; otherwise ``n_targets`` (inclusive range) blobs with
    ``s_x, s_y ~ U(sigma)`` px, contrast ``A ~ U(amplitude)`` grey levels, centres at least ``margin`` px from
    the border."""
    n_lo, n_hi = _range("n_targets", n_targets, int)
    s_lo, s_hi = _range("sigma", sigma)
    a_lo, a_hi = _range("amplitude", amplitude)
    if n_lo < 1:
        raise ValueError(f"n_targets must be at least 1 (empty images come from p_empty), got {n_targets!r}")
    if s_lo <= 0:
        raise ValueError(f"sigma must be positive (got {sigma!r})")
    bg = 90 + 40 * rng.random()
    img = np.full((h, w), bg, np.float32)
    img += 25 * _upsample(rng.standard_normal((4, 5)), h, w)
    img += 10 * _upsample(rng.standard_normal((12, 16)), h, w)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    g = rng.standard_normal(2) * 0.08
    img += g[0] * (xx - w / 2) + g[1] * (yy - h / 2)
    for _ in range(rng.integers(0, 3)):  # clutter streaks (edges, cloud rims): long, not small
        x0, y0 = rng.random() * w, rng.random() * h
        ang = rng.random() * np.pi
        along = (xx - x0) * np.cos(ang) + (yy - y0) * np.sin(ang)
        across = -(xx - x0) * np.sin(ang) + (yy - y0) * np.cos(ang)
        img += 30 * rng.random() * np.exp(-(across**2) / (2 * (2 + 4 * rng.random()) ** 2)) * (np.abs(along) < 40 + 60 * rng.random())
    mask = np.zeros((h, w), bool)
    n_t = 0 if rng.random() < p_empty else int(rng.integers(n_lo, n_hi + 1))
    for _ in range(n_t):
        sx, sy = rng.uniform(s_lo, s_hi, size=2)
        x0, y0 = rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)
        amp = rng.uniform(a_lo, a_hi)
        blob = amp * np.exp(-((xx - x0) ** 2 / (2 * sx**2) + (yy - y0) ** 2 / (2 * sy**2)))
        img += blob
        mask |= blob > amp / 2
    img += rng.normal(0, 3.0, size=(h, w))
    return np.clip(img, 0, 255).astype(np.uint8), mask


def _voc_xml(name: str, w: int, h: int, boxes: np.ndarray) -> str:
    objs = "".join(
        f"<object><name>Target</name><bndbox><xmin>{int(b[0])}</xmin><ymin>{int(b[1])}</ymin>"
        f"<xmax>{int(b[2]) - 1}</xmax><ymax>{int(b[3]) - 1}</ymax></bndbox></object>"
        for b in boxes
    )
    return (
        f"<annotation><filename>{name}.png</filename><size><width>{w}</width><height>{h}</height><depth>1</depth>"
        f"</size>{objs}</annotation>\n"
    )


def make_synthetic_sirst(out_dir, n: int = 64, seed: int = 0, test_fraction: float = 0.25,
                         layout: str = "sirst", *, height=(160, 256), width=(200, 320), p_empty: float = 0.1,
                         n_targets=(1, 3), sigma=(0.6, 2.0), amplitude=(25, 90)) -> Path:
    """Write ``n`` synthetic images to ``out_dir`` and return it. ``layout='sirst'``: SIRST v1 (``images/``,
    ``masks/<name>_pixels0.png`` + VOC ``masks/<name>.xml``, ``idx_427/{train,val,test,trainval,trainvaltest}.txt``);
    ``layout='irstd'``: the IRSTD layout of NUDT-SIRST (``masks/<name>.png``, no xml, ``50_50/{train,test}.txt``,
    train = SIRST's trainval). Deterministic for a given ``seed`` and settings (same images in both layouts);
    rewriting the same folder is idempotent.

    Image and target settings (inclusive ranges, drawn uniformly per image / per target): ``height``, ``width``
    (px), ``p_empty`` (probability of an image without a target), ``n_targets`` (targets in the other images),
    ``sigma`` (blob ``s_x``, ``s_y`` in px), ``amplitude`` (contrast in grey levels); see the module docstring
    and :data:`DEMO_SMALL`."""
    if n < 4:
        raise ValueError(f"n must be at least 4 to fill the train/val/test splits (got {n})")
    if layout not in ("sirst", "irstd"):
        raise ValueError(f"layout must be 'sirst' or 'irstd' (got {layout!r})")
    h_lo, h_hi = _range("height", height, int)
    w_lo, w_hi = _range("width", width, int)
    if min(h_lo, w_lo) < 32:
        raise ValueError(f"images must be at least 32 px on each side (got height={height!r}, width={width!r})")
    opts = dict(n_targets=n_targets, sigma=sigma, amplitude=amplitude)
    make_synthetic_image(np.random.default_rng(0), 32, 32, p_empty, **opts)  # check the settings before writing
    idx = "idx_427" if layout == "sirst" else "50_50"
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / idx).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        name = f"Synth_{i + 1}"
        h, w = int(rng.integers(h_lo, h_hi + 1)), int(rng.integers(w_lo, w_hi + 1))
        img, mask = make_synthetic_image(rng, h, w, p_empty, **opts)
        Image.fromarray(img, mode="L").save(out / "images" / f"{name}.png")
        if layout == "irstd":
            Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(out / "masks" / f"{name}.png")
        else:
            Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(out / "masks" / f"{name}_pixels0.png")
            (out / "masks" / f"{name}.xml").write_text(_voc_xml(name, w, h, mask_to_boxes(mask)))
        names.append(name)
    n_test = max(1, int(round(n * test_fraction)))
    n_val = max(1, n_test // 2)
    test, trainval = names[-n_test:], names[:-n_test]
    splits = {
        "train": trainval[:-n_val], "val": trainval[-n_val:], "trainval": trainval, "test": test,
        "trainvaltest": names,
    }
    if layout == "irstd":
        splits = {"train": trainval, "test": test}
    for k, v in splits.items():
        (out / idx / f"{k}.txt").write_text("\n".join(v) + "\n")
    (out / "README.md").write_text(
        f"Synthetic IR small-target set (gaussconv_plugin), {layout} layout, n={n}, seed={seed}, "
        f"height={list(height) if not np.isscalar(height) else height}, "
        f"width={list(width) if not np.isscalar(width) else width}, p_empty={p_empty}, "
        f"n_targets={list(n_targets) if not np.isscalar(n_targets) else n_targets}, "
        f"sigma={list(sigma) if not np.isscalar(sigma) else sigma}, "
        f"amplitude={list(amplitude) if not np.isscalar(amplitude) else amplitude}.\n")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write a synthetic IR small-target dataset (SIRST or IRSTD layout).")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", choices=("sirst", "irstd"), default="sirst",
                    help="sirst: SIRST v1 (masks/<name>_pixels0.png, idx_427/); "
                         "irstd: NUDT-SIRST's (masks/<name>.png, 50_50/)")
    ap.add_argument("--demo-small", action="store_true",
                    help="tools/demo.py's settings (DEMO_SMALL); the options below override them")
    ap.add_argument("--height", type=int, nargs=2, metavar=("MIN", "MAX"), help="image height range (160 256)")
    ap.add_argument("--width", type=int, nargs=2, metavar=("MIN", "MAX"), help="image width range (200 320)")
    ap.add_argument("--p-empty", type=float, help="probability of an image without a target (0.1)")
    ap.add_argument("--targets", type=int, nargs=2, metavar=("MIN", "MAX"), help="targets per image (1 3)")
    ap.add_argument("--sigma", type=float, nargs=2, metavar=("MIN", "MAX"), help="blob s_x, s_y in px (0.6 2.0)")
    ap.add_argument("--amplitude", type=float, nargs=2, metavar=("MIN", "MAX"), help="contrast, grey levels (25 90)")
    a = ap.parse_args(argv)
    kw = dict(DEMO_SMALL) if a.demo_small else {}
    for key, v in (("height", a.height), ("width", a.width), ("p_empty", a.p_empty), ("n_targets", a.targets),
                   ("sigma", a.sigma), ("amplitude", a.amplitude)):
        if v is not None:
            kw[key] = v
    out = make_synthetic_sirst(a.out, a.n, a.seed, layout=a.layout, **kw)
    print(f"wrote {a.n} images to {out}")


if __name__ == "__main__":
    main()
