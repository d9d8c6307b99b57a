"""tools/ablation.py: variant definitions, the child commands, the tables, and a real (tiny) ablation on SIRST
that is then resumed without retraining."""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
import time
import types
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gaussconv_plugin.masks import DEFAULT_MASK_FLOOR  # noqa: E402
from tools import ablation  # noqa: E402
from tools.evidence import stats  # noqa: E402


def test_plan_covers_every_variant_seed_and_part(tmp_path):
    four = ["stock", "gsconv", "diff", "both"]
    runs = ablation.plan(tmp_path, ["yolo", "unet"], four, [0, 1], 3, 5)
    assert len(runs) == 2 * 4 * 2
    assert {(r.part, r.variant, r.seed) for r in runs} == {
        (p, v, s) for p in ("yolo", "unet") for v in four for s in (0, 1)}
    every = ablation.plan(tmp_path, ["yolo", "unet"], list(ablation.VARIANTS), [0], 3, 5)
    # the U-Net has the four base variants, gsconv-hard, the two theta_init='mid' ones, and three of its own
    assert len(every) == len(ablation.VARIANTS) + 7
    assert {r.variant for r in every if r.part == "yolo"}.isdisjoint({"both-directed", "both-noloc", "gsconv-safree"})
    assert {r.epochs for r in runs if r.part == "yolo"} == {3} and {r.epochs for r in runs if r.part == "unet"} == {5}
    assert runs[0].part != runs[1].part  # side-by-side jobs mix the two parts
    assert len({r.dir for r in runs}) == len(runs)
    assert all(r.dir.parts[-4] == "trainval-test" for r in runs)  # the final protocol by default
    with pytest.raises(SystemExit, match="unknown variant 'gauss'; choose from stock, gsconv, "):
        ablation.plan(tmp_path, ["yolo"], ["gauss"], [0], 1, 1)
    with pytest.raises(SystemExit, match="variant\\(s\\) pconv have no unet form"):
        ablation.plan(tmp_path, ["unet"], ["pconv"], [0], 1, 1)
    mixed = ablation.plan(tmp_path, ["yolo", "unet"], ["stock"], [0, 1, 2, 3, 4], 3, 3, part_seeds={"unet": [0, 1, 2]})
    assert [(r.part, r.seed) for r in mixed] == [("yolo", 0), ("unet", 0), ("yolo", 1), ("unet", 1), ("yolo", 2),
                                                 ("unet", 2), ("yolo", 3), ("yolo", 4)]
    screen = ablation.plan(tmp_path, ["yolo", "unet"], ["stock", "pconv"], [0, 1, 2], 3, 3, split="train:val")
    assert [(r.part, r.variant, r.seed) for r in screen[:3]] == [("yolo", "stock", 0), ("unet", "stock", 0),
                                                                 ("yolo", "pconv", 0)]  # seed-major; no unet pconv
    assert len(screen) == 9 and all(r.split == ("train", "val") and "train-val" in r.dir.parts for r in screen)
    twice = ablation.plan(tmp_path, ["unet"], ["stock", "stock", "both"], [0, 0], 3, 3)
    assert [(r.variant, r.seed) for r in twice] == [("stock", 0), ("both", 0)]  # one folder, one run
    with pytest.raises(SystemExit, match="--limit 0: must be a positive number of images per split"):
        ablation.main(["--parts", "unet", "--variants", "stock", "--limit", "0", "--out", str(tmp_path / "x")])


@pytest.mark.parametrize("variant,stem,floor,loss,form,lam", [
    ("stock", "Conv", None, "none", None, None), ("gsconv", "GaussianShapedConv", DEFAULT_MASK_FLOOR, "none", None, None),
    ("gsconv-hard", "GaussianShapedConv", 0.0, "none", None, None),
    ("gsconv-f06", "GaussianShapedConv", 0.6, "none", None, None), ("pconv", "PConv", None, "none", None, None),
    ("diff", "Conv", None, "diff", "add", 1.0), ("diff-mul", "Conv", None, "diff", "mul", 1.0),
    ("diff-l025", "Conv", None, "diff", "add", 0.25),
    ("both", "GaussianShapedConv", DEFAULT_MASK_FLOOR, "diff", "add", 1.0),
    ("both-l025", "GaussianShapedConv", DEFAULT_MASK_FLOOR, "diff", "add", 0.25)])
def test_yolo_variant_yaml_builds_the_intended_model(tmp_path, variant, stem, floor, loss, form, lam):
    from ultralytics.nn.tasks import DetectionModel

    from gaussconv_plugin.yolo.adapter import ScaleBboxLoss

    run = ablation.Run("yolo", variant, 0, 1, tmp_path, {"yolo_arch": "p2"})
    tmp_path.mkdir(exist_ok=True)
    model = DetectionModel(str(ablation.yolo_model_yaml(run)), nc=1, verbose=False)
    assert [type(model.model[i]).__name__ for i in range(3)] == [stem, stem, "C2f"]
    assert {type(m).__name__ for m in model.model[2:].modules()}.isdisjoint({"GaussianShapedConv", "PConv"})
    if floor is not None:
        assert model.model[0].conv.mask_floor == model.model[1].conv.mask_floor == floor
    assert model.yaml["scale_loss"] == loss and model.yaml["scale"] == "n"
    assert len(model.model[-1].stride) == 4  # P2-P5 head
    model.args = types.SimpleNamespace(box=7.5, cls=0.5, dfl=1.5)
    bl = model.init_criterion().bbox_loss
    assert (type(bl) is ScaleBboxLoss) == (loss != "none") and (form is None or bl.form == form)
    assert lam is None or bl.lam == lam


@pytest.mark.parametrize("variant,stem,loss", [("stock-finest", "Conv", "none"),
                                               ("gsconv-finest", "GaussianShapedConv", "none"),
                                               ("both-finest", "GaussianShapedConv", "diff")])
def test_finest_head_variants_detect_on_p2_alone(tmp_path, variant, stem, loss):
    """`-finest`: the twin with Detect on the stride-4 output alone, no layer left that only fed P3-P5."""
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from tools.evidence.variants import resolved

    def build(name, folder):
        folder.mkdir(parents=True, exist_ok=True)
        run = ablation.Run("yolo", name, 0, 1, folder, {"yolo_arch": "p2"})
        return DetectionModel(str(ablation.yolo_model_yaml(run)), nc=1, verbose=False)

    model, full = build(variant, tmp_path / "finest"), build(variant.split("-")[0], tmp_path / "full")
    det = model.model[-1]
    assert det.stride.tolist() == [4.0] and det.nl == 1 and det.f == [18] and len(model.model) == 20
    assert type(model.model[0]).__name__ == stem and model.yaml["scale_loss"] == loss
    assert full.model[-1].stride.tolist() == [4.0, 8.0, 16.0, 32.0]
    assert sum(p.numel() for p in model.parameters()) < sum(p.numel() for p in full.parameters())
    model.eval()
    with torch.no_grad():
        y = model(torch.rand(1, 3, 64, 64))[0]
    assert y.shape == (1, 5, 16 * 16)  # every anchor is a stride-4 one
    assert resolved("yolo", variant)["head"] == "finest" and "head" not in resolved("unet", "stock")


