"""A small synthetic infrared small-target dataset in the SIRST (or IRSTD) layout (the embedded default: no
download).

Each image: a smooth cloudy background (bilinearly up-sampled coarse noise at two scales plus a linear
gradient), a few elongated bright clutter streaks, Gaussian sensor noise, and 0–3 targets. A target is a
2-D Gaussian blob ``A·exp(−((x−x₀)²/(2s_x²) + (y−y₀)²/(2s_y²)))`` with ``s ∈ [0.6, 2.0]`` px and contrast
``A`` 25–90 grey levels above the background; its mask is where the blob exceeds ``A/2`` (1–40 px,
the SIRST size range). About 10 % of the images hold no target. Image sizes vary (W 200–320, H 160–256).

Command line::

    python -m gaussconv_plugin.data.synthetic --out /tmp/synth --n 64 --seed 0
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from .sirst import mask_to_boxes

__all__ = ["make_synthetic_image", "make_synthetic_sirst"]


def _upsample(coarse: np.ndarray, h: int, w: int) -> np.ndarray:
    im = Image.fromarray(coarse.astype(np.float32), mode="F")
    return np.asarray(im.resize((w, h), Image.BILINEAR), dtype=np.float32)


def make_synthetic_image(rng: np.random.Generator, h: int, w: int, p_empty: float = 0.1):
    """One image: ``(H, W)`` uint8 image and ``(H, W)`` bool mask."""
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
    n_t = 0 if rng.random() < p_empty else int(rng.integers(1, 4))
    for _ in range(n_t):
        sx, sy = rng.uniform(0.6, 2.0, size=2)
        x0, y0 = rng.uniform(8, w - 8), rng.uniform(8, h - 8)
        amp = rng.uniform(25, 90)
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
                         layout: str = "sirst") -> Path:
    """Write ``n`` synthetic images to ``out_dir`` and return it. ``layout='sirst'``: SIRST v1 (``images/``,
    ``masks/<name>_pixels0.png`` + VOC ``masks/<name>.xml``, ``idx_427/{train,val,test,trainval,trainvaltest}.txt``);
    ``layout='irstd'``: the IRSTD layout of NUDT-SIRST (``masks/<name>.png``, no xml, ``50_50/{train,test}.txt``,
    train = SIRST's trainval). Deterministic for a given ``seed`` (same images in both layouts); rewriting the
    same folder is idempotent."""
    if n < 4:
        raise ValueError(f"n must be at least 4 to fill the train/val/test splits (got {n})")
    if layout not in ("sirst", "irstd"):
        raise ValueError(f"layout must be 'sirst' or 'irstd' (got {layout!r})")
    idx = "idx_427" if layout == "sirst" else "50_50"
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / idx).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    names = []
    for i in range(n):
        name = f"Synth_{i + 1}"
        h, w = int(rng.integers(160, 257)), int(rng.integers(200, 321))
        img, mask = make_synthetic_image(rng, h, w)
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
        f"Synthetic IR small-target set (gaussconv_plugin), {layout} layout, n={n}, seed={seed}.\n")
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Write a synthetic IR small-target dataset (SIRST or IRSTD layout).")
    ap.add_argument("--out", required=True, help="output folder")
    ap.add_argument("--n", type=int, default=64, help="number of images (default 64)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layout", choices=("sirst", "irstd"), default="sirst",
                    help="sirst: SIRST v1 (masks/<name>_pixels0.png, idx_427/); "
                         "irstd: NUDT-SIRST's (masks/<name>.png, 50_50/)")
    a = ap.parse_args(argv)
    out = make_synthetic_sirst(a.out, a.n, a.seed, layout=a.layout)
    print(f"wrote {a.n} images to {out}")


if __name__ == "__main__":
    main()
