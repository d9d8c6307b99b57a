"""IRSTD metrics (pyirstdmetrics wrapper) against an independent, straightforward computation."""
from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("py_irstd_metrics")
ndimage = pytest.importorskip("scipy.ndimage")

from gaussconv_plugin.metrics import IRSTDMetrics, load_curves, plot_curves, save_curves  # noqa: E402

EIGHT = np.ones((3, 3), int)


def reference(probs, masks, thr=0.5, dist=3.0):
    """mIoU, nIoU, Pd, Fa written out directly (scipy labelling, no pyirstdmetrics)."""
    inter = union = 0
    nious, matched, n_targets, fa_pixels, pixels = [], 0, 0, 0, 0
    for prob, mask in zip(probs, masks):
        pred = prob > thr
        i, u = np.sum(pred & mask), np.sum(pred | mask)
        inter, union = inter + i, union + u
        nious.append(i / u if u else 0.0)  # 0/0 → 0 (the library's convention)
        gl, ng = ndimage.label(mask, EIGHT)
        pl, npred = ndimage.label(pred, EIGHT)
        gc = ndimage.center_of_mass(mask, gl, range(1, ng + 1))
        pc = ndimage.center_of_mass(pred, pl, range(1, npred + 1))
        used = [False] * npred
        for g in gc:  # greedy, targets in label order, first unused component within the distance
            for k, p in enumerate(pc):
                if not used[k] and np.hypot(p[0] - g[0], p[1] - g[1]) < dist:
                    used[k] = True
                    matched += 1
                    break
        n_targets += ng
        fa_pixels += sum(int(np.sum(pl == k + 1)) for k in range(npred) if not used[k])
        pixels += mask.size
    return {"mIoU": inter / union if union else 0.0, "nIoU": float(np.mean(nious)),
            "Pd": matched / n_targets if n_targets else 0.0, "Fa": fa_pixels / pixels}


def make_case(rng, h, w, n_targets):
    """Target mask + a probability map with near hits, shifted (missed) targets, false alarms, noise."""
    mask = np.zeros((h, w), bool)
    prob = rng.random((h, w)) * 0.3
    for _ in range(n_targets):
        y, x = rng.integers(3, h - 6), rng.integers(3, w - 6)
        sy, sx = rng.integers(1, 4, size=2)
        mask[y:y + sy, x:x + sx] = True
        r = rng.random()
        if r < 0.5:  # detected, slightly off
            prob[y:y + sy + 1, x:x + sx] = 0.6 + 0.4 * rng.random()
        elif r < 0.75:  # detected far off (centroid > 3 px): a miss plus a false alarm
            yy, xx = min(y + 4, h - 2), min(x + 4, w - 2)
            prob[yy:yy + 2, xx:xx + 2] = 0.9
    for _ in range(rng.integers(0, 3)):  # clutter false alarms
        y, x = rng.integers(0, h - 2), rng.integers(0, w - 2)
        prob[y:y + 2, x:x + 1] = 0.55 + 0.4 * rng.random()
    return prob, mask


def test_matches_independent_computation():
    rng = np.random.default_rng(0)
    probs, masks = [], []
    for k in range(24):
        h, w = int(rng.integers(20, 60)), int(rng.integers(20, 60))
        p, m = make_case(rng, h, w, n_targets=0 if k % 6 == 0 else int(rng.integers(1, 4)))
        probs.append(p)
        masks.append(m)
    probs.append(np.zeros((16, 16)))  # empty target, empty prediction: nIoU term 0
    masks.append(np.zeros((16, 16), bool))
    acc = IRSTDMetrics()
    for p, m in zip(probs, masks):
        acc.update(p, m)
    got, ref = acc.get(), reference(probs, masks)
    for k in ("mIoU", "nIoU", "Pd", "Fa"):
        assert abs(got[k] - ref[k]) < 1e-6, (k, got[k], ref[k])
    assert 0 < got["Pd"] < 1 and 0 < got["mIoU"] < 1 and got["Fa"] > 0  # the case exercises every branch
    assert got["Fa_e6"] == pytest.approx(got["Fa"] * 1e6)
    assert got["num_images"] == 25
    assert got["num_targets"] == sum(ndimage.label(m, EIGHT)[1] for m in masks)


