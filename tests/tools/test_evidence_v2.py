"""Evidence v2: the RetinaNet part of tools/ablation.py (variant configs, a real tiny run through the ablation) and
the evaluate mode (``--evaluate ROOT``) of finished YOLO/RetinaNet runs on another SIRST-layout folder holding a
non-square 640×512 image, a 1920×1080 one and a target-free one, at the training size and at native size.

Everything trains on a small synthetic SIRST-layout folder (no shared dataset needed): 1 epoch, 8 images, 128 px.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gaussconv_plugin.data import make_synthetic_sirst  # noqa: E402
from gaussconv_plugin.data.synthetic import make_synthetic_image  # noqa: E402
from tools import ablation  # noqa: E402
from tools.evidence import evaluate, report, retina_eval, retina_part, runs, variants  # noqa: E402
from tools.evidence.boxeval import native_imgsz  # noqa: E402

#: the images added to the evaluation folder's test split: (name, (H, W), holds a target)
EXTRA = [("Wide_640x512", (512, 640), True), ("Empty_320x240", (240, 320), False),
         ("Big_1920x1080", (1080, 1920), True)]
TINY = ["--seeds", "0", "--variants", "stock", "--limit", "8", "--epochs", "1", "--imgsz", "128", "--batch", "4"]


def _cfg(cmd: list[str]):
    from mmengine.config import Config, DictAction

    cfg = Config.fromfile(cmd[2])
    p = argparse.ArgumentParser()
    p.add_argument("--cfg-options", nargs="+", action=DictAction)
    cfg.merge_from_dict(p.parse_args(cmd[cmd.index("--cfg-options"):]).cfg_options)
    return cfg


# ------------------------------------------------------------------------------------------------ no training
@pytest.mark.parametrize("variant,backbone,loss,mode", [("stock", "ResNet", "GIoULoss", None),
                                                        ("gsconv", "GaussResNet", "GIoULoss", None),
                                                        ("diff", "ResNet", "DiffScaleIoULoss", "diff"),
                                                        ("both", "GaussResNet", "DiffScaleIoULoss", "diff")])
def test_retina_variant_command(tmp_path, variant, backbone, loss, mode):
    import gaussconv_plugin.mmdet  # noqa: F401  (the config's custom types)

    run = runs.Run("retina", variant, 3, 6, tmp_path, {"split": "train:val", "imgsz": 256})
    cfg = _cfg(retina_part.command(run, tmp_path / "coco"))
    m = cfg.model
    assert m.backbone.type == backbone and m.backbone.depth == 18
    assert m.bbox_head.loss_bbox.type == loss and m.bbox_head.loss_bbox.loss_weight == 2.0
    if backbone == "GaussResNet":
        assert m.backbone.gauss_stem is True and tuple(m.backbone.gauss_stages) == (True, False, False, False)
    if mode:
        assert m.bbox_head.loss_bbox.mode == mode and m.bbox_head.loss_bbox.get("form", "add") == "add"
    # the run's split pair: train on train.json, validate/test (and evaluate) on val.json of the same folder
    assert cfg.train_dataloader.dataset.ann_file == "annotations/train.json"
    for d in ("val_dataloader", "test_dataloader"):
        assert cfg[d].dataset.ann_file == "annotations/val.json" and cfg[d].dataset.data_root == str(tmp_path / "coco")
        assert cfg[d].dataset.pipeline[1].scale == (256, 256)
    assert cfg.val_evaluator.ann_file == cfg.test_evaluator.ann_file == str(tmp_path / "coco/annotations/val.json")
    assert cfg.train_dataloader.dataset.pipeline[2].scale == (256, 256)
    assert cfg.randomness.seed == 3 and cfg.train_cfg.max_epochs == 6 and cfg.train_cfg.val_interval == 1
    assert cfg.param_scheduler[1].end == 6 and cfg.param_scheduler[1].milestones == [4, 5]
    # a checkpoint at every epoch end (resumable), the last two kept while training, none chosen on the eval split
    assert cfg.default_hooks.checkpoint.save_best is None and cfg.default_hooks.checkpoint.interval == 1
    assert cfg.default_hooks.checkpoint.max_keep_ckpts == 2  # the last two (mmlogs.CHECKPOINT_OPTS)
    assert variants.resolved("retina", variant)["box_loss"]["type"] == loss


def test_retina_gsconv_and_diff_options_rebuild_the_gauss_twin(tmp_path):
    """stock + the gsconv options + the diff options = the _gauss config's model, key for key."""
    from mmengine.config import Config

    run = runs.Run("retina", "stock", 0, 2, tmp_path, {})
    cmd = retina_part.command(run, tmp_path)
    i = cmd.index("--cfg-options") + 1
    both = _cfg(cmd[:i] + retina_part.GAUSS_BACKBONE + retina_part.DIFF_LOSS + cmd[i:])
    twin = Config.fromfile(retina_part.CONFIGS["gauss"])
    twin.model.bbox_head.loss_bbox.form = "add"  # the twin relies on the default
    assert both.model.to_dict() == twin.model.to_dict()