@pytest.mark.parametrize("variant,gauss,mode", [("stock", "none", "var"), ("gsconv", "both", "var"),
                                                ("diff", "none", "diff"), ("both", "both", "diff"),
                                                ("both-directed", "both", "diff"), ("both-noloc", "both", "diff")])
def test_unet_variant_config(tmp_path, variant, gauss, mode):
    from mmengine.config import Config, DictAction

    run = ablation.Run("unet", variant, 3, 15, tmp_path, {})
    cmd = ablation.unet_command(run)
    cfg = Config.fromfile(cmd[2])
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    cfg.merge_from_dict(parser.parse_args(cmd[cmd.index("--cfg-options"):]).cfg_options)
    assert cfg.model.net.gauss_conv == gauss and cfg.model.loss.mode == mode
    assert cfg.model.loss.get("area_grad", "all") == ("directed" if variant == "both-directed" else "all")
    assert cfg.model.loss.with_location is (variant != "both-noloc")
    from gaussconv_plugin.losses import ScaleIoULoss
    loss = ScaleIoULoss(**{k: v for k, v in cfg.model.loss.items() if k != "type"})  # what the segmentor builds
    assert (loss.area_grad, loss.with_location) == (cfg.model.loss.get("area_grad", "all"), variant != "both-noloc")
    assert cfg.train_dataloader.dataset.split == "trainval" and cfg.test_dataloader.dataset.split == "test"
    screen = ablation.unet_command(ablation.Run("unet", variant, 3, 15, tmp_path, {"split": "train:val"}))
    assert "train_dataloader.dataset.split=train" in screen and "val_dataloader.dataset.split=val" in screen
    assert cfg.randomness.seed == 3 and cfg.train_cfg.max_epochs == 15
    assert cfg.train_cfg.val_interval == 3 and cfg.train_cfg.dynamic_intervals == [(14, 1)]  # epochs 3 … 12, 13, 14, 15
    assert cfg.default_hooks.checkpoint.save_best is None  # last epoch, no selection on the test split


@pytest.mark.parametrize("variant", ["gsconv-hard", "gsconv-safree"])
def test_unet_constrained_form_config_builds_and_is_recorded(tmp_path, variant):
    """The two forms that constrain (docs/method.md): the cfg-options reach model.net, the network built from the
    merged config has them, the run's record names them, and the screen plans on NUDT-SIRST's carve."""
    from mmengine.config import Config, DictAction

    from gaussconv_plugin.conv import GaussianShapedConv2d
    from gaussconv_plugin.shaped_kernel import ShapedFilter2d
    from gaussconv_plugin.unet import MSHUNet
    from tools.evidence.variants import resolved

    run = ablation.Run("unet", variant, 1, 20, tmp_path, {"split": "train_sub:val_sub"})
    cmd = ablation.unet_command(run)
    cfg = Config.fromfile(cmd[2])
    parser = argparse.ArgumentParser()
    parser.add_argument("--cfg-options", nargs="+", action=DictAction)
    cfg.merge_from_dict(parser.parse_args(cmd[cmd.index("--cfg-options"):]).cfg_options)
    assert cfg.model.net.gauss_conv == "both" and cfg.model.loss.mode == "var"  # gsconv's loss: SLS
    hard = variant == "gsconv-hard"
    assert cfg.model.net.get("gauss_kwargs", {}).get("mask_floor") == (0.0 if hard else None)
    assert cfg.model.net.get("sa_form", "conv") == ("conv" if hard else "free")
    net = MSHUNet(**cfg.model.net)
    gs = [m for m in net.modules() if isinstance(m, GaussianShapedConv2d)]
    free = [m for m in net.modules() if isinstance(m, ShapedFilter2d)]
    assert all(m.stride == (1, 1) for m in gs)
    if hard:
        assert len(gs) == 18 and not free and {m.mask_floor for m in gs} == {0.0}
    else:
        assert len(gs) == 2 and len(free) == 16 and {m.mask_floor for m in gs} == {DEFAULT_MASK_FLOOR}
        assert all(sum(p.numel() for p in m.parameters()) == 2 for m in free)
    spec = resolved("unet", variant)
    assert spec["conv_opts"]["mask_floor"] == (0.0 if hard else DEFAULT_MASK_FLOOR)
    assert spec["net_opts"] == {"gauss_conv": "both", "sa_form": "conv" if hard else "free"}
    assert resolved("unet", "stock")["net_opts"] == {"gauss_conv": "none", "sa_form": "conv"}
    screen = ablation.plan(tmp_path, ["unet"], ["gsconv", "gsconv-hard", "gsconv-safree"], [0, 1, 2], 3, 20,
                           split="train_sub:val_sub")
    assert len(screen) == 9 and {r.epochs for r in screen} == {20}
    with pytest.raises(SystemExit, match="variant\\(s\\) gsconv-safree have no yolo form"):
        ablation.plan(tmp_path, ["yolo"], ["gsconv-safree"], [0], 1, 1)


def test_summary_mean_and_sample_std():
    recs = [{"part": "unet", "variant": "both", "seed": s, "epochs": 2, "sec_per_epoch": t,
             "metrics": {"mIoU": m, "nIoU": m, "Pd": 1.0, "Fa_e6": 10.0}} for s, m, t in [(0, 0.4, 10), (1, 0.6, 12)]]
    recs.append({"part": "unet", "variant": "stock", "seed": 0, "epochs": 2, "sec_per_epoch": 9,
                 "metrics": {"mIoU": 0.5, "nIoU": 0.5, "Pd": 1.0, "Fa_e6": 1.0}})
    s = ablation.summarize(recs)
    m, sd = s["unet"]["both"]["mIoU"]
    assert m == pytest.approx(0.5) and sd == pytest.approx(math.sqrt(0.02))
    assert math.isnan(s["unet"]["stock"]["mIoU"][1]) and s["unet"]["stock"]["n"] == 1
    md = ablation.markdown(s, {"command": "x", "commit": "c", "date": "d", "machine": "m"})
    assert "| both | 0,1 | 0.5000 ± 0.1414 |" in md and "| stock | 0 | 0.5000 |" in md


