"""Bad data ends in one line that names the file and the fix, never a traceback from inside a host or a silent
skip, and nothing is written half-way (issue 35, item 6): a corrupt or truncated image or mask, a mask of another
aspect ratio (the general rule behind SIRST v1's Misc_111), a split list naming a missing file, a checkpoint saved
before σ/θ existed, groups/dilation that GaussianShapedConv does not support."""
from __future__ import annotations

import io
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gaussconv_plugin import GaussianShapedConv, GaussianShapedConv2d
from gaussconv_plugin.data.coco_format import prepare_coco
from gaussconv_plugin.data.seg_dataset import SIRSTSegDataset
from gaussconv_plugin.data.sirst import check_mask_size, load_image, load_mask, read_split, target_boxes
from gaussconv_plugin.data.yolo_format import prepare_yolo, read_manifest

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.usefixtures("one_thread")


def _one_line(e) -> str:
    msg = str(e.value) if hasattr(e, "value") else str(e)
    assert "\n" not in msg, msg
    return msg


def _png_bytes(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture
def root(tmp_path) -> Path:
    """A SIRST-layout folder: 6 images 24×32 (a0..a5) with one 3×3 target each; trainval a0..a3, test a4, a5."""
    r = tmp_path / "ds"
    for sub in ("images", "masks", "idx_427"):
        (r / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray(rng.integers(0, 120, (24, 32), dtype=np.uint8)).save(r / "images" / f"a{i}.png")
        m = np.zeros((24, 32), np.uint8)
        m[5 + i:8 + i, 10:13] = 255
        Image.fromarray(m).save(r / "masks" / f"a{i}_pixels0.png")
    (r / "idx_427" / "trainval.txt").write_text("a0\na1\na2\na3\n")
    (r / "idx_427" / "test.txt").write_text("a4\na5\n")
    return r


def _cli(*args) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(REPO / "tools" / "prepare_sirst.py"), *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=120)


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _corrupt(path: Path, how: str) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] if how == "truncated" else b"not a png at all" * 8)


# ---------------------------------------------------------------------------------------------- corrupt files
@pytest.mark.parametrize("how", ["truncated", "garbage"])
def test_corrupt_or_truncated_image_is_one_line_everywhere(root, tmp_path, how):
    bad = root / "images" / "a4.png"
    _corrupt(bad, how)
    calls = [lambda: load_image(root, "a4"), lambda: SIRSTSegDataset(root, split="test", mode="test")[0]]
    if how == "garbage":  # target_boxes reads only the image's header (its size); the converters decode it
        calls.append(lambda: target_boxes(root, "a4"))
    for call in calls:
        with pytest.raises(ValueError, match="corrupt, truncated or not an image") as e:
            call()
        msg = _one_line(e)
        assert str(bad) in msg and "replace it with a valid PNG or drop 'a4'" in msg
    # the converters: a previous conversion stays whole, nothing of the new one is written
    out = tmp_path / "yolo"
    prepare_yolo(root, out, splits=(("train", "trainval"),))
    before = _snapshot(out)
    with pytest.raises(ValueError, match=str(bad)):
        prepare_yolo(root, out)  # other parameters: would rebuild, reads the bad test image
    assert _snapshot(out) == before and not list(out.glob(".staging*"))
    coco = tmp_path / "coco"
    with pytest.raises(ValueError, match=str(bad)):
        prepare_coco(root, coco, verbose=False)
    assert not coco.exists() or not any(coco.rglob("*.json"))
    # the command line: exit status 1, one line on stderr naming the file
    for fmt in ("yolo", "coco"):
        p = _cli("--data-root", root, "--out", tmp_path / f"cli_{fmt}", "--format", fmt)
        assert p.returncode == 1 and p.stderr.strip().count("\n") == 0, p.stderr
        assert str(bad) in p.stderr and "Traceback" not in p.stderr
    assert not (tmp_path / "cli_yolo").exists() and not (tmp_path / "cli_coco").exists()  # no empty folder left