def test_registration_and_defaults(tmp_path):
    assert runs.PARTS == ("yolo", "unet", "retina") and runs.DEFAULT_PARTS == ("yolo", "unet")
    assert variants.PART_VARIANTS["retina"] == ["stock", "gsconv", "diff", "both"]
    assert [k for k, _ in report.METRICS["retina"]] == ["mAP50", "mAP50_last3", "Pd", "Fa_per_img", "area_ratio_median",
                                                         "false_ge100"]
    assert report.DIFF_METRICS["retina"] == ["mAP50", "mAP50_last3", "Pd", "Fa_per_img", "area_ratio_median",
                                             "false_ge100"]
    plan = ablation.plan(tmp_path, ["yolo", "retina"], ["stock", "pconv", "both"], [0], 3, 5, 7)
    assert [(r.part, r.variant, r.epochs) for r in plan] == [("yolo", "stock", 3), ("retina", "stock", 7),
                                                              ("yolo", "pconv", 3), ("yolo", "both", 3),
                                                              ("retina", "both", 7)]
    assert {r.epochs for r in ablation.plan(tmp_path, ["retina"], ["stock"], [0], 3, 5)} == {
        retina_part.DEFAULTS["retina_epochs"]}
    with pytest.raises(SystemExit, match="pconv have no retina form"):
        ablation.plan(tmp_path, ["retina"], ["pconv"], [0], 1, 1)
    assert native_imgsz(512, 640) == 640 and native_imgsz(1080, 1920) == 1920 and native_imgsz(209, 219) == 224
    assert evaluate.eval_folder(tmp_path, tmp_path / "NUDT", "test", None) == tmp_path / "evaluate" / "NUDT"
    assert evaluate.eval_folder(tmp_path, tmp_path / "NUDT", "val", "native").name == "NUDT-val-native"
    with pytest.raises(SystemExit, match="--eval-imgsz big"):
        ablation.main(["--evaluate", str(tmp_path), "--eval-imgsz", "big", "--out", str(tmp_path)])