def test_unet_last3_only_from_the_last_three_epochs():
    def rec(v, seed, val_epoch, miou):
        return {"part": "unet", "variant": v, "seed": seed, "epochs": 15, "sec_per_epoch": 1,
                "metrics": {"mIoU": miou[-1], "nIoU": 0.5, "Pd": 1.0, "Fa_e6": 1.0},
                "curves": {"val_epoch": val_epoch, "mIoU": miou}}

    every = [3, 6, 9, 12, 13, 14, 15]
    s = ablation.summarize([rec("stock", 0, every, [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.1]),
                            rec("diff", 0, every, [0.1, 0.2, 0.3, 0.4, 0.6, 0.7, 0.5]),
                            rec("both", 0, [3, 6, 9, 12, 15], [0.1, 0.2, 0.3, 0.4, 0.5])])  # no last-epoch vals
    assert s["unet"]["stock"]["mIoU_last3"][0] == pytest.approx(0.4)  # (0.5 + 0.6 + 0.1) / 3, not the last 0.1
    assert s["unet"]["diff"]["paired"]["mIoU_last3"]["mean"] == pytest.approx(0.2)
    assert "mIoU_last3" not in s["unet"]["both"]  # its last three validations are not the last three epochs
    meta = {"command": "x", "commit": "c", "date": "d", "machine": "m"}
    assert "mIoU (last 3) = mean mIoU on `test`" in ablation.markdown(s, meta)
    assert "mIoU (last 3) = mean mIoU on `val`" in ablation.markdown(s, {**meta, "split": "train:val"})  # a screen


def test_paired_difference_and_t_interval():
    d = stats.paired_difference({0: 0.6, 1: 0.7, 2: 0.5, 3: 0.9}, {0: 0.5, 1: 0.5, 2: 0.5})
    assert d["seeds"] == [0, 1, 2] and d["n"] == 3  # only the seeds both have
    assert d["mean"] == pytest.approx(0.1) and d["std"] == pytest.approx(0.1)
    half = 4.302653 * 0.1 / math.sqrt(3)  # t(0.975, 2)
    assert d["ci95"] == pytest.approx((0.1 - half, 0.1 + half), abs=1e-6)
    assert stats.paired_difference({5: 1.0}, {0: 1.0}) is None
    one = stats.paired_difference({0: 1.0}, {0: 0.5})
    assert one["mean"] == 0.5 and math.isnan(one["std"])
    same = stats.paired_difference({0: 3 / 85, 1: 7 / 85}, {0: 6 / 85, 1: 10 / 85})  # −3/85 on both seeds
    assert same["mean"] == pytest.approx(-3 / 85) and all(math.isnan(x) for x in same["ci95"])  # no zero-width interval
    recs = [{"part": "yolo", "variant": v, "seed": s, "epochs": 1, "sec_per_epoch": 1,
             "metrics": {"mAP50": m, "mAP50-95": m, "precision": m, "recall": m, "Pd": m, "Fa_per_img": 0.0}}
            for v, s, m in [("stock", 0, 0.5), ("stock", 1, 0.6), ("pconv", 0, 0.7), ("pconv", 1, 0.9)]]
    s = ablation.summarize(recs)
    assert s["yolo"]["pconv"]["paired"]["mAP50"]["mean"] == pytest.approx(0.25)
    assert "paired" not in s["yolo"]["stock"]
    md = ablation.markdown(s, {"command": "x", "commit": "c", "date": "d", "machine": "m"})
    assert "| pconv | 0,1 | +0.2500 ± 0.0707 [" in md
    assert "+0.000 ± 0 (same on every seed: no interval) |" in md  # Fa / img: 0 on both, no starred point interval


def test_delta_row_names_a_cell_over_fewer_seeds_and_a_part_without_its_reference():
    """The Δ row's seeds are every seed of any of its cells; a cell over fewer says which (here seed 2 of `both` has
    no nIoU). A part with no run of the reference says so instead of showing no Δ table."""
    def rec(part, v, s, m, **extra):
        metrics = ({"mIoU": m, "nIoU": m, "Pd": 1.0, "Fa_e6": 1.0} if part == "unet" else
                   {"mAP50": m, "mAP50-95": m, "precision": m, "recall": m, "Pd": m, "Fa_per_img": 0.0})
        metrics.update(extra)
        return {"part": part, "variant": v, "seed": s, "epochs": 2, "sec_per_epoch": 1, "metrics": metrics}

    recs = [rec("unet", "stock", s, 0.5) for s in range(3)]
    recs += [rec("unet", "both", s, 0.5 + 0.1 * (s + 1)) for s in range(2)]
    recs.append(rec("unet", "both", 2, 0.9))
    del recs[-1]["metrics"]["nIoU"]
    recs += [rec("yolo", "gsconv", s, 0.5) for s in range(2)] + [rec("yolo", "diff", s, 0.6) for s in range(2)]
    md = ablation.markdown(ablation.summarize(recs), {"command": "x", "commit": "c", "date": "d", "machine": "m"})
    row = next(line for line in md.splitlines() if line.startswith("| both | ") and "[" in line)
    cells = row.split(" | ")
    assert cells[1] == "0,1,2" and "(seeds" not in cells[2]  # mIoU over all three
    assert cells[3].startswith("+0.1500 ± 0.0707 [") and cells[3].endswith(" (seeds 0,1)")  # nIoU over two
    assert "No paired difference (yolo): this part has no run of the reference variant `stock`." in md
    assert "No paired difference (unet)" not in md


def test_tiny_ablation_on_sirst_then_resume(tmp_path, monkeypatch, capsys):
    """Both parts, two variants, one seed, one epoch on 8 real SIRST images per split; then the same command
    again must train nothing and give the same tables."""
    monkeypatch.setenv("GAUSSCONV_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "abl"
    argv = ["--limit", "8", "--epochs", "1", "--seeds", "0", "--variants", "stock", "both", "--imgsz", "128",
            "--batch", "4", "--out", str(out), "--publish", str(tmp_path / "pub")]
    summary = ablation.main(argv)
    assert set(summary) == {"yolo", "unet"} and set(summary["yolo"]) == {"stock", "both"}
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 4 and {r["part"] for r in rows} == {"yolo", "unet"}
    for r in rows:
        assert Path(r["weights"]).is_file(), r
        assert (r["train_split"], r["eval_split"]) == ("trainval", "test")
        if r["part"] == "unet":
            assert 0 <= float(r["mIoU"]) <= 1 and 0 <= float(r["Pd"]) <= 1
        else:  # target-level evaluation of the detector (boxeval) on the 8 test images
            assert 0 <= float(r["Pd"]) <= 1 and float(r["Fa_per_img"]) >= 0
    printed = capsys.readouterr().out
    assert "trained weights (kept out of git):" in printed and rows[0]["weights"] in printed
    for name in ["ablation.md", "results.json", "curves_yolo.png", "curves_unet.png", "sigma_theta_yolo.png",
                 "sigma_theta_unet.png", "kernels_yolo_both_seed0.png", "kernels_unet_both_seed0.png"]:
        assert (tmp_path / "pub" / name).stat().st_size > 0, name
    md = (tmp_path / "pub" / "ablation.md").read_text()
    assert "- runs trained by: `python tools/ablation.py --limit 8" in md and "| both | 0 |" in md
    res = json.loads((out / "results.json").read_text())
    assert {(r["part"], r["variant"]) for r in res["runs"]} == {(p, v) for p in ("yolo", "unet") for v in ("stock", "both")}

    table = (out / "results.csv").read_text()
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("result.json")}
    assert len(stamps) == 4
    summary2 = ablation.main(argv)
    assert "4 runs (4 done)" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in out.rglob("result.json")} == stamps  # nothing retrained
    assert (out / "results.csv").read_text() == table
    assert summary2["unet"]["both"]["mIoU"][0] == summary["unet"]["both"]["mIoU"][0]