def test_a_label_index_mask_a_16_bit_image_and_a_repeated_name_are_one_line(root, tmp_path):
    """Files that decode but would silently train on nothing: a 0/1 mask (no pixel > 127: no target), a 16-bit
    image (PIL's 'L' clips it to one flat 255); and a split list naming an image twice (COCO and the U-Net would
    count it twice, YOLO once). Each stops in one line naming the file and the fix; the converters write nothing."""
    Image.fromarray(((np.asarray(Image.open(root / "masks" / "a4_pixels0.png")) > 0)).astype(np.uint8)).save(
        root / "masks" / "a4_pixels0.png")  # values 0/1
    mask = root / "masks" / "a4_pixels0.png"
    for call in (lambda: load_mask(root, "a4"), lambda: target_boxes(root, "a4"),
                 lambda: SIRSTSegDataset(root, split="test", mode="test")[0]):
        with pytest.raises(ValueError) as e:
            call()
        assert _one_line(e) == (f"mask {mask} has no target pixel (> 127): its brightest is 1, a label-index mask "
                                "(0/1)?; save targets as 255 (mask * 255); or drop 'a4' from the split list")
    for convert in (lambda: prepare_yolo(root, tmp_path / "y"), lambda: prepare_coco(root, tmp_path / "c",
                                                                                     verbose=False)):
        with pytest.raises(ValueError, match="label-index mask"):
            convert()
    assert not (tmp_path / "y").exists() and not (tmp_path / "c").exists()
    m = np.zeros((24, 32), np.uint8)
    m[9:12, 10:13] = 255
    Image.fromarray(m).save(mask)
    img = root / "images" / "a5.png"
    Image.fromarray(np.full((24, 32), 40000, np.uint16)).save(img)
    assert Image.open(img).mode.startswith("I")
    with pytest.raises(ValueError) as e:
        load_image(root, "a5")
    assert _one_line(e).startswith(f"image {img} holds 16-bit pixels (mode I") and _one_line(e).endswith(
        "which would read as one flat grey; save it as 8-bit greyscale (mode L); or drop 'a5' from the split list")
    (root / "idx_427" / "test.txt").write_text("a4\na5\na4\n")
    with pytest.raises(ValueError) as e:
        read_split(root, "test")
    assert _one_line(e) == (f"split file {root / 'idx_427' / 'test.txt'} lists 'a4' more than once (1 repeated "
                            "line(s)); keep one line per image")


def test_garbage_image_with_ultralytics_patched_pil_open(root, monkeypatch):
    """Ultralytics patches PIL's Image.open to retry unidentified files through a HEIF plugin it would import or
    install; a garbage image is still one line here, and nothing is imported or installed for it."""
    pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")
    import ultralytics.utils.patches  # noqa: F401  (applies the patch)
    from ultralytics.utils import checks

    assert Image.open.__module__ == "ultralytics.utils.patches"
    calls = []
    monkeypatch.setattr(checks, "check_requirements", lambda *a, **k: calls.append(a))
    _corrupt(root / "images" / "a3.png", "garbage")
    with pytest.raises(ValueError, match="a3.png cannot be read") as e:
        load_image(root, "a3")
    _one_line(e)
    assert calls == []  # the host's install-and-retry path was not taken


def test_truncated_mask_and_unreadable_voc_are_one_line(root):
    _corrupt(root / "masks" / "a1_pixels0.png", "truncated")
    with pytest.raises(ValueError, match="mask .*a1_pixels0.png cannot be read") as e:
        load_mask(root, "a1")
    _one_line(e)
    with pytest.raises(ValueError, match="a1_pixels0.png"):
        SIRSTSegDataset(root, names=["a1"], mode="test")[0]
    (root / "masks" / "a2.xml").write_text("<annotation><object><bndbox><xmin>3</xmin></bndbox>")
    with pytest.raises(ValueError, match=r"VOC file .*a2\.xml cannot be read") as e:
        target_boxes(root, "a2")
    assert "fix or delete it" in _one_line(e)


# ---------------------------------------------------------------------------------------------- mask size rule
def test_mask_size_rule():
    """Same size: True; the image scaled by one factor up to a pixel of rounding per side: False (map it);
    anything else: one line naming both files."""
    assert check_mask_size((220, 325), (220, 325), "i", "m") is True
    assert check_mask_size((220, 325), (400, 592), "i", "m") is False  # SIRST v1 Misc_111
    assert check_mask_size((24, 32), (48, 64), "i", "m") is False
    assert check_mask_size((21, 33), (43, 66), "i", "m") is False  # ×2 with one pixel of rounding
    assert check_mask_size((24, 32), (12, 16), "i", "m") is False  # smaller, same aspect ratio
    for mask_hw in ((32, 32), (24, 40), (45, 66)):
        with pytest.raises(ValueError, match="another aspect ratio") as e:
            check_mask_size((24, 32), mask_hw, "IMG.png", "MASK.png")
        msg = _one_line(e)
        assert "IMG.png" in msg and "MASK.png" in msg and "save the mask at 32x24" in msg