# ------------------------------------------------------------------------------------------ tiny real runs
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A synthetic training folder, an evaluation folder with the extra images, and a private cache."""
    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("evidence_v2")
    mp.setenv("GAUSSCONV_CACHE", str(tmp / "cache"))
    train = make_synthetic_sirst(tmp / "train_root", n=16, seed=0)
    ev = make_synthetic_sirst(tmp / "eval_root", n=6, seed=1)  # test split: 2 images (~200-320 px)
    rng = np.random.default_rng(7)
    for name, (h, w), target in EXTRA:
        img, mask = make_synthetic_image(rng, h, w, p_empty=0.0 if target else 1.0)
        assert mask.any() == target
        Image.fromarray(img, mode="L").save(ev / "images" / f"{name}.png")
        Image.fromarray(mask.astype(np.uint8) * 255, mode="L").save(ev / "masks" / f"{name}_pixels0.png")
    t = ev / "idx_427" / "test.txt"
    t.write_text(t.read_text() + "".join(f"{n}\n" for n, _, _ in EXTRA))
    yield {"train": train, "eval": ev, "out": tmp / "abl", "n_test": len(t.read_text().split()),
           "n_train_test": min(8, len((train / "idx_427" / "test.txt").read_text().split()))}
    mp.undo()


@pytest.fixture(scope="module")
def trained(env):
    """The tiny YOLO run and the tiny RetinaNet run, through tools/ablation.py (side by side)."""
    summary = ablation.main(["--parts", "yolo", "retina", *TINY, "--data-root", str(env["train"]), "--out",
                             str(env["out"]), "--jobs", "2"])
    return summary


def _tag(env) -> str:
    """The runs' folder of the synthetic training set: its name and path hash (two folders of one name never share
    runs)."""
    from gaussconv_plugin.data.sirst import cache_label

    tag = cache_label(env["train"])
    assert tag.startswith("train_root-") and len(tag) == len("train_root-") + 8
    return tag


def test_tiny_retina_run_through_the_ablation(env, trained, monkeypatch):
    assert set(trained) == {"yolo", "retina"} and set(trained["retina"]) == {"stock"}
    res = env["out"] / "retina" / _tag(env) / "trainval-test" / "e1" / "stock" / "seed0"  # named by its folder
    rec = json.loads((res / "result.json").read_text())
    assert rec["part"] == "retina" and rec["split"] == {"train": "trainval", "eval": "test"} and rec["imgsz"] == 128
    assert rec["dataset"] == {"name": "train_root", "root": str(env["train"].resolve()), "layout": "sirst"}
    m = rec["metrics"]
    false = {"false_ge32", "false_ge100"} if rec["eval"]["retina_eval"]["n_false"] else set()  # sizes of the false boxes
    assert set(m) == {"mAP50", "mAP50-95", "Pd", "Fa_per_img", "area_ratio_median"} | false
    assert 0 <= m["mAP50"] <= 1 and 0 <= m["Pd"] <= 1 and m["Fa_per_img"] >= 0
    assert Path(rec["weights"]).is_file() and rec["weights"].endswith("epoch_1.pth")
    assert rec["curves"]["epoch"] == [1] and rec["curves"]["val_epoch"] == [1] and len(rec["curves"]["mAP50"]) == 1
    assert rec["sec_per_epoch"] > 0 and rec["spec"]["box_loss"]["type"] == "GIoULoss"
    ev = rec["eval"]["retina_eval"]
    assert ev["n_images"] == env["n_train_test"] and ev["split"] == "test" and ev["imgsz"] == 128 and ev["conf"] == 0.3
    # the run's saved dump re-scored without the model gives the same counts, plus the duplicate part of Fa
    pkl = res / "retina_eval" / "predictions.pkl"
    again = retina_eval.main(["--predictions", str(pkl), "--data-root", str(env["train"]), "--split", "test",
                              "--limit", str(ev["n_images"])])
    counts = ("n_images", "n_targets", "n_matched", "n_false")
    assert [[r[k] for k in counts] for r in again] == [[ev[k] for k in counts]]
    assert 0 <= again[0]["n_false_duplicate"] <= again[0]["n_false"]
    with pytest.raises(RuntimeError, match="no prediction for .* pass the split the dump was made on"):
        retina_eval.rescore([pkl], env["train"], "trainval")
    # the run folder re-evaluated from its dumped config reproduces its evaluation; overrides go on top, and
    # nothing is written into the run; without a work dir the test folders are deleted on return
    before, tmp = sorted(res.rglob("*")), env["out"] / "tmp_re_eval"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    same, nms = (retina_eval.evaluate_runs([res], opts, env["train"], imgsz=128, limit=ev["n_images"],
                                           work_dir=work_dir)[0]
                 for work_dir, opts in ((env["out"] / "re_eval", []), (None, ["model.test_cfg.nms.iou_threshold=0.3"])))
    assert not list(tmp.glob("retina_eval_runs_*")) and (env["out"] / "re_eval" / "00_stock_seed0" / "predictions.pkl").is_file()
    assert [same[k] for k in counts] == [ev[k] for k in counts] and same["mAP50"] == ev["mAP50"]
    assert same["run"] == str(res) and Path(same["config"]).parent == res
    assert nms["cfg_options"] == ["model.test_cfg.nms.iou_threshold=0.3"] and sorted(res.rglob("*")) == before
    with pytest.raises(SystemExit, match="not a finished MMEngine run"):
        retina_eval.evaluate_runs([res.parent], [], env["train"])
    assert "randomness.seed=0" in rec["command"] and "train_cfg.max_epochs=1" in rec["command"]
    rows = {r["part"]: r for r in csv.DictReader((env["out"] / "results.csv").open())}
    assert set(rows) == {"yolo", "retina"} and rows["retina"]["eval_split"] == "test"
    md = (env["out"] / "ablation.md").read_text()
    assert "#### RetinaNet-R18" in md and "| stock | 0 |" in md and "tools.evidence.retina_eval" in md
    assert (env["out"] / "curves_retina.png").stat().st_size > 0


def _records(folder: Path) -> dict:
    data = json.loads((folder / "results.json").read_text())
    return {r["part"]: r for r in data["runs"]}, data


def _check_eval_tables(folder: Path, env) -> dict:
    for f in ("results.json", "results.csv", "ablation.md"):
        assert (folder / f).stat().st_size > 0, f
    recs, data = _records(folder)
    assert set(recs) == {"yolo", "retina"}
    assert data["meta"]["evaluated_on"] == str(env["eval"].resolve()) and data["meta"]["eval_split"] == "test"
    assert set(data["summary"]) == {"yolo", "retina"}
    y, r = recs["yolo"], recs["retina"]
    assert set(y["metrics"]) == {"mAP50", "mAP50-95", "precision", "recall", "Pd", "Fa_per_img", "area_ratio_median"}
    false = {"false_ge32", "false_ge100"} if r["eval"]["n_false"] else set()
    assert set(r["metrics"]) == {"mAP50", "Pd", "Fa_per_img", "area_ratio_median"} | false
    for rec in (y, r):
        assert rec["split"] == {"train": "trainval", "eval": "eval_root/test"} and rec["trained_eval_split"] == "test"
        m, ev = rec["metrics"], rec["eval"]
        assert 0 <= m["mAP50"] <= 1 and 0 <= m["Pd"] <= 1 and m["Fa_per_img"] >= 0
        # every image of the split is scored, the target-free one included: it counts in Fa per image
        assert ev["n_images"] == env["n_test"] and ev["n_targets"] > 0
        assert m["Fa_per_img"] == pytest.approx(ev["n_false"] / env["n_test"])
        assert not math.isnan(ev["Fa_per_empty_img"])
        per = {p["name"]: p for p in ev["per_image"]}
        assert set(per) == set(env["eval"].joinpath("idx_427", "test.txt").read_text().split())
        assert per["Empty_320x240"]["targets"] == 0 and per["Wide_640x512"]["targets"] >= 1
        assert per["Wide_640x512"]["orig_shape"] == [512, 640] and per["Big_1920x1080"]["orig_shape"] == [1080, 1920]
    rows = list(csv.DictReader((folder / "results.csv").open()))
    assert {(x["part"], x["eval_split"]) for x in rows} == {("yolo", "eval_root/test"), ("retina", "eval_root/test")}
    md = (folder / "ablation.md").read_text()
    assert "evaluated on `" in md and "#### YOLOv8n-P2" in md and "#### RetinaNet-R18" in md
    return recs


def test_evaluate_at_training_size(env, trained, capsys):
    argv = ["--parts", "yolo", "retina", *TINY, "--data-root", str(env["train"]), "--out", str(env["out"]),
            "--evaluate", str(env["eval"])]
    summary = ablation.main(argv)
    folder = env["out"] / "evaluate" / "eval_root"
    assert set(summary) == {"yolo", "retina"}
    recs = _check_eval_tables(folder, env)
    y, r = recs["yolo"], recs["retina"]
    assert y["eval_imgsz"] == r["eval_imgsz"] == 128  # each run at the size it was trained at
    assert [(c["imgsz"], c["images"]) for c in y["eval"]["val_calls"]] == [(128, env["n_test"])]
    ypi = {p["name"]: p for p in y["eval"]["per_image"]}
    assert ypi["Wide_640x512"]["input_shape"] == [128, 128] and ypi["Big_1920x1080"]["input_shape"] == [96, 128]
    rpi = {p["name"]: p for p in r["eval"]["per_image"]}
    assert rpi["Wide_640x512"]["input_shape"] == [102, 128] and rpi["Big_1920x1080"]["input_shape"] == [72, 128]
    # a second call reuses every evaluation (nothing rerun while the weights are unchanged)
    stamps = {p: p.stat().st_mtime_ns for p in folder.rglob("eval.json")}
    assert len(stamps) == 2
    capsys.readouterr()
    ablation.main(argv)
    assert "[eval]" not in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("eval.json")} == stamps


def test_evaluate_at_native_size(env, trained):
    ablation.main(["--parts", "yolo", "retina", *TINY, "--data-root", str(env["train"]), "--out", str(env["out"]),
                   "--evaluate", str(env["eval"]), "--eval-imgsz", "native", "--jobs", "2"])
    folder = env["out"] / "evaluate" / "eval_root-native"
    recs = _check_eval_tables(folder, env)
    y, r = recs["yolo"], recs["retina"]
    assert y["eval_imgsz"] == r["eval_imgsz"] == "native"
    ypi = {p["name"]: p for p in y["eval"]["per_image"]}
    # YOLO saw each image at its long side rounded up to 32: the 640x512 and 1920x1080 ones at scale 1
    assert ypi["Wide_640x512"]["imgsz"] == 640 and ypi["Wide_640x512"]["input_shape"] == [512, 640]
    assert ypi["Big_1920x1080"]["imgsz"] == 1920 and ypi["Big_1920x1080"]["input_shape"] == [1088, 1920]
    for p in ypi.values():
        assert p["imgsz"] == native_imgsz(*p["orig_shape"])
    calls = {c["imgsz"]: c["images"] for c in y["eval"]["val_calls"]}  # yolo val once per size group, pooled
    assert calls[640] == 1 and calls[1920] == 1 and sum(calls.values()) == env["n_test"]
    for p in r["eval"]["per_image"]:  # RetinaNet: no resize at all
        assert p["input_shape"] == p["orig_shape"]
    md = (folder / "ablation.md").read_text()
    assert "input size native" in md


def test_evaluate_on_an_irstd_layout_root(env, trained, tmp_path):
    """`--evaluate` reads the common IRSTD layout too (masks/<name>.png, 50_50/test.txt, boxes from the masks)."""
    irstd = make_synthetic_sirst(tmp_path / "irstd_root", n=8, seed=2, layout="irstd")
    names = (irstd / "50_50" / "test.txt").read_text().split()
    pub = tmp_path / "published_eval"
    summary = ablation.main(["--parts", "yolo", "retina", *TINY, "--data-root", str(env["train"]), "--out",
                             str(env["out"]), "--evaluate", str(irstd), "--publish", str(pub)])
    assert set(summary) == {"yolo", "retina"}
    recs, data = _records(env["out"] / "evaluate" / "irstd_root")
    assert sorted(f.name for f in pub.iterdir()) == ["ablation.md", "results.csv", "results.json"]
    assert json.loads((pub / "results.json").read_text()) == data
    assert "- runs trained on: " in (pub / "ablation.md").read_text()  # the training machine beside the evaluating one
    assert data["meta"]["evaluated_on"] == str(irstd.resolve())
    for rec in recs.values():
        assert rec["split"]["eval"] == "irstd_root/test"
        assert rec["dataset"] == {"name": "irstd_root", "root": str(irstd.resolve()), "layout": "irstd"}
        assert rec["trained_dataset"]["layout"] == "sirst"
        assert data["meta"]["run_machines"] == [rec["machine"]]  # where it trained, carried from its result.json
        assert {p["name"] for p in rec["eval"]["per_image"]} == set(names)
        assert 0 <= rec["metrics"]["Pd"] <= 1 and rec["eval"]["n_targets"] > 0


def test_anchor_scale_reads_yolo_and_retina_runs(env, trained, monkeypatch):
    """`python -m tools.evidence.anchor_scale` on a YOLO and a RetinaNet run folder: each model's own assigner picks
    the anchors, and RetinaNet's targets are at the network's input size (resized with the image), not the file's."""
    from tools.evidence import anchor_scale

    seen = []
    inner = anchor_scale.ratio_stats
    monkeypatch.setattr(anchor_scale, "ratio_stats", lambda p, t, w: seen.append(t) or inner(p, t, w))
    base = (_tag(env), "trainval-test", "e1", "stock", "seed0")
    rows = anchor_scale.main([str(env["out"].joinpath("yolo", *base)), str(env["out"].joinpath("retina", *base)),
                              "--split", "val"])
    assert [Path(r["run"]).parts[-6] for r in rows] == ["yolo", "retina"]
    for r in rows:
        assert r["n"] > 0 and math.isfinite(r["median"]) and 0 <= r["frac_smaller"] <= 1
    retina_targets = seen[1]
    assert len(retina_targets) == rows[1]["n"] and retina_targets.max() <= 128 + 1e-3  # trained and resized at 128
    assert 0 < rows[1]["targets"] <= rows[1]["n"] and math.isfinite(rows[1]["top_median"])
    assert "top_median" not in rows[0]  # YOLO: no class score is paired with its anchors
    with pytest.raises(SystemExit, match="'val' and 'test' data"):
        anchor_scale.main([str(env["out"].joinpath("retina", *base)), "--split", "trainval"])


