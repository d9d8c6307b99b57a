"""Both dataset layouts (SIRST v1 and the common IRSTD layout of NUDT-SIRST / IRSTD-1k) through every data entry
point: layout detection, split lists, masks, boxes, YOLO / COCO conversion, the U-Net dataset, the CLI, the
committed NUDT-SIRST validation carve, one-line errors for bad folders, and the real NUDT-SIRST folder."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage

from gaussconv_plugin.data import layout as L
from gaussconv_plugin.data import split_lists
from gaussconv_plugin.data.coco_format import default_coco_dir, prepare_coco
from gaussconv_plugin.data.seg_dataset import SIRSTSegDataset
from gaussconv_plugin.data.sirst import (
    load_image, load_mask, mask_to_boxes, nudt_root, read_split, sirst_root, target_boxes,
)
from gaussconv_plugin.data.yolo_format import prepare_yolo, read_manifest

REPO = Path(__file__).resolve().parents[1]
NUDT = REPO.parent / "shared" / "data" / "nudt_sirst"

# 32×32 images; each target is a list of (y, x) pixels; "b" holds two targets, one of them two pixels touching
# only diagonally (one 8-connected component); "c" holds none.
TARGETS = {
    "a": [[(5, 6), (5, 7), (6, 6), (6, 7)]],
    "b": [[(20, 3), (21, 4)], [(10, 25), (10, 26), (10, 27), (11, 26)]],
    "c": [],
    "d": [[(28, 28), (29, 29), (30, 30), (30, 31)]],
}
BOXES = {  # pixel-edge xyxy, sorted by (y1, x1)
    "a": [[6, 5, 8, 7]],
    "b": [[25, 10, 28, 12], [3, 20, 5, 22]],
    "c": [],
    "d": [[28, 28, 32, 31]],
}
SPLITS = {"sirst": ("idx_427", {"trainval": ["a", "b", "c"], "test": ["d", "a"]}),
          "irstd": ("50_50", {"train": ["a", "b", "c"], "test": ["d", "a"]})}
TRAIN = {"sirst": "trainval", "irstd": "train"}


def _files(root: Path) -> dict:
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def make_root(base: Path, layout: str, xml: bool = True) -> Path:
    """A tiny dataset folder in ``layout`` ('sirst' or 'irstd') under ``base``."""
    root = base / f"{layout}_root"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for k, (name, targets) in enumerate(TARGETS.items()):
        img = rng.integers(40, 90, (32, 32), dtype=np.uint8)
        mask = np.zeros((32, 32), np.uint8)
        for t in targets:
            for y, x in t:
                mask[y, x], img[y, x] = 255, 230
        im = Image.fromarray(img, "L")
        (im.convert("RGB") if k % 2 else im).save(root / "images" / f"{name}.png")  # RGB like NUDT-SIRST
        suffix = "_pixels0.png" if layout == "sirst" else ".png"
        Image.fromarray(mask, "L").save(root / "masks" / f"{name}{suffix}")
    if layout == "sirst" and xml:  # one VOC file, deliberately off by 3 px: the cross-check reports it
        (root / "masks" / "a.xml").write_text(
            "<annotation><object><name>Target</name><bndbox><xmin>9</xmin><ymin>5</ymin><xmax>10</xmax>"
            "<ymax>6</ymax></bndbox></object></annotation>")
    idx, lists = SPLITS[layout]
    (root / idx).mkdir()
    for split, names in lists.items():
        (root / idx / f"{split}.txt").write_text("\n".join(names) + "\n")
    return root


@pytest.fixture(params=["sirst", "irstd"])
def root(request, tmp_path) -> Path:
    return make_root(tmp_path, request.param)


def _layout_of(root: Path) -> str:
    return root.name.split("_")[0]


# ---------------------------------------------------------------------------------------------------------- good


def test_detect_layout_default_idx_and_mask_path(root):
    layout = _layout_of(root)
    assert L.detect_layout(root) == layout
    assert L.default_idx(root, TRAIN[layout]) == SPLITS[layout][0] == L.default_idx(root)
    suffix = "_pixels0.png" if layout == "sirst" else ".png"
    assert L.mask_path(root, "a") == root / "masks" / f"a{suffix}"
    assert L.mask_path(root, "a", "irstd") == root / "masks" / "a.png"
    assert L.default_splits(layout) == (TRAIN[layout], "test")
    assert sirst_root(root) == root  # any layout is accepted as an explicit root
    if layout == "irstd":  # lists in the root itself (as some IRSTD-1k copies ship them): idx '.'
        for f in (root / "50_50").iterdir():
            f.rename(root / f.name)
        (root / "50_50").rmdir()
        assert L.default_idx(root, "train") == "." and read_split(root, "train") == ["a", "b", "c"]


def test_read_split_masks_and_boxes_from_components(root):
    layout = _layout_of(root)
    idx, lists = SPLITS[layout]
    for split, names in lists.items():
        assert read_split(root, split) == names == read_split(root, split, idx)
    for name, targets in TARGETS.items():
        m = load_mask(root, name)
        assert m.dtype == bool and m.shape == (32, 32) and m.sum() == sum(len(t) for t in targets)
        assert load_image(root, name).shape == (32, 32)
        boxes, problems = target_boxes(root, name)
        assert boxes.tolist() == BOXES[name]
        # VOC cross-check only where an xml exists (SIRST's a.xml, off by 3 px)
        assert bool(problems) == (layout == "sirst" and name == "a")


def test_prepare_yolo_both_layouts_never_writes_into_root(root, tmp_path):
    layout = _layout_of(root)
    before = _files(root)
    data = prepare_yolo(root, tmp_path / "yolo")
    assert _files(root) == before
    m = read_manifest(data.parent)
    assert m["layout"] == layout and m["long_side"] == [32, 32]
    assert m["params"]["idx"] == SPLITS[layout][0]
    assert m["params"]["splits"] == [["train", TRAIN[layout]], ["val", "test"]]
    assert m["counts"]["train"] == {"images": 3, "targets": 3, "background_images": 1}
    assert m["n_voc_problem_images"] == (1 if layout == "sirst" else 0)
    text = data.read_text()
    assert f"{layout} layout" in text and "imgsz=32" in text
    for ys, names in (("train", ["a", "b", "c"]), ("val", ["d", "a"])):
        for n in names:
            lines = (data.parent / "labels" / ys / f"{n}.txt").read_text().splitlines()
            assert len(lines) == len(BOXES[n])
            for ln, (x1, y1, x2, y2) in zip(lines, BOXES[n]):
                assert ln == f"0 {(x1 + x2) / 64:.6f} {(y1 + y2) / 64:.6f} {(x2 - x1) / 32:.6f} {(y2 - y1) / 32:.6f}"
    with pytest.raises(ValueError, match="read-only dataset"):
        prepare_yolo(root, root / "out")


def test_prepare_coco_both_layouts(root, tmp_path, monkeypatch):
    monkeypatch.setenv("GAUSSCONV_CACHE", str(tmp_path / "cache"))
    layout = _layout_of(root)
    before = _files(root)
    out = prepare_coco(root, verbose=False)
    idx = SPLITS[layout][0]
    label = f"{root.name}-{hashlib.sha1(str(root.resolve()).encode()).hexdigest()[:8]}"  # not a shared dataset
    assert out == (tmp_path / "cache" / f"{label}_coco" / idx).resolve()
    # a copy of the same dataset elsewhere gets its own default folders: one never replaces the other's
    twin = tmp_path / "elsewhere" / root.name
    shutil.copytree(root, twin)
    assert prepare_coco(twin, verbose=False).parent != out.parent
    assert prepare_yolo(twin, limit=2).parent.name.endswith("_yolo-limit2")
    assert prepare_yolo(twin, limit=2).parent != prepare_yolo(root, limit=2).parent
    assert default_coco_dir() == tmp_path / "cache" / "sirst_coco" / "idx_427"  # the configs' default: unchanged
    assert _files(root) == before
    coco = json.loads((out / "annotations" / f"{TRAIN[layout]}.json").read_text())
    assert [im["sirst_name"] for im in coco["images"]] == ["a", "b", "c"]
    xyxy = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
            for a in coco["annotations"]]
    assert xyxy == BOXES["a"] + BOXES["b"]
    assert ("_pixels0" in coco["info"]["boxes"]) == (layout == "sirst")
    with pytest.raises(ValueError, match="read-only dataset"):
        prepare_coco(root, root / "coco", verbose=False)


def test_seg_dataset_both_layouts_and_registered_name(root):
    layout = _layout_of(root)
    ds = SIRSTSegDataset(root, split="test", mode="test")  # idx default: the layout's folder
    assert ds.layout == layout and ds.names == ["d", "a"]
    for i, n in enumerate(ds.names):
        s = ds[i]
        assert s["inputs"].shape == (1, 32, 32)
        assert torch.equal(s["data_samples"]["gt_mask"].bool(), torch.from_numpy(load_mask(root, n)))
    tr = SIRSTSegDataset(root, split=TRAIN[layout], idx=None, mode="train", crop_size=16,
                         rng=np.random.default_rng(0))
    assert len(tr) == 3 and tr[1]["inputs"].shape == (1, 16, 16)

    from mmengine.registry import DATASETS

    import gaussconv_plugin.mmdet  # noqa: F401  (registers SIRSTSegDataset)

    built = DATASETS.build(dict(type="SIRSTSegDataset", data_root=str(root), split="test", idx=None, mode="test"))
    assert isinstance(built, SIRSTSegDataset) and built.names == ["d", "a"]


def test_prepare_sirst_cli_irstd(tmp_path):
    root = make_root(tmp_path, "irstd")
    out = tmp_path / "cli"
    p = subprocess.run([sys.executable, str(REPO / "tools" / "prepare_sirst.py"), "--data-root", str(root),
                        "--splits", "train:train", "val:test", "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert lines[0] == "train: 3 images, 3 targets, 1 without target"
    assert lines[1] == "val: 2 images, 2 targets, 0 without target"
    assert "irstd layout" in lines[2] and "imgsz=32" in lines[2]
    assert Path(lines[-1]) == out.resolve() / "data.yaml"


def test_synthetic_irstd_layout(tmp_path):
    from gaussconv_plugin.data import make_synthetic_sirst

    r = make_synthetic_sirst(tmp_path / "s", n=4, seed=1, layout="irstd")
    assert L.detect_layout(r) == "irstd"
    assert sorted(p.name for p in (r / "50_50").iterdir()) == ["test.txt", "train.txt"]
    assert len(read_split(r, "train")) == 3 and read_split(r, "test") == ["Synth_4"]
    assert not list((r / "masks").glob("*.xml"))


# ------------------------------------------------------------------------------------------------------ bad roots


def _bad(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A broken folder and the split to ask for."""
    layout = "sirst" if kind.startswith("sirst") else "irstd"
    root = make_root(tmp_path, layout, xml=False)
    idx, _ = SPLITS[layout]
    split = TRAIN[layout]
    if kind.endswith("no_masks"):
        for f in (root / "masks").iterdir():
            f.unlink()
        (root / "masks").rmdir()
    elif kind.endswith("no_images"):
        for f in (root / "images").iterdir():
            f.unlink()
        (root / "images").rmdir()
    elif kind.endswith("unmatched_masks"):  # masks named like neither layout
        for f in (root / "masks").iterdir():
            f.rename(f.with_name("x" + f.name))
    elif kind.endswith("mixed_masks"):  # one SIRST-style mask among the IRSTD ones
        Image.new("L", (32, 32)).save(root / "masks" / "a_pixels0.png")
    elif kind.endswith("image_without_mask"):
        L.mask_path(root, "b").unlink()
    elif kind.endswith("split_names_missing_file"):
        (root / idx / f"{split}.txt").write_text("a\nzzz\n")
    elif kind.endswith("empty_split"):
        (root / idx / f"{split}.txt").write_text("\n \n")
    elif kind.endswith("no_split_file"):
        (root / idx / f"{split}.txt").unlink()
    elif kind == "irstd_no_split_folder":
        for f in (root / idx).iterdir():
            f.unlink()
        (root / idx).rmdir()
    elif kind == "irstd_two_split_folders":
        (root / "70_30").mkdir()
        (root / "70_30" / "train.txt").write_text("a\n")
    return root, split