def test_child_env_is_offline_and_single_threaded(tmp_path, monkeypatch):
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "cfg"))
    env = ablation.child_env(1)
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == "1"
    assert env["YOLO_OFFLINE"] == "1" and env["YOLO_AUTOINSTALL"] == "false"
    assert env["YOLO_CONFIG_DIR"] == str((tmp_path / "cfg").resolve())
    assert (tmp_path / "cfg" / "Ultralytics" / "Arial.ttf").is_file()  # no font download


def test_dataset_split_pairs_and_run_folders(tmp_path):
    """Any TRAIN:EVAL pair of the folder's lists; SIRST runs keep their folders, other datasets get their name."""
    from gaussconv_plugin.data import nudt_root, sirst_root
    from tools.evidence import datasets

    sirst, nudt = sirst_root().resolve(), nudt_root().resolve()
    assert datasets.check_split(nudt, "train_sub:val_sub") == ("train_sub", "val_sub")
    assert datasets.check_split(sirst, "train:val") == ("train", "val")
    with pytest.raises(SystemExit, match=r"--split train:val: .*holds val\.txt"):
        datasets.check_split(nudt, "train:val")  # NUDT-SIRST has no val list: one line naming the fix
    with pytest.raises(SystemExit, match="give two list names as TRAIN:EVAL"):
        datasets.parse_split("trainval")
    runs = ablation.plan(tmp_path, ["yolo", "unet"], ["stock"], [0], 2, 2, data_root=str(nudt),
                         split="train_sub:val_sub")
    assert [r.dir.relative_to(tmp_path).parts[:3] for r in runs] == [
        ("yolo", "nudt_sirst", "train_sub-val_sub"), ("unet", "nudt_sirst", "train_sub-val_sub")]
    old = ablation.plan(tmp_path, ["yolo"], ["stock"], [0], 2, 2, data_root=str(sirst), split="train:val")
    assert old[0].dir.relative_to(tmp_path).parts[:3] == ("yolo", "train-val", "e2")  # resumes pre-dataset runs
    assert ablation.unet_command(runs[1])[2].endswith("unet_mshnet_base_nudt_cpu.py")
    assert ablation.unet_command(old[0].__class__("unet", "stock", 0, 2, tmp_path, {}))[2].endswith(
        "unet_mshnet_base_cpu.py")
    with pytest.raises(SystemExit, match="unknown dataset 'nudt'; choose from sirst, nudt_sirst"):
        datasets.resolve("nudt")


