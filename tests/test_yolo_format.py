"""SIRST → YOLO conversion (gaussconv_plugin.data.yolo_format, tools/prepare_sirst.py) on the real data,
read-only; outputs go to pytest's tmp folders."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gaussconv_plugin.data.sirst import load_image, read_split, sirst_root, target_boxes
from gaussconv_plugin.data.yolo_format import boxes_to_yolo_lines, prepare_yolo, read_manifest

REPO = Path(__file__).resolve().parents[1]


def test_boxes_to_yolo_lines():
    boxes = np.array([[10, 20, 14, 22], [0, 0, 200, 5], [-3, 5, 2, 9], [7, 7, 7, 9]], np.float32)
    lines = boxes_to_yolo_lines(boxes, width=100, height=50)
    assert lines[0] == "0 0.120000 0.420000 0.040000 0.040000"
    assert lines[1] == "0 0.500000 0.050000 1.000000 0.100000"  # clipped to the image
    assert lines[2] == "0 0.010000 0.140000 0.020000 0.080000"
    assert len(lines) == 3  # zero-width box dropped
    assert boxes_to_yolo_lines(np.zeros((0, 4)), 10, 10) == []
    with pytest.raises(ValueError, match="positive"):
        boxes_to_yolo_lines(boxes, 0, 10)


def _parse(line: str) -> np.ndarray:
    return np.array([float(x) for x in line.split()])


def test_prepare_subset_labels_match_masks_and_is_idempotent(tmp_path):
    root = sirst_root()
    out = tmp_path / "y"
    data = prepare_yolo(root, out, limit=6)
    assert data == out.resolve() / "data.yaml"
    yaml = pytest.importorskip("yaml")
    d = yaml.safe_load(data.read_text())
    assert d["names"] == {0: "Target"} and d["nc"] == 1
    for k in ("path", "train", "val", "test"):
        assert Path(d[k]).is_absolute() and Path(d[k]).is_dir()
    assert d["train"].endswith("images/train") and d["val"] == d["test"]
    for split, src in (("train", "trainval"), ("val", "test")):
        names = read_split(root, src)[:6]
        assert sorted(p.stem for p in (out / "images" / split).glob("*.png")) == sorted(names)
        for n in names:
            img = np.asarray(Image.open(out / "images" / split / f"{n}.png"))
            assert img.dtype == np.uint8 and img.ndim == 2  # gray PNG
            np.testing.assert_array_equal(img, load_image(root, n))
            boxes, _ = target_boxes(root, n)
            h, w = img.shape
            got = [_parse(ln) for ln in (out / "labels" / split / f"{n}.txt").read_text().splitlines()]
            assert len(got) == len(boxes)
            for g, b in zip(got, boxes):
                assert g[0] == 0
                np.testing.assert_allclose(g[1:], [(b[0] + b[2]) / 2 / w, (b[1] + b[3]) / 2 / h,
                                                   (b[2] - b[0]) / w, (b[3] - b[1]) / h], atol=1e-6)
    m = read_manifest(out)
    assert m["counts"]["train"]["images"] == 6 and m["counts"]["val"]["images"] == 6
    assert m["n_voc_problem_images"] == len(m["voc_problem_images"])
    assert (out / "voc_problems.txt").read_text().count("\n") == m["n_voc_problem_images"]

    # idempotent: same call leaves every file untouched
    stamp = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert prepare_yolo(root, out, limit=6) == data
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == stamp
    # other parameters rebuild, with no stale files left
    prepare_yolo(root, out, limit=3, channels=3)
    assert len(list((out / "images" / "train").glob("*.png"))) == 3
    assert len(list((out / "labels" / "val").glob("*.txt"))) == 3
    im = Image.open(next((out / "images" / "train").glob("*.png")))
    assert im.mode == "RGB"


def test_cache_follows_the_source_and_the_folder(tmp_path):
    """The cached conversion is reused only while its source is what it read: a name dropped from a split list, an
    edited mask, or a copy of the folder elsewhere (whose data.yaml named the old place) converts again."""
    import shutil

    from gaussconv_plugin.data.synthetic import make_synthetic_sirst

    src = make_synthetic_sirst(tmp_path / "src", n=12, seed=3, layout="irstd")
    out = tmp_path / "y"
    prepare_yolo(src, out)
    train = (src / "50_50" / "train.txt").read_text().split()
    dropped, kept = train[0], train[1]
    (src / "50_50" / "train.txt").write_text("\n".join(train[1:]) + "\n")
    prepare_yolo(src, out)
    assert sorted(p.stem for p in (out / "images" / "train").glob("*.png")) == sorted(train[1:])
    mask = np.zeros_like(np.asarray(Image.open(src / "masks" / f"{kept}.png")))
    mask[2:5, 3:7] = 255  # one 4 × 3 target now
    Image.fromarray(mask).save(src / "masks" / f"{kept}.png")
    prepare_yolo(src, out)
    h, w = mask.shape
    assert (out / "labels" / "train" / f"{kept}.txt").read_text() == (
        f"0 {5 / w:.6f} {3.5 / h:.6f} {4 / w:.6f} {3 / h:.6f}\n")
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    data = prepare_yolo(src, moved)
    assert str(moved.resolve()) in data.read_text() and str(out) not in data.read_text()
    assert dropped not in {p.stem for p in (moved / "images" / "train").glob("*.png")}


def test_a_changed_converter_rebuilds_the_cache(tmp_path, monkeypatch):
    """A change to the code that draws the boxes (here: a label rule that writes nothing) rebuilds a cached
    conversion on the next call, without a version number bumped by hand; the stamp reads the converter's files."""
    from gaussconv_plugin.data import yolo_format
    from gaussconv_plugin.data.synthetic import make_synthetic_sirst

    src = make_synthetic_sirst(tmp_path / "src", n=6, seed=1, layout="irstd")
    out = tmp_path / "y"
    prepare_yolo(src, out)
    labels = {p.name: p.read_text() for p in (out / "labels" / "train").glob("*.txt")}
    assert any(labels.values())
    stamp = yolo_format.converter_stamp()
    assert len(stamp) == 40 and stamp == read_manifest(out)["params"]["code"]
    monkeypatch.setattr(yolo_format, "boxes_to_yolo_lines", lambda *a, **k: [])
    prepare_yolo(src, out)  # same code stamp: the cached folder is kept
    assert {p.name: p.read_text() for p in (out / "labels" / "train").glob("*.txt")} == labels
    monkeypatch.setattr(yolo_format, "converter_stamp", lambda: "0" * 40)  # the converter's code changed
    prepare_yolo(src, out)
    assert not any(p.read_text() for p in (out / "labels" / "train").glob("*.txt"))
    assert read_manifest(out)["params"]["code"] == "0" * 40
    here = Path(yolo_format.__file__).parent
    assert all((here / f).is_file() for f in yolo_format._CONVERTER_MODULES)