def test_loss_pipeline_loads_the_boxes_before_the_resize():
    from tools.evidence.anchor_scale import loss_pipeline

    test = [dict(type="LoadImageFromFile"), dict(type="Resize", scale=(320, 320), keep_ratio=True),
            dict(type="LoadAnnotations", with_bbox=True), dict(type="PackDetInputs")]
    assert [s["type"] for s in loss_pipeline(test)] == ["LoadImageFromFile", "LoadAnnotations", "Resize",
                                                          "PackDetInputs"]
    assert test[1]["type"] == "Resize"  # the config's own list is left as it was
    with pytest.raises(SystemExit, match="one LoadAnnotations"):
        loss_pipeline(test[:2])


def test_boxeval_pd_by_area_splits_the_targets_of_the_split(env, trained, tmp_path, capsys):
    """`python -m tools.evidence.boxeval --by-area`: Pd per target-area bin, bins adding up to the whole split."""
    from tools.evidence import boxeval

    weights = env["out"].joinpath("yolo", _tag(env), "trainval-test", "e1", "stock", "seed0", "train", "weights",
                                  "last.pt")
    out = tmp_path / "box.json"
    rec = boxeval.main(["--weights", str(weights), "--data-root", str(env["eval"]), "--imgsz", "128",
                        "--by-area", "9", "25", "64", "--out", str(out)])
    rows = rec["Pd_by_area"]
    assert [r["area"] for r in rows] == ["(0, 9]", "(9, 25]", "(25, 64]", "(64, inf]"]
    assert sum(r["targets"] for r in rows) == rec["n_targets"] > 0
    assert sum(r["matched"] for r in rows) == rec["n_matched"]
    saved = json.loads(out.read_text())["Pd_by_area"]
    assert [(r["area"], r["targets"], r["matched"]) for r in saved] == [(r["area"], r["targets"], r["matched"])
                                                                       for r in rows]
    with pytest.raises(ValueError, match="strictly increasing"):
        boxeval.main(["--weights", str(weights), "--data-root", str(env["eval"]), "--by-area", "25", "9"])


