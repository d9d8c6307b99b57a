"""SIRST → COCO conversion (real SIRST, read-only) and MMDetection's loading of every PNG mode SIRST uses."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gaussconv_plugin.data import load_image, read_split, sirst_root, target_boxes
from gaussconv_plugin.data.coco_format import coco_dict, default_coco_dir, prepare_coco


@pytest.fixture(scope="module")
def root() -> Path:
    return sirst_root()


def test_prepare_coco_subset_is_correct_and_idempotent(root, tmp_path, capsys):
    out = prepare_coco(root, tmp_path / "coco", splits=("trainval", "test"), limit=12)
    assert out == (tmp_path / "coco").resolve()
    printed = capsys.readouterr().out
    assert "trainval: 12 images" in printed and "VOC xml problems in" in printed
    summary = json.loads((out / "summary.json").read_text())
    for split in ("trainval", "test"):
        f = out / "annotations" / f"{split}.json"
        coco = json.loads(f.read_text())
        names = read_split(root, split)[:12]
        assert [im["sirst_name"] for im in coco["images"]] == names
        assert coco["categories"] == [dict(id=1, name="Target", supercategory="target")]
        ids = [a["id"] for a in coco["annotations"]]
        assert ids == list(range(1, len(ids) + 1))
        n_boxes = 0
        for im in coco["images"]:
            p = Path(im["file_name"])
            assert p.is_absolute() and p == (root / "images" / f"{im['sirst_name']}.png").resolve()
            with Image.open(p) as pil:
                assert pil.size == (im["width"], im["height"])
            boxes, _ = target_boxes(root, im["sirst_name"])
            anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
            xyxy = [[a["bbox"][0], a["bbox"][1], a["bbox"][0] + a["bbox"][2], a["bbox"][1] + a["bbox"][3]]
                    for a in anns]
            assert xyxy == boxes.tolist()
            assert all(a["area"] == a["bbox"][2] * a["bbox"][3] > 0 and a["iscrowd"] == 0 for a in anns)
            n_boxes += len(anns)
        assert summary["splits"][split]["images"] == 12 and summary["splits"][split]["boxes"] == n_boxes > 0
        assert summary["splits"][split]["images_with_voc_problems"] == len(summary["splits"][split]["voc_problems"])
    # idempotent: same content, files not rewritten
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    assert prepare_coco(root, tmp_path / "coco", limit=12, verbose=False) == out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.json")} == stamps
    assert not list(out.rglob("*.tmp"))


def test_prepare_coco_defaults_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("GAUSSCONV_CACHE", str(tmp_path))
    assert default_coco_dir() == tmp_path / "sirst_coco" / "idx_427"
    assert default_coco_dir("idx_320", 16) == tmp_path / "sirst_coco" / "idx_320-limit16"
    with pytest.raises(ValueError, match="limit must be a positive number"):
        prepare_coco(limit=0)
    with pytest.raises(FileNotFoundError, match="split file .* not found"):
        prepare_coco(out_dir=tmp_path / "x", splits=("nope",))


def test_a_split_left_from_another_source_is_removed(tmp_path):
    """Converting another dataset into a folder, naming fewer splits, removes the split jsons the first one wrote
    (no train.json of one dataset beside another's test.json); converting the same source again with fewer splits
    keeps them, and summary.json lists exactly the jsons on disk."""
    from gaussconv_plugin.data.synthetic import make_synthetic_sirst

    a = make_synthetic_sirst(tmp_path / "a", n=8, seed=1, layout="irstd")
    b = make_synthetic_sirst(tmp_path / "b", n=8, seed=2, layout="irstd")
    out = tmp_path / "coco"
    prepare_coco(a, out, splits=("train", "test"), verbose=False)
    prepare_coco(a, out, splits=("test",), verbose=False)  # same source: train.json stays
    assert sorted(p.stem for p in (out / "annotations").glob("*.json")) == ["test", "train"]
    assert sorted(json.loads((out / "summary.json").read_text())["splits"]) == ["test", "train"]
    prepare_coco(b, out, splits=("test",), verbose=False)  # another source: a's train.json goes
    assert sorted(p.stem for p in (out / "annotations").glob("*.json")) == ["test"]
    meta = json.loads((out / "summary.json").read_text())
    assert sorted(meta["splits"]) == ["test"] and meta["root"] == str(b.resolve())
    test = json.loads((out / "annotations" / "test.json").read_text())
    assert all(im["file_name"].startswith(str(b.resolve())) for im in test["images"])


def test_full_conversion_counts(root, tmp_path):
    """All 427 images: every image has >= 1 box (533 in all); the VOC cross-check finds no problem on SIRST v1."""
    coco, summary = coco_dict(root, read_split(root, "trainvaltest"))
    assert summary["images"] == 427 == len(coco["images"]) and summary["boxes"] == 533 == len(coco["annotations"])
    per_image = {}
    for a in coco["annotations"]:
        per_image[a["image_id"]] = per_image.get(a["image_id"], 0) + 1
    assert sorted(per_image) == sorted(im["id"] for im in coco["images"]) and min(per_image.values()) >= 1
    assert summary["images_with_voc_problems"] == 0 and summary["voc_problems"] == {}


def test_boxes_inside_and_the_voc_check_at_hand_made_boxes():
    """The containment rule itself: ± tol px (2 inside, 3 outside), per side; a VOC box that is the union of two
    component boxes is consistent, one larger than that union is not, a component in no box is named."""
    import numpy as np

    from gaussconv_plugin.data.sirst import boxes_inside, check_boxes_against_voc

    voc = np.array([[10.0, 10.0, 20.0, 20.0]])
    boxes = np.array([[8, 10, 20, 20], [7, 10, 20, 20], [10, 10, 22, 20], [10, 10, 20, 23], [12, 12, 18, 18]], float)
    assert boxes_inside(boxes, voc)[:, 0].tolist() == [True, False, True, False, True]
    two = np.array([[10, 10, 13, 13], [16, 15, 20, 20]], float)
    assert check_boxes_against_voc(two, voc) == []  # one VOC box spanning both targets: their union
    assert check_boxes_against_voc(two[:1], voc) != []  # the VOC box is larger than its one component by 7 px
    problems = check_boxes_against_voc(np.array([[40, 40, 44, 44]], float), voc)
    assert "mask component [40.0, 40.0, 44.0, 44.0] lies in no VOC box" in problems


def test_sirst_voc_files_that_merge_targets(root):
    """docs/usage.md and check_boxes_against_voc say 69 of SIRST v1's 427 VOC files hold one box spanning several
    mask components (why boxes come from the masks): count them."""
    from gaussconv_plugin.data.sirst import boxes_inside, load_mask, load_voc_boxes, mask_to_boxes

    names = read_split(root, "trainvaltest")
    merged = 0
    for name in names:  # the containment check_boxes_against_voc uses, at its default tolerance
        inside = boxes_inside(mask_to_boxes(load_mask(root, name)), load_voc_boxes(root, name))  # (K, V)
        merged += bool((inside.sum(0) >= 2).any())
    assert (merged, len(names)) == (69, 427)


def test_mmdet_loads_every_png_mode_like_load_image(root, tmp_path):
    """LoadImageFromFile (cv2, color) on L / RGB / RGBA / palette files gives 3 equal channels whose value is
    load_image's gray, so the json can point at the original files (no converted copy is needed)."""
    from mmdet.datasets import CocoDataset
    from mmengine.registry import DefaultScope

    with DefaultScope.overwrite_default_scope("mmdet"):
        _check_modes(root, tmp_path, CocoDataset)


def _check_modes(root, tmp_path, CocoDataset):
    by_mode: dict[str, str] = {}
    for name in read_split(root, "trainvaltest"):
        with Image.open(root / "images" / f"{name}.png") as im:
            by_mode.setdefault(im.mode, name)
    assert set(by_mode) == {"L", "RGB", "RGBA", "P"}, by_mode
    coco, _ = coco_dict(root, list(by_mode.values()))
    (tmp_path / "annotations").mkdir()
    (tmp_path / "annotations" / "modes.json").write_text(json.dumps(coco))
    ds = CocoDataset(
        data_root=str(tmp_path), ann_file="annotations/modes.json", data_prefix=dict(img=""),
        metainfo=dict(classes=("Target",)), test_mode=True,
        pipeline=[dict(type="LoadImageFromFile", color_type="color"), dict(type="LoadAnnotations", with_bbox=True)],
    )
    assert len(ds) == 4
    for i, (mode, name) in enumerate(by_mode.items()):
        item = ds[i]
        assert item["img_path"] == str((root / "images" / f"{name}.png").resolve())
        img = item["img"]
        gray = load_image(root, name)
        assert img.dtype == np.uint8 and img.shape == gray.shape + (3,), mode
        # BGR -> gray with the ITU-R 601 weights PIL uses for 'L'
        b, gr, r = (img[..., c].astype(np.int64) for c in range(3))
        g = (r * 299 + gr * 587 + b * 114 + 500) // 1000
        assert np.abs(g.astype(int) - gray.astype(int)).max() <= 1, mode
        np.testing.assert_array_equal(item["gt_bboxes"].numpy(), target_boxes(root, name)[0])