def test_an_interrupted_conversion_is_taken_up_and_two_at_once_do_not_mix(tmp_path):
    """A conversion cut after it began replacing the folder (no manifest, a staging folder left) is converted again
    instead of the folder being refused as someone else's; two conversions into one folder at once run one after
    the other, so the folder ends as one of them wrote it, its manifest matching its files. COCO likewise."""
    import threading

    from gaussconv_plugin.data.coco_format import prepare_coco
    from gaussconv_plugin.data.sirst import OWNER
    from gaussconv_plugin.data.synthetic import make_synthetic_sirst

    src = make_synthetic_sirst(tmp_path / "src", n=12, seed=4, layout="irstd")
    out = tmp_path / "y"
    prepare_yolo(src, out)
    (out / "manifest.json").unlink()
    (out / ".staging.cut").mkdir()
    assert (out / OWNER).is_file()
    prepare_yolo(src, out)
    assert read_manifest(out)["counts"]["train"]["images"] == 9 and not list(out.glob(".staging*"))
    coco = tmp_path / "c"
    prepare_coco(src, coco, verbose=False)
    (coco / "summary.json").unlink()
    prepare_coco(src, coco, verbose=False)
    assert (coco / "summary.json").is_file()

    errors = []

    def convert(limit):
        try:
            prepare_yolo(src, out, limit=limit)
        except Exception as e:  # noqa: BLE001 — reported below
            errors.append(e)

    for _ in range(3):
        threads = [threading.Thread(target=convert, args=(k,)) for k in (2, 3, 2, 3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        m = read_manifest(out)
        n = m["params"]["limit"]
        assert not errors and n in (2, 3)
        for ys in ("train", "val"):
            assert len(list((out / "images" / ys).glob("*.png"))) == m["counts"][ys]["images"] == n
            assert len(list((out / "labels" / ys).glob("*.txt"))) == n


def test_an_evaluation_only_conversion_is_a_dataset_ultralytics_accepts(tmp_path):
    """splits=(("val", "test"),) (what the evaluate mode writes): data.yaml still names train and val, which
    Ultralytics' check_det_dataset requires."""
    pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")
    from ultralytics.data.utils import check_det_dataset

    data = prepare_yolo(sirst_root(), tmp_path / "ev", splits=(("val", "test"),), limit=2)
    d = check_det_dataset(str(data))
    assert Path(d["train"]) == Path(d["val"]) == (tmp_path / "ev" / "images" / "val").resolve()


def test_every_source_mode_is_converted(tmp_path):
    """SIRST stores L, RGB, RGBA and P files; a view of one of each (symlinks in tmp) converts to gray PNGs."""
    root = sirst_root()
    picked = {}
    for n in read_split(root, "trainvaltest"):
        with Image.open(root / "images" / f"{n}.png") as im:
            picked.setdefault(im.mode, n)
        if len(picked) == 4:
            break
    assert set(picked) == {"L", "RGB", "RGBA", "P"}, picked
    view = tmp_path / "view"
    (view / "images").mkdir(parents=True)
    (view / "masks").mkdir()
    (view / "idx_427").mkdir()
    for n in picked.values():
        os.symlink(root / "images" / f"{n}.png", view / "images" / f"{n}.png")
        for f in (root / "masks").glob(f"{n}[._]*"):
            os.symlink(f, view / "masks" / f.name)
    names = "\n".join(picked.values()) + "\n"
    (view / "idx_427" / "trainval.txt").write_text(names)
    (view / "idx_427" / "test.txt").write_text(names)
    out = tmp_path / "y"
    prepare_yolo(view, out)
    for n in picked.values():
        a = np.asarray(Image.open(out / "images" / "train" / f"{n}.png"))
        assert a.ndim == 2 and np.array_equal(a, load_image(root, n)), n  # the gray load_image gives


def test_refuses_to_write_into_the_dataset():
    root = sirst_root()
    with pytest.raises(ValueError, match="read-only dataset"):
        prepare_yolo(root, root / "yolo")


def test_refuses_an_out_folder_holding_someone_elses_files(tmp_path):
    """A folder with ``images/`` or ``labels/`` that no conversion wrote (no ``manifest.json``) is the user's: the
    conversion would replace them, so it stops before touching anything (COCO likewise for ``annotations/``); a
    file named as the folder is refused too. A folder a conversion wrote is converted again as before."""
    from gaussconv_plugin.data.coco_format import prepare_coco

    root = sirst_root()
    mine = tmp_path / "mine"
    (mine / "images" / "own").mkdir(parents=True)
    (mine / "images" / "own" / "a.png").write_bytes(b"png")
    (mine / "annotations").mkdir()
    (mine / "annotations" / "test.json").write_text("{}")
    with pytest.raises(ValueError, match=r"holds images that this package did not write \(no manifest.json\)"):
        prepare_yolo(root, mine, limit=2)
    with pytest.raises(ValueError, match=r"holds annotations that this package did not write \(no summary.json\)"):
        prepare_coco(root, out_dir=mine, limit=2, verbose=False)
    assert (mine / "images" / "own" / "a.png").read_bytes() == b"png"
    assert (mine / "annotations" / "test.json").read_text() == "{}" and sorted(p.name for p in mine.iterdir()) == [
        "annotations", "images"]
    with pytest.raises(ValueError, match="splits name the YOLO split 'train' twice"):
        prepare_yolo(root, tmp_path / "dup", splits=[("train", "train"), ("train", "test")], limit=2)
    (tmp_path / "afile").write_text("x")
    with pytest.raises(ValueError, match="afile is a file; name a new or empty folder"):
        prepare_yolo(root, tmp_path / "afile", limit=2)
    ours = tmp_path / "ours"
    prepare_yolo(root, ours, limit=2)
    prepare_yolo(root, ours, limit=3)  # its own earlier output: replaced
    assert len(list((ours / "images" / "train").glob("*.png"))) == 3


def test_prepare_sirst_cli(tmp_path):
    out = tmp_path / "cli"
    p = subprocess.run([sys.executable, str(REPO / "tools" / "prepare_sirst.py"), "--limit", "4", "--out", str(out)],
                       capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert p.returncode == 0, p.stderr
    lines = p.stdout.strip().splitlines()
    assert Path(lines[-1]) == out.resolve() / "data.yaml"
    assert lines[0].startswith("train: 4 images") and lines[1].startswith("val: 4 images")
    assert "VOC xml disagrees with the mask for" in p.stdout
    assert json.loads((out / "manifest.json").read_text())["params"]["limit"] == 4


def test_every_sirst_box_lies_in_its_image_even_where_the_mask_has_another_size():
    """SIRST v1 Misc_111: image 325×220, mask and VOC file 592×400; its boxes are scaled to the image."""
    from PIL import Image

    from gaussconv_plugin.data import read_split, sirst_root, target_boxes

    root = sirst_root()
    for n in read_split(root, "trainvaltest"):
        with Image.open(root / "images" / f"{n}.png") as im:
            w, h = im.size
        boxes, _ = target_boxes(root, n)
        assert len(boxes) and (boxes[:, [0, 2]] <= w).all() and (boxes[:, [1, 3]] <= h).all(), n
    boxes, problems = target_boxes(root, "Misc_111")
    assert problems == []  # the VOC check is done in the mask's own coordinates
    from gaussconv_plugin.data import load_mask, mask_to_boxes

    in_mask = mask_to_boxes(load_mask(root, "Misc_111"))
    assert load_mask(root, "Misc_111").shape == (400, 592) and len(in_mask) == 1
    np.testing.assert_allclose(boxes, in_mask * np.array([325 / 592, 220 / 400] * 2), rtol=1e-6)