def test_tiny_ablation_on_nudt_sirst(tmp_path, monkeypatch, capsys):
    """`--dataset nudt_sirst`: both parts train on the IRSTD layout at 256 px, every result records its dataset;
    `--ood` then scores the detector on the other shared datasets' validation carves (a screen never sees test)."""
    monkeypatch.setenv("GAUSSCONV_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "abl"
    summary = ablation.main(["--dataset", "nudt_sirst", "--split", "train_sub:val_sub", "--limit", "4", "--epochs",
                             "1", "--seeds", "0", "--variants", "stock", "--batch", "4", "--jobs", "1",
                             "--out", str(out), "--ood", "--publish", str(tmp_path / "pub")])
    printed = capsys.readouterr().out
    for name, split in (("sirst", "val"), ("irstd1k", "val_sub")):
        assert f"## Out of distribution: {name} `{split}`" in printed
        ood = json.loads((tmp_path / "pub" / f"evaluate_{name}-{split}" / "results.json").read_text())
        (rec,) = ood["runs"]
        assert rec["part"] == "yolo" and rec["split"]["eval"] == f"{name}/{split}" and rec["eval_imgsz"] == "native"
        assert rec["eval"]["n_images"] == 4 and 0 <= rec["metrics"]["Pd"] <= 1
    assert set(summary) == {"yolo", "unet"}
    recs = [json.loads(p.read_text()) for p in sorted(out.rglob("result.json"))]
    assert len(recs) == 2
    for r in recs:
        assert r["dataset"]["name"] == "nudt_sirst" and r["dataset"]["layout"] == "irstd"
        assert r["split"] == {"train": "train_sub", "eval": "val_sub"}
    yolo = next(r for r in recs if r["part"] == "yolo")
    assert "imgsz=256" in yolo["command"]  # NUDT-SIRST's native size by default
    assert yolo["eval"]["boxeval"]["n_images"] == 4 and yolo["eval"]["boxeval"]["split"] == "val_sub"
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert {r["dataset"] for r in rows} == {"nudt_sirst"}
    assert (out / "ablation.md").read_text().startswith("Ablation on NUDT-SIRST (50_50): train on `train_sub`")
    assert (out / "curves_yolo.png").is_file() and (out / "curves_unet.png").is_file()


def test_ood_targets_pair_final_with_test_and_screens_with_carves():
    from tools.evidence.datasets import ood_targets

    assert ood_targets("sirst", "trainval:test") == [("nudt_sirst", "test"), ("irstd1k", "test")]
    assert ood_targets("sirst", "train:val") == [("nudt_sirst", "val_sub"), ("irstd1k", "val_sub")]
    assert ood_targets("irstd1k", "trainval_sub:val_sub") == [("sirst", "val"), ("nudt_sirst", "val_sub")]
    with pytest.raises(SystemExit, match="unknown dataset 'x'"):
        ood_targets("x", "a:b")


def test_figure_titles_name_the_dataset():
    from tools.evidence.plots import dataset_title

    nudt = {"dataset": {"name": "nudt_sirst", "root": "/x", "layout": "irstd"}}
    assert dataset_title([nudt, nudt]) == "NUDT-SIRST"
    assert dataset_title([{}]) == "SIRST v1"  # records made before runs recorded their dataset
    assert dataset_title([{"dataset": {"name": "my_root"}}, nudt]) == "my_root + NUDT-SIRST"


def test_figure_titles_name_the_yolo_model():
    from tools.evidence.plots import part_title

    p2 = {"command": ["yolo", "train", "model=/r/yolov8n-p2-both.yaml"]}
    p3 = {"command": ["yolo", "train", "model=/r/yolov8n-both.yaml"]}
    assert part_title("yolo", [p2, p2]) == "YOLOv8n-P2"
    assert part_title("yolo", [p2, p3]) == part_title("yolo", [{}]) == "YOLOv8n"
    assert part_title("unet", [p2]) == "U-Net"


def test_last_k_mean_column_from_the_curves():
    from tools.evidence import report

    recs = [{"part": "yolo", "variant": v, "seed": k, "epochs": 4, "sec_per_epoch": 1.0,
             "metrics": {"mAP50": c[-1]}, "curves": {"epoch": [1, 2, 3, 4], "mAP50": c}}
            for v, k, c in [("stock", 0, [0.1, 0.6, 0.9, 0.3]), ("stock", 1, [0.0, 0.5, 0.5, 0.5]),
                            ("both", 0, [0.2, 0.7, 0.7, 0.7]), ("both", 1, [0.1, 0.2, 0.8, 0.5])]]
    assert report.last_k_mean(recs[0]) == pytest.approx(0.6) and report.last_k_mean({"curves": {"mAP50": [1]}}) is None
    s = report.summarize(recs)["yolo"]
    assert s["stock"]["mAP50_last3"][0] == pytest.approx(0.55) and s["both"]["mAP50_last3"][0] == pytest.approx(0.6)
    # paired on the last-3 means: seed 0 0.7 - 0.6, seed 1 0.5 - 0.5
    assert s["both"]["paired"]["mAP50_last3"]["mean"] == pytest.approx(0.05)
    assert s["both"]["paired"]["mAP50"]["mean"] == pytest.approx(0.2)  # the last epoch alone: (0.4 + 0.0) / 2
    assert report.summarize([{**recs[0], "part": "unet", "metrics": {"mIoU": 0.5}}])["unet"]["stock"].get(
        "mAP50_last3") is None
    # a RetinaNet run cut during epoch 3's validation and resumed holds no val at 3: no last-3 mean over 1, 2, 4
    gap = {**recs[0], "part": "retina", "curves": {"epoch": [1, 2, 3, 4], "val_epoch": [1, 2, 4], "mAP50": [0.1, 0.6, 0.3]}}
    assert report.summarize([gap])["retina"]["stock"].get("mAP50_last3") is None
    whole = {**gap, "curves": {**gap["curves"], "val_epoch": [2, 3, 4]}}
    assert report.summarize([whole])["retina"]["stock"]["mAP50_last3"][0] == pytest.approx(1.0 / 3)


def test_paired_difference_pairs_only_runs_of_one_hardware():
    """Seed 1 of stock on a GPU is no pair for seed 1 of a variant on the CPU: that pair leaves the Δ table (the
    means keep both), while records without a machine (older runs) still pair."""
    from tools.evidence import report

    gpu, cpu = "NVIDIA H100 80GB HBM3 GPU + 16-core CPU (Xeon), Python 3.12.3, torch 2.11", "2-core CPU (AMD EPYC), x"
    recs = [{"part": "yolo", "variant": v, "seed": k, "epochs": 4, "sec_per_epoch": 1.0, "metrics": {"mAP50": m},
             **({"machine": mach} if mach else {})}
            for v, k, m, mach in [("stock", 0, 0.5, gpu), ("stock", 1, 0.6, gpu), ("stock", 2, 0.4, None),
                                  ("both", 0, 0.7, gpu), ("both", 1, 0.1, cpu), ("both", 2, 0.5, cpu)]]
    assert report.hardware(recs[0]) == "NVIDIA H100 80GB HBM3" and report.hardware(recs[4]) == "CPU"
    assert report.hardware(recs[2]) is None
    s = report.summarize(recs)["yolo"]
    d = s["both"]["paired"]["mAP50"]
    assert d["seeds"] == [0, 2] and d["mean"] == pytest.approx(0.15)  # (0.2 + 0.1) / 2; seed 1 (GPU vs CPU) left out
    assert s["both"]["n"] == 3 and s["both"]["mAP50"][0] == pytest.approx(1.3 / 3)
    # s / epoch per hardware where a row mixes them ("?" = not recorded), pooled where it does not
    assert set(s["both"]["sec_per_epoch_by_hardware"]) == {"NVIDIA H100 80GB HBM3", "CPU"}
    assert set(s["stock"]["sec_per_epoch_by_hardware"]) == {"NVIDIA H100 80GB HBM3", "?"}
    one = report.summarize([r for r in recs if r.get("machine") == gpu])["yolo"]
    assert "sec_per_epoch_by_hardware" not in one["both"]
    md = report.markdown(report.summarize(recs), {"command": "x", "commit": "c", "date": "d", "machine": "m"})
    assert "| 1 ± 0 (CPU) / 1 (NVIDIA H100 80GB HBM3) |" in md


def test_restore_marks_published_runs_done(tmp_path):
    """--restore carries finished runs (another session's, another machine's) into a fresh results folder: only the
    planned runs with the same part, variant, seed, epochs, split pair and dataset are marked done."""
    from tools.evidence import runs as runs_mod

    def rec(variant, seed, epochs=15, dataset="sirst"):
        return {"part": "unet", "variant": variant, "seed": seed, "epochs": epochs,
                "split": {"train": "trainval", "eval": "test"}, "dataset": {"name": dataset},
                "metrics": {"mIoU": 0.4 + seed / 10, "nIoU": 0.5, "Pd": 0.9, "Fa_e6": 10.0}, "sec_per_epoch": 50,
                "wall_s": 750, "commit": "abc1234", "finished": "2026-11-26T10:00:00", "weights": "/gone/epoch_15.pth",
                "curves": {"epoch": [1, 2], "loss": [0.9, 0.8], "val_epoch": [2], "mIoU": [0.4], "Pd": [0.9]}}

    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "results.json").write_text(json.dumps({"meta": {}, "runs": [
        rec("stock", 0), rec("both", 0), rec("stock", 1, epochs=20), rec("stock", 1, dataset="nudt_sirst")]}))
    out = tmp_path / "abl"
    planned = ablation.plan(out, ["unet"], ["stock", "both"], [0, 1], 15, 15)
    done = runs_mod.restore(planned, pub)
    assert sorted((r.variant, r.seed) for r in done) == [("both", 0), ("stock", 0)]
    got = json.loads(done[0].result_file.read_text())
    # one identity for a planned run and a record: restored ones match their run, the others differ in one field
    assert runs_mod.record_key(got) == runs_mod.record_key(done[0])
    stock1 = next(r for r in planned if (r.variant, r.seed) == ("stock", 1))
    assert runs_mod.record_key(rec("stock", 1)) == runs_mod.record_key(stock1)
    assert runs_mod.record_key(rec("stock", 1, epochs=20)) != runs_mod.record_key(stock1)
    assert runs_mod.record_key(rec("stock", 1, dataset="nudt_sirst"))[-1] == "nudt_sirst"
    assert got["restored_from"] == str(pub / "results.json") and got["metrics"]["mIoU"] == 0.4
    assert runs_mod.restore(planned, pub / "results.json") == []  # already done: nothing rewritten
    summary = ablation.main(["--parts", "unet", "--variants", "stock", "both", "--seeds", "0", "1", "--unet-epochs",
                             "15", "--out", str(out), "--report-only"])
    assert summary["unet"]["stock"]["n"] == 1 and summary["unet"]["both"]["n"] == 1
    (pub / "bad.json").write_text("[]")
    with pytest.raises(SystemExit, match="not a results.json"):
        runs_mod.restore(planned, pub / "bad.json")
    with pytest.raises(SystemExit, match="no results.json there"):
        runs_mod.restore(planned, tmp_path)