BAD = {  # kind: (exception, what the message must say)
    "sirst_no_masks": (FileNotFoundError, r"has no masks/ folder"),
    "irstd_no_masks": (FileNotFoundError, r"has no masks/ folder"),
    "irstd_no_images": (FileNotFoundError, r"has no images/ folder"),
    "sirst_unmatched_masks": (ValueError, r"cannot tell the layout of .*none of the 4 images"),
    "irstd_unmatched_masks": (ValueError, r"cannot tell the layout of .*none of the 4 images"),
    "irstd_mixed_masks": (ValueError, r"mixes 1 SIRST-style .* and 4 IRSTD-style"),
    "sirst_image_without_mask": (FileNotFoundError, r"lists 1 missing file\(s\) in .*b_pixels0\.png"),
    "irstd_image_without_mask": (FileNotFoundError, r"lists 1 missing file\(s\) in .*masks/b\.png"),
    "sirst_split_names_missing_file": (FileNotFoundError, r"lists 2 missing file\(s\) in .*images/zzz\.png"),
    "irstd_split_names_missing_file": (FileNotFoundError, r"lists 2 missing file\(s\) in .*images/zzz\.png"),
    "sirst_empty_split": (ValueError, r"split file .*trainval\.txt lists no image names"),
    "irstd_empty_split": (ValueError, r"split file .*train\.txt lists no image names"),
    "sirst_no_split_file": (FileNotFoundError, r"split file .*trainval\.txt not found .*lists in .*: test"),
    "irstd_no_split_file": (FileNotFoundError, r"no sub-folder of .* holds train\.txt"),
    "irstd_no_split_folder": (FileNotFoundError, r"no sub-folder of .* holds train\.txt"),
    "irstd_two_split_folders": (ValueError, r"several sub-folders of .* hold train\.txt: 50_50, 70_30; pass idx="),
}