def test_threshold_and_distance_options_match_reference():
    rng = np.random.default_rng(1)
    cases = [make_case(rng, 40, 40, 3) for _ in range(8)]
    for thr, dist in [(0.3, 3), (0.7, 2), (0.5, 5)]:
        acc = IRSTDMetrics(threshold=thr, distance_threshold=dist)
        for p, m in cases:
            acc.update(p, m)
        got, ref = acc.get(), reference(*zip(*cases), thr=thr, dist=dist)
        for k in ("mIoU", "nIoU", "Pd", "Fa"):
            assert abs(got[k] - ref[k]) < 1e-6, (thr, dist, k)


def test_target_free_images():
    # a target-free image adds nothing to Pd, every predicted pixel is a false alarm
    m = IRSTDMetrics()
    empty = np.zeros((10, 10), bool)
    prob = np.zeros((10, 10))
    prob[2:4, 2:5] = 0.9  # 6 false-alarm pixels
    m.update(prob, empty)
    out = m.get()
    assert out["Pd"] == 0.0 and out["num_targets"] == 0  # no target in the dataset: Pd = 0/0 := 0
    assert out["Fa"] == pytest.approx(6 / 100)
    assert out["mIoU"] == 0.0 and out["nIoU"] == 0.0
    # with one detected target elsewhere, the empty image leaves Pd = 1 and halves Fa's rate
    mask = np.zeros((10, 10), bool)
    mask[5, 5] = True
    m.update(mask.astype(float), mask)
    out = m.get()
    assert out["Pd"] == 1.0 and out["Fa"] == pytest.approx(6 / 200)


def test_curves_monotone_and_consistent_with_point_metrics(tmp_path):
    rng = np.random.default_rng(2)
    cases = [make_case(rng, 48, 48, 3) for _ in range(10)]
    sweep = IRSTDMetrics(curve_bins=20)
    for p, m in cases:
        sweep.update(p, m)
    out = sweep.get()
    c = out["curves"]
    assert c["thresholds"] == pytest.approx([b / 20 for b in range(20)])
    i = c["thresholds"].index(0.5)  # the 0.5 point of the sweep equals the single-threshold metrics
    assert c["pd"][i] == pytest.approx(out["Pd"]) and c["fa"][i] == pytest.approx(out["Fa"])
    rec = np.asarray(c["pixel_recall"])
    assert np.all(np.diff(rec) <= 1e-12) and rec[0] == 1.0  # prob > 0 everywhere here: recall 1
    # pixel PR against direct counting at one threshold
    t = c["thresholds"][7]
    tp = sum(np.sum((p > t) & m) for p, m in cases)
    fp = sum(np.sum((p > t) & ~m) for p, m in cases)
    pos = sum(m.sum() for _, m in cases)
    assert c["pixel_precision"][7] == pytest.approx(tp / (tp + fp)) and c["pixel_recall"][7] == pytest.approx(tp / pos)
    ref = reference(*zip(*cases), thr=t)
    assert c["pd"][7] == pytest.approx(ref["Pd"]) and c["fa"][7] == pytest.approx(ref["Fa"])
    paths = plot_curves(c, tmp_path)
    assert [p.name for p in paths] == ["roc.png", "pr.png"]
    for p in paths:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 5000
    j = save_curves(c, tmp_path / "c.json")
    assert load_curves(j) == c
    assert len(plot_curves({"a": c, "b": c}, tmp_path / "two", prefix="x_")) == 2