def test_restored_run_keeps_its_published_evaluation(tmp_path):
    """A run restored without its weights (a new machine) takes its published out-of-distribution record on the
    same split instead of failing; another split, seed or spec finds nothing and names the retrain fix."""
    from tools.evidence import evaluate
    from tools.evidence import runs as runs_mod

    spec = {"conv": "Conv", "loss": "none"}
    train = {"part": "yolo", "variant": "stock", "seed": 0, "epochs": 40, "spec": spec,
             "split": {"train": "trainval", "eval": "test"}, "dataset": {"name": "sirst"}, "metrics": {"mAP50": 0.9},
             "commit": "abc1234", "finished": "2026-12-06T01:00:00", "weights": "/gone/last.pt",
             "command": ["yolo", "imgsz=320"]}
    pub = tmp_path / "pub"
    (pub / "evaluate_irstd1k").mkdir(parents=True)
    (pub / "results.json").write_text(json.dumps({"meta": {}, "runs": [train, {**train, "seed": 1}]}))
    ood = {**train, "split": {"train": "trainval", "eval": "irstd1k/test"}, "eval_imgsz": "native",
           "dataset": {"name": "irstd1k"}, "metrics": {"mAP50": 0.61}}
    (pub / "evaluate_irstd1k" / "results.json").write_text(json.dumps({"meta": {}, "runs": [
        ood, {**ood, "seed": 1, "spec": {"conv": "GaussianShapedConv2d", "loss": "none"}}]}))
    planned = ablation.plan(tmp_path / "abl", ["yolo"], ["stock"], [0, 1], 40, 15)
    assert len(runs_mod.restore(planned, pub)) == 2
    root = tmp_path / "irstd1k"
    got = evaluate.evaluate_run(planned[0], root, "test", evaluate.NATIVE, tmp_path / "ev")
    assert got["metrics"]["mAP50"] == 0.61 and got["restored_from"].endswith("evaluate_irstd1k/results.json")
    with pytest.raises(RuntimeError, match="no published evaluation.*retrain the run"):
        evaluate.evaluate_run(planned[0], root, "val_sub", evaluate.NATIVE, tmp_path / "ev")
    with pytest.raises(evaluate.NotHere, match="no published evaluation"):  # seed 1's published record: another spec
        evaluate.evaluate_run(planned[1], root, "test", evaluate.NATIVE, tmp_path / "ev")
    # a run trained here whose weights are gone is an error, not a skip
    fresh = ablation.plan(tmp_path / "abl2", ["yolo"], ["stock"], [0], 40, 15)[0]
    fresh.dir.mkdir(parents=True)
    fresh.result_file.write_text(json.dumps(train))
    with pytest.raises(RuntimeError, match="retrain the run") as e:
        evaluate.evaluate_run(fresh, root, "test", evaluate.NATIVE, tmp_path / "ev")
    assert not isinstance(e.value, evaluate.NotHere)


def test_yolo_device_follows_the_machine_unless_named(tmp_path):
    import torch

    from tools.evidence import yolo_part

    auto = "0" if torch.cuda.is_available() else "cpu"
    run = ablation.Run("yolo", "stock", 0, 3, tmp_path, {})
    assert f"device={auto}" in yolo_part.command(run, tmp_path / "data.yaml")
    run = ablation.Run("yolo", "stock", 0, 3, tmp_path, {"device": "cpu"})
    assert "device=cpu" in yolo_part.command(run, tmp_path / "data.yaml")


def test_finished_run_moved_here_finds_its_weights(tmp_path):
    """A run trained on another machine (or under another --out) and copied into this results folder: its record
    names the old path; collect() points ``weights`` at the copy below the run's own folder, and leaves a record whose
    weights are nowhere here unchanged."""
    from tools.evidence import runs as runs_mod

    out = tmp_path / "abl"
    stock, both = ablation.plan(out, ["unet"], ["stock", "both"], [0], 15, 15)
    for run in (stock, both):
        run.dir.mkdir(parents=True)
        old = Path("/elsewhere/abl", *run.dir.relative_to(out).parts, "epoch_15.pth")
        run.result_file.write_text(json.dumps({"part": "unet", "variant": run.variant, "seed": 0, "weights": str(old)}))
    (stock.dir / "epoch_15.pth").write_bytes(b"w")
    got = {r["variant"]: r["weights"] for r in runs_mod.collect([stock, both])}
    assert got["stock"] == str(stock.dir / "epoch_15.pth")
    assert got["both"].startswith("/elsewhere/abl/")


@pytest.mark.parametrize("part", ["unet", "yolo"])
def test_theta_mid_variant_reaches_every_gaussian_conv(tmp_path, part):
    """gsconv-tmid: theta_init='mid' passes through the U-Net's cfg-options and the YOLO model YAML, and every
    Gaussian conv starts at its kernel size's default_theta (the θ = 0 windmill, off the flip); the record says so."""
    import torch

    from gaussconv_plugin.conv import GaussianShapedConv2d
    from gaussconv_plugin.masks import default_theta
    from tools.evidence.variants import resolved

    run = ablation.Run(part, "gsconv-tmid", 0, 1, tmp_path, {"split": "train:val"})
    if part == "unet":
        from mmengine.config import Config, DictAction

        from gaussconv_plugin.unet import MSHUNet

        cmd = ablation.unet_command(run)
        cfg = Config.fromfile(cmd[2])
        parser = argparse.ArgumentParser()
        parser.add_argument("--cfg-options", nargs="+", action=DictAction)
        cfg.merge_from_dict(parser.parse_args(cmd[cmd.index("--cfg-options"):]).cfg_options)
        net = MSHUNet(**cfg.model.net)
    else:
        from ultralytics.nn.tasks import DetectionModel

        import gaussconv_plugin.yolo  # noqa: F401
        from tools.evidence import yolo_part

        net = DetectionModel(str(yolo_part.model_yaml(run)), verbose=False)
    gs = [m for m in net.modules() if isinstance(m, GaussianShapedConv2d)]
    assert gs and {m.kernel_size[0] for m in gs} >= {3}
    for m in gs:
        assert torch.allclose(m.theta, torch.full_like(m.theta, default_theta(m.kernel_size[0]))), m
    assert resolved(part, "gsconv-tmid")["conv_opts"]["theta_init"] == "mid"
    # gsconv follows the defaults: 'mid' for YOLO since issue 33, θ₀ = 0 where the U-Net pins it
    assert resolved(part, "gsconv")["conv_opts"]["theta_init"] == {"yolo": "mid", "unet": 0.0}[part]