@pytest.mark.parametrize("kind", sorted(BAD))
def test_bad_root_one_line_error_at_every_entry_point(kind, tmp_path):
    root, split = _bad(kind, tmp_path)
    exc, pattern = BAD[kind]
    before = _files(root)
    calls = {
        "read_split": lambda: read_split(root, split),
        "prepare_yolo": lambda: prepare_yolo(root, tmp_path / "yolo", splits=(("train", split),)),
        "prepare_coco": lambda: prepare_coco(root, tmp_path / "coco", splits=(split,), verbose=False),
        "SIRSTSegDataset": lambda: SIRSTSegDataset(root, split=split, mode="test"),
    }
    for where, call in calls.items():
        with pytest.raises(exc, match=pattern) as e:
            call()
        msg = str(e.value)
        assert "\n" not in msg, (where, msg)
        assert str(root) in msg, (where, msg)  # names where
    assert _files(root) == before  # never writes into the dataset


def test_missing_mask_or_image_on_direct_loads(tmp_path):
    root = make_root(tmp_path, "irstd")
    L.mask_path(root, "d").unlink()
    with pytest.raises(FileNotFoundError, match=r"mask .*masks/d\.png of image 'd' not found"):
        load_mask(root, "d")
    with pytest.raises(FileNotFoundError, match=r"image .*images/zz\.png not found"):
        load_image(root, "zz")
    with pytest.raises(FileNotFoundError, match=r"names=\[\.\.\.\] lists 1 missing file"):
        SIRSTSegDataset(root, names=["a", "d"], mode="test")
    with pytest.raises(ValueError, match="layout must be one of"):
        L.mask_path(root, "a", "voc")