def test_logit_spaced_sweep():
    from gaussconv_plugin.metrics import sweep_thresholds

    t = sweep_thresholds(21, "logit")
    assert t[10] == pytest.approx(0.5) and t[0] == pytest.approx(1 / (1 + np.exp(10))) and np.all(np.diff(t) > 0)
    rng = np.random.default_rng(5)
    cases = [make_case(rng, 40, 40, 2) for _ in range(6)]
    m = IRSTDMetrics(curve_bins=21, curve_spacing="logit")
    for p, k in cases:
        m.update(p, k)
    out = m.get()
    c = out["curves"]
    assert c["thresholds"] == pytest.approx(t.tolist())
    assert c["pd"][10] == pytest.approx(out["Pd"]) and c["fa"][10] == pytest.approx(out["Fa"])
    ref = reference(*zip(*cases), thr=t[3])
    assert c["pd"][3] == pytest.approx(ref["Pd"]) and c["fa"][3] == pytest.approx(ref["Fa"])
    with pytest.raises(ValueError, match="curve_spacing"):
        IRSTDMetrics(curve_bins=5, curve_spacing="log")


def test_input_checks():
    m = IRSTDMetrics()
    with pytest.raises(ValueError, match="sigmoid"):
        m.update(np.full((4, 4), 2.0), np.zeros((4, 4), bool))
    with pytest.raises(ValueError, match="same shape|one shape"):
        m.update(np.zeros((4, 4)), np.zeros((4, 5), bool))
    with pytest.raises(RuntimeError, match="before any update"):
        IRSTDMetrics().get()
    with pytest.raises(RuntimeError, match="curve_bins"):
        IRSTDMetrics().curves()
    with pytest.raises(ValueError, match="threshold"):
        IRSTDMetrics(threshold=1.5)


def test_plot_roc_tool(tmp_path, capsys):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location("gaussconv_tools_plot_roc",
                                                  Path(__file__).resolve().parents[1] / "tools" / "plot_roc.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    rng = np.random.default_rng(3)
    files = []
    for k in range(2):
        m = IRSTDMetrics(curve_bins=8)
        for _ in range(3):
            m.update(*make_case(rng, 32, 32, 2))
        files.append(save_curves(m.curves(), tmp_path / f"run{k}" / "curves.json"))
    paths = tool.main([f"base={files[0]}", f"gauss={files[1]}", "--out-dir", str(tmp_path / "cmp"), "--prefix", "s_"])
    assert [p.name for p in paths] == ["s_roc.png", "s_pr.png"] and all(p.stat().st_size > 5000 for p in paths)
    assert tool.main([str(files[0]), "--out-dir", str(tmp_path / "one")])[0].is_file()
    with pytest.raises(SystemExit):
        tool.main([str(tmp_path / "missing.json"), "--out-dir", str(tmp_path)])
    assert "not found" in capsys.readouterr().err


def test_mmengine_metric_matches_reference(tmp_path):
    pytest.importorskip("mmengine")
    import torch

    from gaussconv_plugin.mmdet.segmentation import IRSTDMetric

    rng = np.random.default_rng(4)
    cases = [make_case(rng, 30 + 5 * k, 40, k % 3) for k in range(6)]
    metric = IRSTDMetric(curve_bins=5, out_dir=str(tmp_path / "curves"))
    for p, m in cases:  # what IRSTDSegmentor's predict mode returns (tensors, cropped to the image)
        metric.process({}, [{"name": "x", "pred_prob": torch.from_numpy(p).float(), "gt_mask": torch.from_numpy(m)}])
    got = metric.evaluate(len(cases))
    ref = reference([p.astype(np.float32) for p, _ in cases], [m for _, m in cases])
    for k in ("mIoU", "nIoU", "Pd", "Fa"):
        assert abs(got[f"irstd/{k}"] - ref[k]) < 1e-6, k
    assert {p.name for p in (tmp_path / "curves").iterdir()} == {"curves.json", "roc.png", "pr.png"}
    assert len(metric.last_curves["pd"]) == 5