def test_mask_of_another_aspect_ratio_fails_where_it_is_read(root, tmp_path):
    bad = root / "masks" / "a5_pixels0.png"
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(bad)  # square mask of a 32×24 image
    with pytest.raises(ValueError, match="another aspect ratio") as e:
        target_boxes(root, "a5")
    assert str(bad) in _one_line(e)
    with pytest.raises(ValueError, match="another aspect ratio"):
        SIRSTSegDataset(root, split="test", mode="test")[1]
    out = tmp_path / "yolo"
    with pytest.raises(ValueError, match="another aspect ratio"):
        prepare_yolo(root, out)
    assert not (out / "images").exists() and not (out / "manifest.json").exists()
    # the same mask scaled ×2 (the Misc_111 case, here a general rule): boxes scaled, mask resized
    m = np.zeros((48, 64), np.uint8)
    m[20:26, 30:36] = 255
    Image.fromarray(m).save(bad)
    boxes, _ = target_boxes(root, "a5")
    np.testing.assert_allclose(boxes, [[15, 10, 18, 13]])
    with pytest.warns(UserWarning, match="resized"):
        s = SIRSTSegDataset(root, names=["a5"], mode="test")[0]
    assert s["data_samples"]["gt_mask"].shape == (24, 32) and int(s["data_samples"]["gt_mask"].sum()) == 9


# ---------------------------------------------------------------------------------------------- split lists
def test_split_list_naming_a_missing_file(root, tmp_path):
    (root / "idx_427" / "test.txt").write_text("a4\nghost\n")
    for call in (lambda: read_split(root, "test"), lambda: SIRSTSegDataset(root, split="test"),
                 lambda: prepare_coco(root, tmp_path / "coco", verbose=False)):
        with pytest.raises(FileNotFoundError, match="ghost") as e:
            call()
        assert "drop the name from the list" in _one_line(e)
    out = tmp_path / "yolo"
    with pytest.raises(FileNotFoundError, match="ghost"):
        prepare_yolo(root, out)
    assert not out.exists() or not any(out.iterdir())
    assert not (tmp_path / "coco").exists() or not any((tmp_path / "coco").rglob("*.json"))
    p = _cli("--data-root", root, "--out", tmp_path / "cli")
    assert p.returncode == 1 and p.stderr.strip().count("\n") == 0 and "ghost" in p.stderr, p.stderr
    # names written with their extension: the message says how to list them
    (root / "idx_427" / "test.txt").write_text("a4.png\na5.png\n")
    with pytest.raises(FileNotFoundError, match="list names without extension") as e:
        read_split(root, "test")
    _one_line(e)


# ---------------------------------------------------------------------------------------------- checkpoints
def _without_shape_params(model: torch.nn.Module) -> torch.nn.Module:
    """Drop σ/θ from every GaussianShapedConv2d: what a checkpoint saved before they existed holds."""
    for m in model.modules():
        if isinstance(m, GaussianShapedConv2d):
            del m._parameters["sigma_raw"], m._parameters["theta"]
    return model


def test_pickle_saved_before_sigma_theta_says_what_to_do():
    torch.manual_seed(0)
    old = _without_shape_params(GaussianShapedConv(3, 8, 3, 2))
    with pytest.warns(UserWarning, match="pretrained=<checkpoint>"):  # loading says what to do ...
        loaded = pickle.loads(pickle.dumps(old))  # ... and works: its weights can still be transferred
    x = torch.randn(1, 3, 16, 16)
    for call in (lambda: loaded(x), lambda: loaded.fuse(), lambda: loaded.conv.sigma):
        with pytest.raises(RuntimeError, match="saved without sigma_raw and theta") as e:
            call()
        assert "pretrained=<checkpoint>" in _one_line(e)
    new = GaussianShapedConv(3, 8, 3, 2)
    missing, unexpected = new.load_state_dict(loaded.state_dict(), strict=False)
    assert sorted(missing) == ["conv.sigma_raw", "conv.theta"] and not unexpected
    assert torch.equal(new.conv.weight, old.conv.weight)