def test_area_pd_pairs_each_bin_with_stock_and_reuses_its_records(env, trained, tmp_path, capsys):
    """`python -m tools.evidence.area_pd RUNS`: one row per variant and area bin, Δ Pd paired with stock's seed; a
    second call reuses the kept records (no model runs)."""
    import shutil

    from tools.evidence import area_pd

    runs = tmp_path / "e1"
    src = env["out"].joinpath("yolo", _tag(env), "trainval-test", "e1", "stock", "seed0")
    for v in ("stock", "twin"):  # the same weights under two names: every paired difference is exactly 0
        shutil.copytree(src, runs / v / "seed0")
    argv = [str(runs), "--data-root", str(env["eval"]), "--imgsz", "128", "--edges", "16", "64",
            "--work-dir", str(tmp_path / "work"), "--out", str(tmp_path / "pd.md")]
    md = area_pd.main(argv)
    assert capsys.readouterr().out.count("[score]") == 2
    rows = md.splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == ["| stock"] * 3 + ["| twin"] * 3  # reference first, 3 bins each
    assert [r.split(" | ")[2] for r in rows[:3]] == ["(0, 16]", "(16, 64]", "(64, inf]"]
    assert all(r.endswith("|  |") for r in rows[:3])  # no Δ for the reference itself
    # the same weights: Δ 0 in each bin that holds targets, no Δ where none does
    cells = [(r.split(" | ")[3], r.split(" | ")[-1].rstrip(" |")) for r in rows[3:]]
    assert any(n != "0" for n, _ in cells), rows[3:]
    assert all(d.startswith("+0.000 ") if n != "0" else d == "" for n, d in cells), rows[3:]
    assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["stock_seed0.json", "twin_seed0.json"]
    assert area_pd.main(argv) == md and "[score]" not in capsys.readouterr().out
    assert (tmp_path / "pd.md").read_text().endswith(md + "\n") and "python -m tools.evidence.area_pd" in \
        (tmp_path / "pd.md").read_text()
    with pytest.raises(SystemExit, match="--reference base has no run"):
        area_pd.main([*argv, "--reference", "base"])