# ------------------------------------------------------------------------------------------------ committed lists


def test_carve_val_is_deterministic_and_disjoint():
    names = [f"{k:06d}" for k in range(1, 101)]
    tr, va = split_lists.carve_val(names, 0.1, seed=0)
    assert (tr, va) == split_lists.carve_val(names, 0.1, seed=0)
    assert len(va) == 10 and not set(tr) & set(va) and set(tr) | set(va) == set(names)
    assert tr == [n for n in names if n in set(tr)]  # parent order kept
    assert split_lists.carve_val(names, 0.1, seed=1)[1] != va
    with pytest.raises(ValueError, match="repeats names"):
        split_lists.carve_val(["a", "a", "b"])


def test_committed_lists_found_by_content(tmp_path, monkeypatch):
    root = make_root(tmp_path, "irstd")
    # NUDT-SIRST's committed lists do not apply to another dataset with the same split folder name
    with pytest.raises(FileNotFoundError, match=r"split file .*val_sub\.txt not found"):
        read_split(root, "val_sub", "50_50")
    assert split_lists.committed_idxs(root, "val_sub") == []
    # a carve of this root, committed to a (temporary) package folder, is found by read_split
    committed = tmp_path / "committed"
    before = _files(root)
    out = split_lists.write_derived_splits(root, "50_50", fraction=0.34, seed=0, out_dir=committed)
    assert out == committed / "irstd_root" / "50_50" and _files(root) == before
    assert sorted(p.name for p in out.iterdir()) == ["derived.json", "train_sub.txt", "val_sub.txt"]
    monkeypatch.setattr(split_lists, "COMMITTED_DIR", committed)
    val, sub = read_split(root, "val_sub"), read_split(root, "train_sub", "50_50")
    assert len(val) == 1 and sorted(val + sub) == ["a", "b", "c"]
    ds = SIRSTSegDataset(root, split="val_sub", mode="test")
    assert ds.names == val
    # ... and no longer once the dataset's own parent list changes (fingerprint mismatch)
    (root / "50_50" / "train.txt").write_text("a\nb\n")
    with pytest.raises(FileNotFoundError, match=r"no sub-folder of .* holds val_sub\.txt"):
        read_split(root, "val_sub")
    with pytest.raises(ValueError, match="inside the read-only dataset"):
        split_lists.write_derived_splits(root, "50_50", out_dir=root / "x")


