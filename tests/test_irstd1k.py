"""IRSTD-1k (``../shared/data/irstd1k``: 1001 images of 512×512, ``idx/{trainval,test}.txt``) through every tool:
the root finder, the split lists and the committed carve, the grey-mask rule, ``tools/prepare_sirst.py`` for YOLO and
COCO, the U-Net dataset and configs (256-px crops for training, full 512² images for testing) and
``tools/ablation.py --dataset irstd1k`` (its plan and the evaluate mode's checks, without training). Small subsets
(``limit``) keep it fast; the dataset folder is only read."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gaussconv_plugin.data import irstd1k_root, load_mask, mask_to_boxes, read_split, target_boxes  # noqa: E402
from gaussconv_plugin.data import layout as L  # noqa: E402
from gaussconv_plugin.data import split_lists  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def root() -> Path:
    return irstd1k_root().resolve()


def _listing(root: Path) -> dict:
    """Every file of the dataset folder's top level and ``idx/`` with its mtime (the folder must stay untouched)."""
    return {p: p.stat().st_mtime_ns for d in (root, root / "idx") for p in d.iterdir()}


def _raw(root: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(root / "masks" / f"{name}.png").convert("L"))


# ------------------------------------------------------------------------------------------------- data


def test_root_resolver(monkeypatch, tmp_path):
    monkeypatch.delenv("GAUSSCONV_IRSTD1K_ROOT", raising=False)
    assert irstd1k_root().resolve() == (REPO.parent / "shared" / "data" / "irstd1k").resolve()
    other = tmp_path / "mine"
    (other / "images").mkdir(parents=True)
    (other / "masks").mkdir()
    monkeypatch.setenv("GAUSSCONV_IRSTD1K_ROOT", str(other))
    assert irstd1k_root() == other
    monkeypatch.setenv("GAUSSCONV_IRSTD1K_ROOT", str(tmp_path / "nowhere"))
    with pytest.raises(FileNotFoundError, match="GAUSSCONV_IRSTD1K_ROOT"):
        irstd1k_root()


def test_layout_splits_and_committed_carve(root):
    assert L.detect_layout(root) == "irstd" and L.default_idx(root, "trainval") == "idx"
    assert L.default_splits("irstd", root) == ("trainval", "test")  # its lists hold no train
    assert L.default_splits("irstd") == ("train", "test")  # without the folder: NUDT-SIRST's names, as before
    with pytest.raises(FileNotFoundError, match="holds train.txt"):
        read_split(root, "train")
    trainval, test = read_split(root, "trainval"), read_split(root, "test")  # checks every image and mask exists
    assert len(trainval) == len(set(trainval)) == 800 and len(test) == 201 and not set(trainval) & set(test)
    sub, val = read_split(root, "trainval_sub"), read_split(root, "val_sub")  # committed with the package
    assert not (root / "idx" / "val_sub.txt").exists() and L.default_idx(root, "val_sub") == "idx"
    assert (len(sub), len(val)) == (720, 80) and (sub, val) == split_lists.carve_val(trainval, 0.1, seed=0)
    recipe = json.loads((split_lists.COMMITTED_DIR / "irstd1k" / "idx" / "derived.json").read_text())
    assert recipe["parent"] == "trainval" and recipe["parent_sha256"] == split_lists.names_fingerprint(trainval)


def test_grey_mask_pixels_rule(root):
    """Target where mask > 127 (gaussconv_plugin.data's docstring): the grey rim pixels above the midpoint join their
    target, the three stray grey pixels do not become one-pixel targets; the figures the docstring states."""
    for name, (y, x) in [("XDU0", (32, 509)), ("XDU325", (424, 340)), ("XDU337", (292, 246))]:  # the strays
        raw, mask = _raw(root, name), load_mask(root, name)
        assert np.array_equal(mask, raw > 127)
        assert 0 < raw[y, x] <= 127 and not mask[y, x] and not (raw[y - 1:y + 2, x - 1:x + 2] == 255).any()
        n = len(target_boxes(root, name)[0])
        assert n == len(mask_to_boxes(raw == 255)) and len(mask_to_boxes(raw > 0)) == n + 1
    raw, mask = _raw(root, "XDU120"), load_mask(root, "XDU120")  # one rim pixel of grey 234 beside its target
    assert raw[134, 376] == 234 and mask[134, 376] and (raw[133:136, 375:378] == 255).any()
    assert len(target_boxes(root, "XDU120")[0]) == len(mask_to_boxes(raw == 255))
    n_masks = n_grey = n_above = 0
    for f in sorted((root / "masks").glob("*.png")):
        raw = np.asarray(Image.open(f).convert("L"))
        grey = raw[(raw > 0) & (raw < 255)]
        n_masks, n_grey, n_above = n_masks + bool(grey.size), n_grey + grey.size, n_above + int((grey > 127).sum())
    assert (n_masks, n_grey, n_above) == (85, 140, 67)


