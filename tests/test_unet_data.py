"""Segmentation dataset on SIRST-layout folders: image modes, sizes, augmentation, padding collate."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gaussconv_plugin.data.seg_dataset import GREY_MEAN, GREY_STD, SIRSTSegDataset, pad_collate, train_transform
from gaussconv_plugin.data.sirst import load_mask


@pytest.fixture(scope="module")
def mixed_root(tmp_path_factory):
    """A SIRST-layout folder (temporary) with one image per PIL mode and odd sizes, plus a target-free one."""
    root = tmp_path_factory.mktemp("mixed")
    (root / "images").mkdir()
    (root / "masks").mkdir()
    (root / "idx_427").mkdir()
    rng = np.random.default_rng(0)
    names = []
    for k, (mode, (h, w)) in enumerate([("L", (37, 50)), ("RGB", (64, 41)), ("RGBA", (33, 90)), ("P", (48, 48)),
                                        ("L", (40, 40))]):
        g = rng.integers(0, 200, (h, w), dtype=np.uint8)
        m = np.zeros((h, w), np.uint8)
        if k < 4:  # the last image holds no target
            m[h // 2:h // 2 + 2, w // 3:w // 3 + 3] = 255
            g[m > 0] = 250
        im = Image.fromarray(g, "L")
        if mode == "P":  # adaptive palette: every grey level kept exactly (the web palette would round 250)
            im = im.convert("RGB").convert("P", palette=Image.ADAPTIVE, colors=256)
        elif mode != "L":
            im = im.convert("RGB").convert(mode)
        name = f"img{k}"
        im.save(root / "images" / f"{name}.png")
        Image.fromarray(m, "L").save(root / "masks" / f"{name}_pixels0.png")
        names.append(name)
    (root / "idx_427" / "trainval.txt").write_text("\n".join(names) + "\n")
    (root / "idx_427" / "test.txt").write_text("\n".join(names) + "\n")
    return root


def test_test_mode_native_size_any_mode(mixed_root):
    ds = SIRSTSegDataset(mixed_root, split="test", mode="test")
    assert len(ds) == 5
    for i in range(len(ds)):
        s = ds[i]
        x, d = s["inputs"], s["data_samples"]
        gt = load_mask(mixed_root, ds.names[i])
        assert x.shape == (1, *gt.shape) and x.dtype == torch.float32
        assert d["img_shape"] == d["ori_shape"] == gt.shape
        assert torch.equal(d["gt_mask"].bool(), torch.from_numpy(gt))
        # normalisation: target pixels were grey 250 in every mode
        if gt.any():
            assert torch.allclose(x[0][torch.from_numpy(gt)], torch.tensor((250 / 255 - GREY_MEAN) / GREY_STD))
    assert SIRSTSegDataset(mixed_root, split="test", mode="test", channels=3)[1]["inputs"].shape == (3, 64, 41)


def test_test_size_is_mshnets_test_transform(mixed_root):
    """``test_size``: image bilinear and mask nearest to test_size² (MSHNet's _testval_sync_transform), computed
    here with PIL from the native pair; ori_shape keeps the native size. A bad value is one line."""
    ds = SIRSTSegDataset(mixed_root, split="test", mode="test", test_size=32)
    native = SIRSTSegDataset(mixed_root, split="test", mode="test")
    for i in range(len(ds)):
        s, n = ds[i], native[i]
        img, mask = native.load(i)
        want_img = np.asarray(Image.fromarray(img).resize((32, 32), Image.BILINEAR), np.float32)
        want_mask = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).resize((32, 32), Image.NEAREST)) > 127
        assert s["inputs"].shape == (1, 32, 32) and s["data_samples"]["img_shape"] == (32, 32)
        assert s["data_samples"]["ori_shape"] == n["data_samples"]["ori_shape"] == mask.shape
        torch.testing.assert_close(s["inputs"][0], (torch.from_numpy(want_img) / 255 - GREY_MEAN) / GREY_STD)
        assert torch.equal(s["data_samples"]["gt_mask"].bool(), torch.from_numpy(want_mask))
    for bad in (0, 25.5, True):
        with pytest.raises(ValueError, match="test_size must be None"):
            SIRSTSegDataset(mixed_root, split="test", mode="test", test_size=bad)


def test_train_mode_fixed_crop_and_binary_mask(mixed_root):
    ds = SIRSTSegDataset(mixed_root, split="trainval", mode="train", crop_size=32, base_size=48,
                         rng=np.random.default_rng(0))
    for _ in range(3):
        for i in range(len(ds)):
            s = ds[i]
            assert s["inputs"].shape == (1, 32, 32)
            assert s["data_samples"]["img_shape"] == (32, 32)
            assert set(s["data_samples"]["gt_mask"].unique().tolist()) <= {0, 1}
    ds2 = SIRSTSegDataset(mixed_root, mode="train", crop_size=(24, 40))
    assert ds2[0]["inputs"].shape == (1, 24, 40)


def test_train_transform_identity_geometry_keeps_target():
    # scale fixed to the native long side, crop = image size, no flip/blur: the sample is the image itself
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (30, 40), dtype=np.uint8)
    mask = np.zeros((30, 40), bool)
    mask[3:5, 30:33] = True
    a, m = train_transform(img, mask, rng, crop_size=(30, 40), base_size=40, scale_range=(1.0, 1.0),
                           hflip=0.0, vflip=0.0, blur_prob=0.0)
    assert np.array_equal(a, img) and np.array_equal(m, mask)
    a, m = train_transform(img, mask, rng, crop_size=(30, 40), base_size=40, scale_range=(1.0, 1.0),
                           hflip=1.0, vflip=1.0, blur_prob=0.0)
    assert np.array_equal(a, img[::-1, ::-1]) and np.array_equal(m, mask[::-1, ::-1])
    # a 2× rescale doubles the target's area (nearest), the crop is padded with zeros where the image ends
    a, m = train_transform(img, mask, np.random.default_rng(2), crop_size=100, base_size=40, scale_range=(2.0, 2.0),
                           hflip=0.0, vflip=0.0, blur_prob=0.0)
    assert a.shape == m.shape == (100, 100)
    assert m.sum() == 4 * mask.sum()
    assert (a[60:, :] == 0).all() and (a[:, 80:] == 0).all()


def test_augmentation_seeded_and_varied(mixed_root):
    def draw(seed):
        ds = SIRSTSegDataset(mixed_root, mode="train", crop_size=32, rng=np.random.default_rng(seed))
        return torch.stack([ds[0]["inputs"] for _ in range(4)])

    assert torch.equal(draw(3), draw(3))
    a = draw(4)
    assert not all(torch.equal(a[0], a[k]) for k in range(1, 4))


def test_pad_collate_pads_to_divisor_and_keeps_valid_shape(mixed_root):
    ds = SIRSTSegDataset(mixed_root, split="test", mode="test")
    batch = pad_collate([ds[0], ds[1], ds[2]], size_divisor=32)
    x, samples = batch["inputs"], batch["data_samples"]
    assert x.shape == (3, 1, 64, 96)  # max H 64, max W 90 → 96
    for k, d in enumerate(samples):
        h, w = d["img_shape"]
        assert d["pad_shape"] == (64, 96) and d["gt_mask"].shape == (64, 96)
        assert torch.equal(x[k, :, :h, :w], ds[k]["inputs"])
        assert (x[k, :, h:, :] == 0).all() and (x[k, :, :, w:] == 0).all()
        assert d["gt_mask"][h:, :].sum() == 0 and d["gt_mask"][:, w:].sum() == 0
        assert d["gt_mask"][:h, :w].sum() == ds[k]["data_samples"]["gt_mask"].sum()
    assert pad_collate([ds[0]], size_divisor=1)["inputs"].shape == (1, 1, 37, 50)
    with pytest.raises(ValueError, match="empty batch"):
        pad_collate([])


def test_errors_name_the_fix(mixed_root, tmp_path):
    with pytest.raises(ValueError, match="mode"):
        SIRSTSegDataset(mixed_root, mode="val")
    with pytest.raises(ValueError, match="channels"):
        SIRSTSegDataset(mixed_root, channels=2)
    with pytest.raises(FileNotFoundError, match="split"):
        SIRSTSegDataset(mixed_root, split="val")
    with pytest.raises(FileNotFoundError, match="GAUSSCONV_SIRST_ROOT"):
        SIRSTSegDataset(tmp_path / "nowhere")
    assert len(SIRSTSegDataset(mixed_root, names=["img3", "img1"], max_images=1)) == 1


def test_real_sirst_subset_all_modes():
    """The real SIRST v1 files (L, RGB, RGBA, palette; ~320×240) load at native size."""
    from gaussconv_plugin.data.sirst import sirst_root

    root = sirst_root()  # the real-data tests need ../shared/data/sirst (make test); a missing folder is one line
    names = {"RGB": "Misc_181", "L": "Misc_64", "RGBA": "Misc_31", "P": "Misc_73"}
    ds = SIRSTSegDataset(root, names=list(names.values()), mode="test")
    for i, name in enumerate(ds.names):
        with Image.open(root / "images" / f"{name}.png") as im:
            assert im.mode == list(names)[i]
            w, h = im.size
        s = ds[i]
        assert s["inputs"].shape == (1, h, w) and s["data_samples"]["gt_mask"].sum() > 0


def test_mask_of_another_size_is_resized_to_the_image(tmp_path):
    from gaussconv_plugin.data.seg_dataset import resize_mask

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    Image.fromarray(np.full((20, 30), 90, np.uint8)).save(tmp_path / "images" / "a.png")
    big = np.zeros((40, 60), np.uint8)
    big[10:14, 20:26] = 255  # a 4×6 target at 2× → 2×3 at the image's size
    Image.fromarray(big).save(tmp_path / "masks" / "a_pixels0.png")
    ds = SIRSTSegDataset(tmp_path, names=["a"], mode="test")
    with pytest.warns(UserWarning, match="resized"):
        s = ds[0]
    m = s["data_samples"]["gt_mask"].numpy().astype(bool)
    assert m.shape == (20, 30) and m.sum() == 6 and m[5:7, 10:13].all()
    # a target too small for nearest neighbour survives through the any-coverage fallback
    tiny = np.zeros((40, 60), bool)
    tiny[10, 20] = True  # nearest samples odd rows/columns only: it would drop this pixel
    assert resize_mask(tiny, (20, 30)).sum() == 1 and resize_mask(tiny, (20, 30))[5, 10]


def test_real_sirst_misc_111_mask_size_mismatch():
    from gaussconv_plugin.data.sirst import sirst_root

    root = sirst_root()  # the real-data tests need ../shared/data/sirst (make test); a missing folder is one line
    ds = SIRSTSegDataset(root, names=["Misc_111"], mode="test")  # image 325×220, mask 592×400 (test split)
    with pytest.warns(UserWarning, match="Misc_111"):
        s = ds[0]
    assert s["inputs"].shape == (1, 220, 325) and s["data_samples"]["gt_mask"].shape == (220, 325)
    assert int(s["data_samples"]["gt_mask"].sum()) > 0