# -------------------------------------------------------------------------------------------- real NUDT-SIRST


def test_nudt_root_resolver(monkeypatch, tmp_path):
    monkeypatch.delenv("GAUSSCONV_NUDT_ROOT", raising=False)
    assert nudt_root().resolve() == NUDT.resolve()
    other = make_root(tmp_path, "irstd")
    monkeypatch.setenv("GAUSSCONV_NUDT_ROOT", str(other))
    assert nudt_root() == other
    monkeypatch.setenv("GAUSSCONV_NUDT_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="GAUSSCONV_NUDT_ROOT"):
        nudt_root()


def test_real_nudt_layout_splits_files_and_boxes():
    root = nudt_root()
    before = {p: p.stat().st_mtime_ns for p in (root / "50_50").iterdir()}
    assert L.detect_layout(root) == "irstd" and L.default_idx(root, "train") == "50_50"
    train, test = read_split(root, "train"), read_split(root, "test")  # read_split checks image + mask exist
    assert len(train) == 663 and len(test) == 664 and len(set(train)) == 663 and not set(train) & set(test)
    for n in train + test:
        assert (root / "images" / f"{n}.png").is_file() and (root / "masks" / f"{n}.png").is_file()
    for n in train[:3] + test[:2]:  # 5 images: boxes = the mask's 8-connected components (scipy, independently)
        mask = np.asarray(Image.open(root / "masks" / f"{n}.png").convert("L")) > 127
        lab, k = ndimage.label(mask, structure=np.ones((3, 3)))
        ref = sorted([[s[1].start, s[0].start, s[1].stop, s[0].stop] for s in ndimage.find_objects(lab)],
                     key=lambda b: (b[1], b[0]))
        boxes, problems = target_boxes(root, n)
        assert k >= 1 and boxes.tolist() == ref and problems == []
        assert np.array_equal(load_mask(root, n), mask) and load_image(root, n).shape == (256, 256)
    assert {p: p.stat().st_mtime_ns for p in (root / "50_50").iterdir()} == before


def test_real_nudt_committed_val_carve():
    root = nudt_root()
    train, test = read_split(root, "train"), read_split(root, "test")
    sub, val = read_split(root, "train_sub"), read_split(root, "val_sub")  # found in the package, not in root
    assert not (root / "50_50" / "val_sub.txt").exists()
    assert len(val) == 66 and len(sub) == 597
    assert not set(val) & set(sub) and not (set(val) | set(sub)) & set(test)
    assert set(val) | set(sub) == set(train)
    assert L.default_idx(root, "val_sub") == "50_50"
    assert (sub, val) == split_lists.carve_val(train, 0.1, seed=0)  # what tools/make_val_split.py regenerates
    recipe = json.loads((split_lists.COMMITTED_DIR / "nudt_sirst" / "50_50" / "derived.json").read_text())
    assert recipe["parent_sha256"] == split_lists.names_fingerprint(train) and recipe["splits"] == {
        "train_sub": 597, "val_sub": 66}


def test_real_nudt_regeneration_is_identical(tmp_path):
    out = split_lists.write_derived_splits(nudt_root(), "50_50", "train", 0.1, 0, "nudt_sirst", tmp_path)
    committed = split_lists.COMMITTED_DIR / "nudt_sirst" / "50_50"
    for f in ("train_sub.txt", "val_sub.txt", "derived.json"):
        assert (out / f).read_text() == (committed / f).read_text(), f


def test_real_nudt_yolo_and_unet_configs(tmp_path):
    root = nudt_root()
    data = prepare_yolo(root, tmp_path / "y", splits=(("train", "train_sub"), ("val", "val_sub")), limit=3)
    m = read_manifest(data.parent)
    assert m["layout"] == "irstd" and m["long_side"] == [256, 256] and m["params"]["idx"] == "50_50"
    assert "imgsz=256" in data.read_text()
    for n in read_split(root, "train_sub")[:3]:
        lines = (data.parent / "labels" / "train" / f"{n}.txt").read_text().splitlines()
        assert len(lines) == len(target_boxes(root, n)[0]) >= 1

    from mmengine.config import Config
    from mmengine.registry import DATASETS

    import gaussconv_plugin.mmdet  # noqa: F401

    base = Config.fromfile(str(REPO / "mmdet_cfgs" / "unet_mshnet_base_nudt_cpu.py"))
    gauss = Config.fromfile(str(REPO / "mmdet_cfgs" / "unet_gauss_diff_nudt_cpu.py"))
    assert base.model.net.gauss_conv == "none" and base.model.loss.mode == "var"
    assert gauss.model.net.gauss_conv == "both" and gauss.model.loss.mode == "diff"
    for c in (base, gauss):
        d = c.train_dataloader.dataset
        assert d.data_root is None and d.default_root == "nudt_sirst" and d.crop_size == d.base_size == 256
        assert (d.split, c.val_dataloader.dataset.split, c.test_dataloader.dataset.split) == (
            "train_sub", "val_sub", "test")
    val = DATASETS.build(dict(base.val_dataloader.dataset, max_images=2))
    assert Path(val.root).resolve() == root.resolve() and val.layout == "irstd"
    assert val.names == read_split(root, "val_sub")[:2]
    s = val[0]
    assert s["inputs"].shape == (1, 256, 256) and s["data_samples"]["gt_mask"].sum() > 0
    tr = DATASETS.build(dict(base.train_dataloader.dataset, max_images=1))
    assert tr[0]["inputs"].shape == (1, 256, 256)
    # the SIRST configs keep working with idx=None (the layout default, idx_427)
    sirst_cfg = Config.fromfile(str(REPO / "mmdet_cfgs" / "unet_mshnet_base_cpu.py"))
    assert sirst_cfg.val_dataloader.dataset.idx is None
    assert os.fspath(DATASETS.build(dict(sirst_cfg.val_dataloader.dataset, max_images=1)).root) == os.fspath(
        sirst_root())