# ------------------------------------------------------------------------------------------------- YOLO / COCO


def test_prepare_sirst_yolo_and_coco_into_the_cache(root, tmp_path, monkeypatch):
    from gaussconv_plugin.data.yolo_format import read_manifest
    from tools import prepare_sirst

    cache = tmp_path / "cache"
    monkeypatch.setenv("GAUSSCONV_CACHE", str(cache))
    before = _listing(root)
    data = prepare_sirst.main(["--root", str(root), "--limit", "3"])  # stopped at "no sub-folder holds train.txt"
    assert data == cache.resolve() / "irstd1k_yolo-limit3" / "data.yaml"  # the shared folder keeps its name
    m = read_manifest(data.parent)
    assert m["params"]["splits"] == [["train", "trainval"], ["val", "test"]] and m["params"]["idx"] == "idx"
    assert m["long_side"] == [512, 512] and "imgsz=512" in data.read_text()
    for ys, src in (("train", "trainval"), ("val", "test")):
        for n in read_split(root, src)[:3]:
            lines = (data.parent / "labels" / ys / f"{n}.txt").read_text().splitlines()
            assert len(lines) == len(target_boxes(root, n)[0]) >= 1
            with Image.open(data.parent / "images" / ys / f"{n}.png") as im:
                assert im.size == (512, 512)
    coco = prepare_sirst.main(["--root", str(root), "--format", "coco", "--limit", "3"])
    assert coco == cache.resolve() / "irstd1k_coco" / "idx-limit3"
    for split in ("trainval", "test"):
        js = json.loads((coco / "annotations" / f"{split}.json").read_text())
        names = read_split(root, split)[:3]
        assert [Path(i["file_name"]) for i in js["images"]] == [root / "images" / f"{n}.png" for n in names]
        assert len(js["annotations"]) == sum(len(target_boxes(root, n)[0]) for n in names)
    carve = prepare_sirst.main(["--root", str(root), "--limit", "2", "--splits", "train:trainval_sub", "val:val_sub",
                                "test:test"])  # the committed carve's names are accepted as source splits
    assert sorted(p.stem for p in (carve.parent / "images" / "val").iterdir()) == sorted(read_split(root,
                                                                                                    "val_sub")[:2])
    assert _listing(root) == before  # nothing written into the dataset folder


# ------------------------------------------------------------------------------------------------- U-Net


def test_unet_configs_and_dataset_crops_and_full_images(root):
    from mmengine.config import Config
    from mmengine.registry import DATASETS

    import gaussconv_plugin.mmdet  # noqa: F401

    base = Config.fromfile(str(REPO / "mmdet_cfgs" / "unet_mshnet_base_irstd1k_cpu.py"))
    gauss = Config.fromfile(str(REPO / "mmdet_cfgs" / "unet_gauss_diff_irstd1k_cpu.py"))
    assert base.model.net.gauss_conv == "none" and base.model.loss.mode == "var"
    assert gauss.model.net.gauss_conv == "both" and gauss.model.loss.mode == "diff"
    for c in (base, gauss):
        d = c.train_dataloader.dataset
        assert d.data_root is None and d.default_root == "irstd1k" and (d.crop_size, d.base_size) == (256, 512)
        assert (d.split, c.val_dataloader.dataset.split, c.test_dataloader.dataset.split) == (
            "trainval_sub", "val_sub", "test")
        assert c.val_dataloader.dataset.mode == c.test_dataloader.dataset.mode == "test"
    train = DATASETS.build(dict(base.train_dataloader.dataset, max_images=2, rng=np.random.default_rng(0)))
    assert Path(train.root).resolve() == root and train.names == read_split(root, "trainval_sub")[:2]
    for i in range(2):
        s = train[i]
        ds = s["data_samples"]
        assert s["inputs"].shape == (1, 256, 256) and ds["gt_mask"].shape == ds["img_shape"] == (256, 256)
        assert ds["ori_shape"] == (512, 512) and set(ds["gt_mask"].unique().tolist()) <= {0, 1}
    test = DATASETS.build(dict(base.test_dataloader.dataset, max_images=2))
    for i in range(2):
        s = test[i]
        gt = load_mask(root, test.names[i])
        assert s["inputs"].shape == (1, 512, 512) and s["data_samples"]["img_shape"] == (512, 512)
        assert np.array_equal(s["data_samples"]["gt_mask"].numpy().astype(bool), gt)