def test_runs_of_a_changed_default_are_not_resumed_reported_or_restored(tmp_path, monkeypatch):
    """``gsconv`` follows the package defaults: a run trained before a default changed (here θ₀ = 0 in a record that
    predates the ``theta_init`` key, then a half-trained run's ``spec.json``) is another design. The ablation stops with
    the folder and the fix instead of resuming, skipping or reporting it under the variant's name, ``--restore`` leaves
    such a record behind, and a record that matches goes through."""
    from tools.evidence import runs as runs_mod
    from tools.evidence import variants as variants_mod

    out = tmp_path / "abl"
    (run,) = ablation.plan(out, ["yolo"], ["gsconv"], [0], 3, 3)
    monkeypatch.setitem(variants_mod.VARIANTS, "gsconv", variants_mod.Variant("GaussianShapedConv",
                                                                              {"theta_init": 0.0}))
    now = variants_mod.resolved("yolo", "gsconv")
    legacy = {"conv": "GaussianShapedConv", "conv_opts": {"mask_floor": DEFAULT_MASK_FLOOR}, "loss": "none"}
    assert runs_mod.spec_drift("yolo", "gsconv", now) == [] == runs_mod.spec_drift("yolo", "gsconv", legacy)
    assert runs_mod.spec_drift("yolo", "gsconv", None) == []  # no spec kept: nothing to compare
    # the package default moves on: θ₀ 0 -> 'mid'
    monkeypatch.setitem(variants_mod.VARIANTS, "gsconv", variants_mod.Variant("GaussianShapedConv",
                                                                              {"theta_init": "mid"}))
    assert runs_mod.spec_drift("yolo", "gsconv", legacy) == ["conv_opts.theta_init: 0.0 -> 'mid'"]
    run.dir.mkdir(parents=True)
    (run.dir / runs_mod.SPEC).write_text(json.dumps(now))  # half-trained under the old default
    with pytest.raises(SystemExit, match=r"seed0 was trained as gsconv .*theta_init: 0\.0 -> 'mid'.*move it aside"):
        runs_mod.check_specs([run])
    with pytest.raises(SystemExit, match="move it aside"):
        ablation.main(["--parts", "yolo", "--variants", "gsconv", "--seeds", "0", "--yolo-epochs", "3", "--out",
                       str(out), "--report-only"])
    (run.dir / runs_mod.SPEC).unlink()
    pub = tmp_path / "pub"
    pub.mkdir()
    rec = {"part": "yolo", "variant": "gsconv", "seed": 0, "epochs": 3, "split": {"train": "trainval", "eval": "test"},
           "dataset": {"name": "sirst"}, "spec": legacy}
    (pub / "results.json").write_text(json.dumps({"runs": [rec]}))
    assert runs_mod.restore([run], pub) == [] and not run.done
    (pub / "results.json").write_text(json.dumps({"runs": [{**rec, "spec": variants_mod.resolved("yolo", "gsconv")}]}))
    assert runs_mod.restore([run], pub) == [run] and run.done
    runs_mod.check_specs([run])  # matches: goes through


def test_a_run_under_other_ablation_options_is_not_taken_for_this_one(tmp_path):
    """``--yolo-arch``, ``--imgsz``, ``--batch`` and ``--limit`` change what a run trains but not its folder: the
    spec a run starts with records them (``run_opts``), so a P3 or 512-px ablation stops at a P2 / 320-px run in the
    same folder instead of resuming or reporting it, ``--restore`` leaves such a record behind, and records that
    predate ``run_opts`` count as the P2, full-data runs they were."""
    from tools.evidence import runs as runs_mod

    out = tmp_path / "abl"
    (p2,) = ablation.plan(out, ["yolo"], ["stock"], [0], 3, 3, yolo_arch="p2", imgsz=320)
    (p3,) = ablation.plan(out, ["yolo"], ["stock"], [0], 3, 3, yolo_arch="p3", imgsz=320)
    (big,) = ablation.plan(out, ["yolo"], ["stock"], [0], 3, 3, yolo_arch="p2", imgsz=512)
    assert p2.dir == p3.dir == big.dir  # the collision this guards against
    assert runs_mod.run_spec(p2)["run_opts"] == {"yolo_arch": "p2", "imgsz": 320, "batch": 16, "limit": None}
    p2.dir.mkdir(parents=True)
    (p2.dir / runs_mod.SPEC).write_text(json.dumps(runs_mod.run_spec(p2)))  # a P2 run at 320, half-trained
    runs_mod.check_specs([p2])
    with pytest.raises(SystemExit, match=r"run_opts\.yolo_arch: 'p2' -> 'p3'.*move it aside"):
        runs_mod.check_specs([p3])
    with pytest.raises(SystemExit, match=r"run_opts\.imgsz: 320 -> 512"):
        runs_mod.check_specs([big])
    legacy = {k: v for k, v in runs_mod.run_spec(p2).items() if k != "run_opts"}  # a record from before run_opts
    assert runs_mod.spec_drift("yolo", "stock", legacy, runs_mod.run_spec(big)) == []  # its size was not recorded
    assert runs_mod.spec_drift("yolo", "stock", legacy, runs_mod.run_spec(p3)) == ["run_opts.yolo_arch: 'p2' -> 'p3'"]
    (p2.dir / runs_mod.SPEC).unlink()
    pub = tmp_path / "pub"
    pub.mkdir()
    rec = {"part": "yolo", "variant": "stock", "seed": 0, "epochs": 3, "split": {"train": "trainval", "eval": "test"},
           "dataset": {"name": "sirst"}, "spec": runs_mod.run_spec(p2)}
    (pub / "results.json").write_text(json.dumps({"runs": [rec]}))
    assert runs_mod.restore([p3], pub) == [] and not p3.done
    assert runs_mod.restore([p2], pub) == [p2] and p2.done


def test_retina_tables_carry_the_size_of_the_false_boxes():
    """Issue 33 asks the RetinaNet twin for the same out-of-distribution evaluation as YOLO: its records carry the
    share of unmatched boxes with a long side ≥ 100 px (``false_box_metrics`` of its ``false_boxes``), the table
    shows it with its note, and the paired Δ covers it."""
    from tools.evidence.boxeval import false_box_metrics

    fb = {"n": 4, "share_long_ge32": 0.5, "share_long_ge100": 0.25, "long_median": 20.0}
    assert false_box_metrics({"false_boxes": fb}) == {"false_ge32": 0.5, "false_ge100": 0.25}  # no heads recorded
    assert false_box_metrics({"false_boxes": {"n": 0}}) == {}

    def rec(v, seed, big):
        return {"part": "retina", "variant": v, "seed": seed, "epochs": 24, "sec_per_epoch": 1,
                "metrics": {"mAP50": 0.5 + seed / 100, "Pd": 0.8, "Fa_per_img": 0.1, "area_ratio_median": 1.0,
                            "false_ge100": big}}

    s = ablation.summarize([rec("stock", 0, 0.0), rec("stock", 1, 0.1), rec("both", 0, 0.5), rec("both", 1, 0.4)])
    assert s["retina"]["both"]["paired"]["false_ge100"]["mean"] == pytest.approx(0.4)
    md = ablation.markdown(s, {"command": "x", "commit": "c", "date": "d", "machine": "m"})
    assert "false ≥ 100 px" in md.split("#### RetinaNet")[1] and "long side ≥ 100 px" in md