def test_pickle_saved_before_the_sigma_bound_gets_it():
    """Whole-module pickles without ``sigma_min`` (before issue 35) take the class default: bounded σ, and a σ ≥ 0.9
    exactly as before."""
    c = GaussianShapedConv2d(2, 2, 3)
    with torch.no_grad():
        c.sigma_raw.copy_(torch.tensor([-40.0, 1.0]))
    del c.sigma_min
    c2 = pickle.loads(pickle.dumps(c))
    sig = c2.sigma.detach()
    assert float(sig[0]) >= 0.4 and float(sig[1]) == float(torch.nn.functional.softplus(torch.tensor(1.0)))


def test_yolo_checkpoint_saved_before_sigma_theta(tmp_path):
    """A YOLO checkpoint whose Gaussian layers lack σ/θ loads through Ultralytics' own loader; running it says what
    to do in one line, and the documented fix (transfer into the current model) keeps every other weight."""
    pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")
    from ultralytics.nn.tasks import DetectionModel, load_checkpoint
    from ultralytics.utils.torch_utils import intersect_dicts

    from gaussconv_plugin.yolo import packaged_cfg

    cfg = str(packaged_cfg("yolov8-gauss.yaml"))
    torch.manual_seed(0)
    old = _without_shape_params(DetectionModel(cfg, ch=3, nc=1, verbose=False))
    f = tmp_path / "old.pt"
    torch.save({"model": old, "train_args": {}}, f)
    with pytest.warns(UserWarning, match="before σ/θ existed"):
        model, _ = load_checkpoint(str(f))
    with pytest.raises(RuntimeError, match="before σ/θ existed") as e:
        model(torch.zeros(1, 3, 64, 64))
    assert "yolo train model=<gauss yaml> pretrained=<checkpoint>" in _one_line(e)
    with pytest.raises(RuntimeError, match="before σ/θ existed"):
        model.fuse()
    new = DetectionModel(cfg, ch=3, nc=1, verbose=False)
    sd = intersect_dicts(model.float().state_dict(), new.state_dict())
    new.load_state_dict(sd, strict=False)
    assert len(sd) == len(new.state_dict()) - 4  # all but σ/θ of the two Gaussian layers
    out = new.eval()(torch.zeros(1, 3, 64, 64))
    assert torch.isfinite(out[0] if isinstance(out, (list, tuple)) else out).all()


# ---------------------------------------------------------------------------------------------- groups / dilation
@pytest.mark.parametrize("g,d,match", [
    (3, 1, r"groups=3: .*use one of \[1, 2, 4, 8, 16\]"),
    (0, 1, "groups=0"),
    (1.5, 1, "groups=1.5"),
    (1, 0, "dilation=0"),
    (1, (0, 2), r"dilation=\(0, 2\)"),
    (1, [2, 3, 4], r"dilation=\[2, 3, 4\]"),
    (1, 1.5, "dilation=1.5"),
])
def test_unsupported_groups_or_dilation_is_one_line(g, d, match):
    for build in (lambda: GaussianShapedConv2d(16, 32, 3, 1, None, d, g),
                  lambda: GaussianShapedConv(16, 32, 3, 1, None, g, d)):  # Ultralytics' argument order
        with pytest.raises(ValueError, match=match) as e:
            build()
        assert "YAML row [c2, k, s, p, g, d]" in _one_line(e)


def test_supported_groups_and_dilation_build_and_fuse(randomise_shapes):
    torch.manual_seed(0)
    x = torch.randn(1, 16, 12, 12)
    for g, d in ((16, 1), (4, 2), (2, (2, 2)), (1, (1, 2)), (8, [3, 1])):
        blk = GaussianShapedConv(16, 32, 3, 1, None, g, d).eval()
        randomise_shapes(blk)  # σ/θ and the BatchNorm's statistics away from their initial values: fusing folds them
        y = blk(x)
        assert y.shape == (1, 32, 12, 12)  # 'same' padding with the dilation
        torch.testing.assert_close(blk.fuse()(x), y, rtol=1e-5, atol=1e-5)
    conv = GaussianShapedConv2d(16, 32, 5, dilation=(1, 2))  # 'same' padding per axis
    assert conv.padding == (2, 4) and conv(x).shape == (1, 32, 12, 12)
    blk = GaussianShapedConv(16, 32, 3, 1, (1, 2), 1, (1, 2))  # a padding given beside a dilation pair wins
    assert blk.conv.padding == (1, 2) and blk(x).shape == (1, 32, 12, 12)