def test_mshnet_protocol_config_tests_at_256_on_the_real_data(root):
    """unet_mshnet_base_irstd1k_paper.py (MSHNet's own protocol): its test set holds the 201 test images resized to
    256², and 294 mask components remain of the 297 at native size (4 targets of 1–5 px vanish in the nearest
    resize, one splits in two) — the count docs/usage.md gives."""
    from mmengine.config import Config
    from mmengine.registry import DATASETS
    from scipy import ndimage

    import gaussconv_plugin.mmdet  # noqa: F401

    cfg = Config.fromfile(str(REPO / "mmdet_cfgs" / "unet_mshnet_base_irstd1k_paper.py"))
    test = DATASETS.build(dict(cfg.test_dataloader.dataset, cache=False))
    assert len(test) == 201 and Path(test.root).resolve() == root
    native, resized, eight = 0, 0, np.ones((3, 3))
    for i in range(len(test)):
        s = test[i]
        assert s["inputs"].shape == (1, 256, 256) and s["data_samples"]["ori_shape"] == (512, 512)
        native += ndimage.label(load_mask(root, test.names[i]), eight)[1]
        resized += ndimage.label(s["data_samples"]["gt_mask"].numpy(), eight)[1]
    assert (native, resized) == (297, 294)


# ------------------------------------------------------------------------------------------------- ablation


def test_ablation_plans_irstd1k(root, tmp_path, monkeypatch):
    from tools import ablation
    from tools.evidence import datasets

    d = datasets.DATASETS["irstd1k"]
    assert (d.final, d.screen, d.imgsz) == ("trainval:test", "trainval_sub:val_sub", 512)
    assert datasets.resolve("irstd1k") == root
    assert datasets.check_split(root, d.final) == ("trainval", "test")
    assert datasets.check_split(root, d.screen) == ("trainval_sub", "val_sub")
    runs = ablation.plan(tmp_path, ["yolo", "unet"], ["stock", "both"], [0], 2, 2, data_root=str(root),
                         split=d.screen, imgsz=d.imgsz)
    assert {r.dir.relative_to(tmp_path).parts[:3] for r in runs} == {
        ("yolo", "irstd1k", "trainval_sub-val_sub"), ("unet", "irstd1k", "trainval_sub-val_sub")}
    unet = next(r for r in runs if r.part == "unet" and r.variant == "both")
    cmd = ablation.unet_command(unet)
    assert cmd[2] == str(REPO / "mmdet_cfgs" / "unet_mshnet_base_irstd1k_cpu.py")
    assert "train_dataloader.dataset.split=trainval_sub" in cmd and "val_dataloader.dataset.split=val_sub" in cmd
    assert "model.net.gauss_conv=both" in cmd and "model.loss.mode=diff" in cmd

    seen = {}
    real_plan = ablation.plan

    def spy(*args, **kw):  # what main() plans for `--dataset irstd1k`, without training
        seen.update(kw)
        return real_plan(*args, **kw)

    monkeypatch.setattr(ablation, "plan", spy)
    for extra, split in (([], "trainval:test"), (["--split", "trainval_sub:val_sub"], "trainval_sub:val_sub")):
        with pytest.raises(SystemExit, match="no finished runs"):
            ablation.main(["--dataset", "irstd1k", "--report-only", "--out", str(tmp_path / "abl"), *extra])
        assert (seen["split"], seen["imgsz"], Path(seen["data_root"])) == (split, 512, root)
    # the evaluate mode reads IRSTD-1k's committed val_sub (its checks pass; nothing is trained here)
    with pytest.raises(SystemExit, match="no finished runs to evaluate"):
        ablation.main(["--dataset", "irstd1k", "--evaluate", str(root), "--eval-split", "val_sub",
                       "--out", str(tmp_path / "abl")])
    with pytest.raises(SystemExit, match=r"--evaluate .* \(split val\): .*holds val\.txt"):
        ablation.main(["--dataset", "irstd1k", "--evaluate", str(root), "--eval-split", "val",
                       "--out", str(tmp_path / "abl")])


def test_evaluate_mode_prepares_val_sub_for_yolo(root, tmp_path):
    from tools.evidence.evaluate import prepare_yolo_eval

    out = prepare_yolo_eval(root, "val_sub", limit=2, out_dir=tmp_path / "ev")
    sizes = json.loads((out / "sizes.json").read_text())
    assert list(sizes) == read_split(root, "val_sub")[:2] and all(v == [512, 512] for v in sizes.values())
    assert (out / "lists" / "native512.yaml").is_file()


def test_library_defaults_take_trainval_where_a_folder_has_no_train():
    """prepare_yolo / prepare_coco called from Python without splits use the folder's own lists (IRSTD-1k:
    trainval/test), as tools/prepare_sirst.py does."""
    from gaussconv_plugin.data import irstd1k_root
    from gaussconv_plugin.data.layout import detect_layout
    from gaussconv_plugin.data.yolo_format import default_yolo_splits

    root = irstd1k_root()
    assert default_yolo_splits(detect_layout(root), root) == (("train", "trainval"), ("val", "test"))
    assert default_yolo_splits("irstd") == (("train", "train"), ("val", "test"))  # NUDT-SIRST's lists