def test_retrain_restored_forgets_records_without_weights_only(tmp_path):
    """A run restored from a published table has no weights here, so it cannot be evaluated anew; with
    ``--retrain-restored`` the ablation trains it again. A restored run whose weights are present, and a run trained
    here, are kept; the option refuses ``--restore`` (which would restore the record straight back)."""
    from tools.evidence import runs as runs_mod

    out = tmp_path / "abl"
    gone, kept, own = ablation.plan(out, ["yolo"], ["stock", "gsconv", "diff"], [0], 3, 3)
    for r, extra in ((gone, {"restored_from": "pub/results.json", "weights": "/elsewhere/last.pt"}),
                     (kept, {"restored_from": "pub/results.json", "weights": str(kept.dir / "w.pt")}),
                     (own, {"weights": "/elsewhere/last.pt"})):
        r.dir.mkdir(parents=True)
        r.result_file.write_text(json.dumps({"part": "yolo", "variant": r.variant, "seed": 0, **extra}))
    (kept.dir / "w.pt").write_bytes(b"x")
    assert runs_mod.retrain_restored([gone, kept, own]) == [gone]
    assert not gone.dir.exists() and kept.done and own.done
    with pytest.raises(SystemExit, match="leave out --restore"):
        ablation.main(["--parts", "yolo", "--variants", "stock", "--seeds", "0", "--out", str(out),
                       "--retrain-restored", "--restore", str(tmp_path)])


def test_restore_leaves_a_training_under_way_to_itself(tmp_path, capsys):
    """A published record of a run that is training here again (say a CPU rerun of a GPU run, started with
    ``--retrain-restored``) is not written over its folder: the record would mark the run done, and a later
    ``--retrain-restored`` would delete the folder with its checkpoints. A folder without a checkpoint is restored."""
    from tools.evidence import runs as runs_mod

    out = tmp_path / "abl"
    busy, fresh = ablation.plan(out, ["unet"], ["stock", "both"], [0], 3, 3)
    recs = [{"part": "unet", "variant": r.variant, "seed": 0, "epochs": 3, "dataset": {"name": "sirst"},
             "split": {"train": "trainval", "eval": "test"}, "metrics": {"mIoU": 0.5}, "weights": "/gone/epoch_3.pth"}
            for r in (busy, fresh)]
    pub = tmp_path / "pub"
    pub.mkdir()
    (pub / "results.json").write_text(json.dumps({"meta": {}, "runs": recs}))
    for r in (busy, fresh):  # both started here; only `busy` got as far as a checkpoint
        r.dir.mkdir(parents=True)
        (r.dir / "command.txt").write_text("python tools/train.py x\n")
    (busy.dir / "epoch_1.pth").write_bytes(b"ckpt")
    assert runs_mod.restore([busy, fresh], pub) == [fresh]
    assert not busy.done and (busy.dir / "epoch_1.pth").is_file() and fresh.done
    assert f"[kept] {busy.name}: its training is under way here" in capsys.readouterr().out


def test_a_run_a_live_process_trains_is_not_taken_by_a_second_one(tmp_path, capsys):
    """Two ablations that plan the same run (one command started twice): the second stops with one line naming the
    folder and the process instead of deleting the first's folder (a run cut before its first checkpoint starts
    again) or resuming under it, and ``--restore`` leaves the run to it although it has no checkpoint yet. A lock
    whose process is gone, or whose pid now runs another command line, is taken over; the lock goes with the
    training."""
    import subprocess

    from tools.evidence import runs as runs_mod

    out = tmp_path / "abl"
    (run,) = ablation.plan(out, ["unet"], ["stock"], [0], 3, 3)
    run.dir.mkdir(parents=True)
    (run.dir / "command.txt").write_text("python tools/train.py x\n")  # started, no checkpoint yet
    lock = run.dir.with_name("seed0.lock")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for _ in range(400):  # until /proc shows the child's own command line (not the fork's: on a loaded
            cmd = Path(f"/proc/{other.pid}/cmdline").read_bytes().decode()  # machine the exec can take a while)
            if "time.sleep" in cmd:
                break
            time.sleep(0.025)
        else:
            pytest.fail(f"the child never showed its command line in /proc/{other.pid}/cmdline within 10 s")
        lock.write_text(json.dumps({"pid": other.pid, "cmdline": cmd}))
        assert runs_mod.trained_by(run) == other.pid
        with pytest.raises(RuntimeError, match=f"{run.dir}: process {other.pid} is training this run now"):
            runs_mod.run_one(run)
        assert (run.dir / "command.txt").is_file() and lock.is_file()  # nothing of the first one's touched
        pub = tmp_path / "pub"
        pub.mkdir()
        rec = {"part": "unet", "variant": "stock", "seed": 0, "epochs": 3, "dataset": {"name": "sirst"},
               "split": {"train": "trainval", "eval": "test"}, "metrics": {"mIoU": 0.5}}
        (pub / "results.json").write_text(json.dumps({"meta": {}, "runs": [rec]}))
        assert runs_mod.restore([run], pub) == [] and not run.done
        assert f"[kept] {run.name}" in capsys.readouterr().out
    finally:
        other.kill()
        other.wait()
    assert runs_mod.trained_by(run) is None  # its process is gone
    lock.write_text(json.dumps({"pid": os.getpid(), "cmdline": "some other program"}))
    assert runs_mod.trained_by(run) is None  # a pid reused by another command line
    with runs_mod.claim(run):
        held = json.loads(lock.read_text())
        assert held["pid"] == os.getpid() and runs_mod.trained_by(run) == os.getpid()
    assert not lock.exists()


def test_restore_from_several_folders(tmp_path):
    """``--restore A B``: a table that gathers the runs of two published folders (a new one beside the one it
    extends) restores from both; a run both hold comes from the first named."""
    def rec(variant, miou):
        return {"part": "unet", "variant": variant, "seed": 0, "epochs": 3, "dataset": {"name": "sirst"},
                "split": {"train": "trainval", "eval": "test"}, "metrics": {"mIoU": miou}, "sec_per_epoch": 1,
                "wall_s": 3, "commit": "c", "weights": "/gone/epoch_3.pth", "finished": "2026-12-06T10:00:00",
                "curves": {"epoch": [1, 2, 3], "loss": [0.9, 0.8, 0.7], "val_epoch": [3], "mIoU": [miou], "Pd": [0.9]}}

    a, b = tmp_path / "a", tmp_path / "b"
    for folder, recs in ((a, [rec("stock", 0.5), rec("both", 0.6)]), (b, [rec("gsconv", 0.55), rec("both", 0.9)])):
        folder.mkdir()
        (folder / "results.json").write_text(json.dumps({"meta": {}, "runs": recs}))
    summary = ablation.main(["--parts", "unet", "--variants", "stock", "gsconv", "both", "--seeds", "0",
                             "--unet-epochs", "3", "--out", str(tmp_path / "abl"), "--report-only",
                             "--restore", str(a), str(b)])["unet"]
    assert {v: summary[v]["mIoU"][0] for v in summary} == {"stock": 0.5, "gsconv": 0.55, "both": 0.6}
