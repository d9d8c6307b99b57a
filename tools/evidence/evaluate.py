"""Evaluation of an ablation's finished runs on another dataset in either layout (SIRST v1: ``images/``,
``masks/<name>_pixels0.png``, ``idx_427/<split>.txt``; IRSTD: ``masks/<name>.png``, ``<idx>/<split>.txt``): ``python tools/ablation.py --evaluate ROOT``.

Every selected run that is done (``result.json``) is evaluated with its **final** weights on ``split`` of ``ROOT``
(default ``test``), in a child process with the run's thread budget, and the same tables as the training ones
(:mod:`.report`: ``results.json``, ``results.csv``, ``ablation.md``) are written to
``<out>/evaluate/<ROOT name>[-<split>][-<imgsz>]/`` (the suffixes only when not ``test`` / the training size).
Per-run figures are kept in ``runs/<part>/<train>-<eval>/e<E>/<variant>/seed<k>/eval.json`` below that folder and
reused while the weights file is unchanged. A run restored from a published table (``--restore``, no weights here) takes
its published evaluation on the same split instead (:func:`restored_evaluation`).

- **YOLO** — mAP50, mAP50-95, P, R from Ultralytics' ``DetectionValidator`` (``yolo val``: conf 0.001, NMS IoU
  0.7, rect batches) on the YOLO conversion of the split (:func:`gaussconv_plugin.data.yolo_format.prepare_yolo`,
  cached); Pd, false alarms per image and the median area ratio from
  :func:`tools.evidence.boxeval.evaluate_weights` (one image at a time, conf ≥ 0.3, centres ≤ 3 px).
- **RetinaNet** — :mod:`.retina_eval`: ``tools/test.py`` (batch 1) on the COCO conversion of the split, COCO
  mAP50 and the same target-level figures from its dumped boxes (score ≥ 0.3).
- **U-Net** — ``tools/test.py`` on the run's config with ``test_dataloader.dataset.data_root/split`` overridden:
  mIoU, nIoU, Pd, Fa (``IRSTDMetric``). The U-Net is always evaluated at native size (as in its training).

Input size of the detectors: the size each run was trained at (default), ``--eval-imgsz N`` (long side N), or
``--eval-imgsz native``: every image at its own scale — YOLO predicts it at its long side rounded up to 32
(:func:`~tools.evidence.boxeval.native_imgsz`); ``yolo val`` takes one size per call, so the images are grouped by
that size, validated group by group, and the per-image statistics of all groups are pooled before the AP is
computed (one mAP over the split, as a single ``yolo val`` would give); RetinaNet skips its resize
(``scale_factor=1``). Any image size and aspect ratio works (640×512, 1920×1080 …); images without a target are
background images for mAP and count in the false alarms per image.

The YOLO child (what the parent runs per YOLO run)::

    python -m tools.evidence.evaluate yolo --weights last.pt --data-dir <conversion> --split test \\
        --imgsz native --out eval.json
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import re
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

if __package__ in (None, ""):  # run as a file: make `tools` and `gaussconv_plugin` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tools.evidence import boxeval  # noqa: E402
from tools.evidence.runs import REPO, Run, call, dataset_tag, git_commit, log, record_key, relocated  # noqa: E402
from gaussconv_plugin.boxmetrics import EVAL_CONF, PD_RADIUS  # noqa: E402
from gaussconv_plugin.data.layout import detect_layout  # noqa: E402

__all__ = ["NATIVE", "eval_folder", "train_imgsz", "prepare_yolo_eval", "yolo_val",
           "evaluate_yolo", "NotHere", "restored_evaluation", "evaluate_run", "evaluate_runs", "main"]

NATIVE = "native"


def eval_folder(out: Path, root: Path, split: str = "test", imgsz=None) -> Path:
    """``<out>/evaluate/<root name>[-<split>][-<imgsz>]``: suffixes only for a split other than ``test`` and an
    input size other than each run's training size."""
    name = Path(root).resolve().name + ("" if split == "test" else f"-{split}") + ("" if imgsz is None else f"-{imgsz}")
    return Path(out) / "evaluate" / name


def train_imgsz(rec: dict) -> int | None:
    """The input size a finished run was trained at (RetinaNet records it; YOLO's is in its command)."""
    if rec.get("imgsz"):
        return int(rec["imgsz"])
    for a in rec.get("command", []):
        m = re.fullmatch(r"imgsz=(\d+)", str(a))
        if m:
            return int(m.group(1))
    return None


# ------------------------------------------------------------------------------------------------------ YOLO
def prepare_yolo_eval(root, split: str = "test", limit: int | None = None, out_dir=None) -> Path:
    """YOLO conversion of ``split`` of ``root`` (cached) + what :func:`yolo_val` reads: ``sizes.json``
    (``{name: [h, w]}``) and one dataset YAML per native size group (``lists/native<N>.yaml``) and for all images
    (``lists/all.yaml``). Run once in the parent, before the children."""
    from PIL import Image

    import shutil

    from gaussconv_plugin.data import cache_dir, read_split
    from gaussconv_plugin.data.yolo_format import prepare_yolo

    out = Path(out_dir) if out_dir else cache_dir("eval_yolo", f"{dataset_tag(root, limit)}-{split}")
    prepare_yolo(root, out, splits=(("val", split),), limit=limit)
    imgs = [out / "images" / "val" / f"{n}.png" for n in read_split(root, split)[: limit or None]]
    sizes = {}
    for p in imgs:
        with Image.open(p) as im:
            sizes[p.stem] = [im.height, im.width]
    groups: dict[str, list[Path]] = {"all": imgs}
    for p in imgs:
        groups.setdefault(f"native{boxeval.native_imgsz(*sizes[p.stem])}", []).append(p)
    lists = out / "lists"
    shutil.rmtree(lists, ignore_errors=True)  # no size group of an earlier version of the folder
    lists.mkdir()
    for g, ps in groups.items():
        (lists / f"{g}.txt").write_text("".join(f"{p}\n" for p in ps))
        (lists / f"{g}.yaml").write_text(
            f"# {g}: {len(ps)} image(s) of {split} of {root}\npath: {json.dumps(str(out))}\n"
            f"train: {json.dumps(str(lists / f'{g}.txt'))}\nval: {json.dumps(str(lists / f'{g}.txt'))}\n"
            "nc: 1\nnames:\n  0: Target\n")
    (out / "sizes.json").write_text(json.dumps(sizes, indent=0))
    return out


def yolo_val(weights, data_dir: Path, imgsz, work_dir: Path, device: str = "cpu") -> dict:
    """mAP50, mAP50-95, P, R of ``weights`` on the conversion ``data_dir`` (:func:`prepare_yolo_eval`) with
    Ultralytics' validator: one call at ``imgsz``, or with ``'native'`` one call per size group, the statistics of
    all groups pooled before the AP (module docstring)."""
    from ultralytics import YOLO
    from ultralytics.models.yolo.detect import DetectionValidator
    from ultralytics.utils.metrics import DetMetrics

    data_dir = Path(data_dir)
    lists = data_dir / "lists"
    if str(imgsz) == NATIVE:
        calls = sorted((int(p.stem[len("native"):]), p) for p in lists.glob("native*.yaml"))
    else:
        calls = [(int(imgsz), lists / "all.yaml")]
    kept: list[dict] = []

    class _KeepStats(DetectionValidator):
        def get_stats(self):  # the per-image statistics of this call, before they are reduced to an AP
            kept.append({k: list(v) for k, v in self.metrics.stats.items()})
            return super().get_stats()

    model = YOLO(str(weights))
    groups = []
    for size, yaml in calls:
        n = len((lists / f"{yaml.stem}.txt").read_text().splitlines())
        res = model.val(validator=_KeepStats, data=str(yaml), split="val", imgsz=size, batch=32 if size <= 640 else 4,
                        conf=0.001, iou=0.7, device=device, workers=0, plots=False, verbose=False, save_json=False,
                        project=str(work_dir), name=f"val{size}", exist_ok=True)
        groups.append({"imgsz": size, "images": n, "mAP50": float(res.box.map50)})
    pooled = DetMetrics(names={0: "Target"})
    for k in pooled.stats:
        pooled.stats[k] = [a for s in kept for a in s[k]]
    pooled.process()
    r = pooled.results_dict
    return {"mAP50": r["metrics/mAP50(B)"], "mAP50-95": r["metrics/mAP50-95(B)"],
            "precision": r["metrics/precision(B)"], "recall": r["metrics/recall(B)"], "val_calls": groups}


def evaluate_yolo(weights, root, data_dir, split: str = "test", imgsz=320, limit: int | None = None,
                  work_dir=None, per_image: bool = True) -> dict:
    """:func:`yolo_val` + :func:`tools.evidence.boxeval.evaluate_weights` (same ``imgsz``; ``native`` per image)."""
    work = Path(work_dir or Path(data_dir) / "work")
    m = yolo_val(weights, data_dir, imgsz, work)
    imgsz = NATIVE if str(imgsz) == NATIVE else int(imgsz)
    box = boxeval.evaluate_weights(weights, root, split, imgsz, EVAL_CONF, limit=limit, per_image=per_image)
    return {**m, **box}


# ------------------------------------------------------------------------------------------------------ runs
def _model_options(rec: dict) -> tuple[str, list[str]]:
    """Config file and ``model.*`` cfg-options of a finished MMEngine run (from its recorded command)."""
    cmd = [str(a) for a in rec["command"]]
    opts = cmd[cmd.index("--cfg-options") + 1:] if "--cfg-options" in cmd else []
    return cmd[2], [o for o in opts if o.startswith("model.")]


def _unet(rec: dict, run: Run, root: Path, split: str, limit, work: Path, threads: int) -> dict:
    config, model_opts = _model_options(rec)
    opts = [f"test_dataloader.dataset.data_root={root}", f"test_dataloader.dataset.split={split}",
            "test_dataloader.dataset.idx=None", "test_dataloader.num_workers=0",
            "test_dataloader.persistent_workers=False",
            *model_opts]
    if limit:
        opts.append(f"test_dataloader.dataset.max_images={limit}")
    cmd = [sys.executable, str(REPO / "tools" / "test.py"), config, rec["weights"], "--work-dir", str(work),
           "--cfg-options", *opts]
    work.mkdir(parents=True, exist_ok=True)
    before = set(work.glob("*/*.json"))
    call(cmd, work / "test.log", threads, REPO, f"{run.name}: evaluation failed")
    logs = sorted(set(work.glob("*/*.json")) - before, key=lambda p: p.stat().st_mtime)
    if not logs:
        raise RuntimeError(f"{run.name}: tools/test.py wrote no metrics json under {work}")
    m = json.loads(logs[-1].read_text().splitlines()[-1])
    metrics = {k.split("/", 1)[1]: float(v) for k, v in m.items() if k.startswith("irstd/")}
    return {"metrics": {k: metrics[k] for k in ("mIoU", "nIoU", "Pd", "Fa_e6")},
            "detail": {**metrics, "command": cmd, "imgsz": NATIVE}}


class NotHere(RuntimeError):
    """A run restored from a published table (``--restore``) whose weights are not on this machine and whose
    evaluation on the asked split was never published: left out of that split's table, with one line."""


def restored_evaluation(rec: dict, run: Run, root: Path, split: str, size) -> dict | None:
    """The published evaluation of a run restored without its weights (``--restore``): the record of the same part,
    variant, seed, epochs, training split and spec, on ``<root name>/<split>`` at ``size``, in the
    ``evaluate_<root name>[-<split>]/results.json`` that ``--ood --publish`` wrote beside the restored
    ``results.json``; None where there is none. So an out-of-distribution table cut across machines keeps every run."""
    src = rec.get("restored_from")
    if not src:
        return None
    f = Path(src).parent / ("evaluate_" + root.name + ("" if split == "test" else f"-{split}")) / "results.json"
    try:
        records = json.loads(f.read_text())["runs"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    want = (*record_key(run)[:5], f"{root.name}/{split}")  # the same training run, evaluated on root/split
    for r in records:
        if record_key(r)[:6] == want and str(r.get("eval_imgsz")) == str(size) and r.get("spec") == rec.get("spec"):
            log(f"[restored] {run.name} on {root.name}/{split} from {f}")
            return {**r, "restored_from": str(f)}
    return None


def evaluate_run(run: Run, root: Path, split: str, imgsz, folder: Path, threads: int = 1, limit=None,
                 yolo_data: Path | None = None) -> dict:
    """One finished run on ``split`` of ``root``: a result record shaped like the training one (its part, variant,
    seed, epochs, s/epoch, commit, weights), with this evaluation's metrics and ``split.eval`` = ``<root>/<split>``.
    Reused from ``eval.json`` while the weights are unchanged."""
    from tools.evidence import retina_part

    rec = relocated(json.loads(run.result_file.read_text()), run)
    weights = Path(rec["weights"])
    size = NATIVE if run.part == "unet" else (imgsz if imgsz is not None else train_imgsz(rec))
    if not weights.is_file():
        published = restored_evaluation(rec, run, root, split, size)
        if published is not None:
            return published
        raise (NotHere if rec.get("restored_from") else RuntimeError)(
            f"{run.name}: weights {weights} missing and no published evaluation of it on {root.name}/{split}; "
            f"retrain the run (delete {run.dir})")
    if size is None:
        raise RuntimeError(f"{run.name}: no training size in {run.result_file}; pass --eval-imgsz")
    d = folder / "runs" / run.part / "-".join(run.split) / f"e{run.epochs}" / run.variant / f"seed{run.seed}"
    d.mkdir(parents=True, exist_ok=True)
    cached = d / "eval.json"
    stamp = {"weights": str(weights), "weights_mtime": weights.stat().st_mtime, "root": str(root), "split": split,
             "imgsz": size, "limit": limit}
    if cached.is_file():
        old = json.loads(cached.read_text())
        if old.get("stamp") == stamp:  # (records cached before "machine" was carried get it from result.json)
            return {**old["record"], "machine": old["record"].get("machine", rec.get("machine"))}
    log(f"[eval]  {run.name} on {root.name}/{split} at {size}: {d}")
    if run.part == "yolo":
        out = d / "yolo_eval.json"
        cmd = [sys.executable, "-m", "tools.evidence.evaluate", "yolo", "--weights", str(weights), "--data-root",
               str(root), "--data-dir", str(yolo_data), "--split", split, "--imgsz", str(size), "--work-dir",
               str(d / "work"), "--out", str(out)]
        if limit:
            cmd += ["--limit", str(limit)]
        call(cmd, d / "eval.log", threads, REPO, f"{run.name}: evaluation failed")
        detail = json.loads(out.read_text())
        metrics = {k: detail[k] for k in ("mAP50", "mAP50-95", "precision", "recall", "Pd", "Fa_per_img",
                                          "area_ratio_median")}
        metrics.update(boxeval.false_box_metrics(detail))
    elif run.part == "retina":
        config, model_opts = _model_options(rec)
        out = d / "retina_eval.json"
        cmd = retina_part.eval_command(Path(config), model_opts, str(weights), root, split, size, out, d / "work",
                                       limit, per_image=True)
        call(cmd, d / "eval.log", threads, REPO, f"{run.name}: evaluation failed")
        detail = json.loads(out.read_text())
        metrics = {k: detail[k] for k in ("mAP50", "Pd", "Fa_per_img", "area_ratio_median")}
        metrics.update(boxeval.false_box_metrics(detail))
    else:
        res = _unet(rec, run, root, split, limit, d / "work", threads)
        metrics, detail = res["metrics"], res["detail"]
    record = {k: rec[k] for k in ("part", "variant", "spec", "seed", "epochs", "sec_per_epoch", "wall_s", "threads",
                                  "commit", "finished", "ablation_command", "weights", "machine") if k in rec}
    record.update(split={"train": rec["split"]["train"], "eval": f"{root.name}/{split}"},
                  trained_eval_split=rec["split"]["eval"], trained_dataset=rec.get("dataset"),
                  dataset={"name": root.name, "root": str(root), "layout": detect_layout(root)}, eval_imgsz=size,
                  trained_imgsz=train_imgsz(rec), metrics=metrics, eval=detail,
                  evaluated=_dt.datetime.now().isoformat(timespec="seconds"))
    cached.write_text(json.dumps({"stamp": stamp, "record": record}, indent=1))
    return record


def evaluate_runs(runs: list[Run], root, out: Path, split: str = "test", imgsz=None, threads: int = 1,
                  jobs: int = 1, limit: int | None = None, meta: dict | None = None) -> dict:
    """Evaluate the finished ``runs`` on ``split`` of ``root`` and write the tables (module docstring).
    Returns the summary of :func:`tools.evidence.report.write_tables`."""
    from gaussconv_plugin.data import read_split, sirst_root

    from tools.evidence.report import write_tables

    try:  # clear errors before anything runs
        root = sirst_root(root).resolve()
        read_split(root, split)
    except (FileNotFoundError, ValueError) as e:
        raise SystemExit(f"--evaluate {root} (split {split}): {e}") from None
    done = [r for r in runs if r.done]
    for r in runs:
        if not r.done:
            log(f"[skip]  {r.name}: not trained yet ({r.dir})")
    if not done:
        raise SystemExit(f"no finished runs to evaluate among the {len(runs)} selected; train them first (same "
                         "options without --evaluate)")
    folder = eval_folder(out, root, split, imgsz)
    folder.mkdir(parents=True, exist_ok=True)
    yolo_data = prepare_yolo_eval(root, split, limit) if any(r.part == "yolo" for r in done) else None
    log(f"evaluate: {len(done)} finished run(s) on {root}/{split} at "
        f"{imgsz or 'the training size'}, {jobs} side by side; tables in {folder}")
    records: dict[int, dict] = {}
    errors = []

    def work(i_r):
        i, r = i_r
        try:
            records[i] = evaluate_run(r, root, split, imgsz, folder, threads, limit, yolo_data)
        except NotHere as e:
            log(f"[skip]  {e}")
        except Exception as e:  # keep the others going; report at the end
            errors.append(str(e) if str(e).startswith(r.name) else f"{r.name}: {e}")
            log(f"[fail]  {errors[-1]}")

    with ThreadPoolExecutor(max_workers=jobs) as ex:
        list(ex.map(work, enumerate(done)))
    recs = [records[i] for i in sorted(records)]
    if not recs:
        raise SystemExit(f"every evaluation failed; first: {errors[0]}" if errors else
                         f"no run here to evaluate on {root.name}/{split}: the finished ones were restored without "
                         "weights or a published evaluation of that split; retrain them")
    meta = dict(meta or {})
    sizes = {r["trained_imgsz"] for r in recs if r["part"] != "unet" and r.get("trained_imgsz")}
    if len(sizes) == 1:  # the tables' titles name the training size of the runs, not the command line's
        meta["imgsz"] = sizes.pop()
    text = {None: "as trained (YOLO/RetinaNet: each run's training size; U-Net: native)",
            NATIVE: "native (YOLO: long side rounded up to 32; RetinaNet: no resize; U-Net: native)"}
    meta.update(evaluated_on=str(root), eval_split=split, eval_imgsz=imgsz,
                eval_imgsz_text=text.get(imgsz, f"long side {imgsz} (U-Net: native)"),
                run_commits=sorted({r["commit"] for r in recs}),
                run_commands=sorted({r["ablation_command"] for r in recs if r.get("ablation_command")}),
                run_dates=sorted({r["finished"][:10] for r in recs if r.get("finished")}),
                run_machines=sorted({r["machine"] for r in recs if r.get("machine")}),  # where the runs trained
                # (copied from their result.json), not where this evaluation ran
                notes=[f"- evaluated by commit `{git_commit()}` on {_dt.date.today().isoformat()}; the final weights "
                       "of each run (its last epoch)",
                       "- YOLO: mAP50 etc. from Ultralytics' validator (`yolo val`: conf 0.001, NMS IoU 0.7, rect "
                       "batches; `native`: one call per long-side group, statistics pooled before the AP); Pd, Fa / "
                       "img and area P/T from `tools.evidence.boxeval.evaluate_weights` (one image at a time, conf ≥ "
                       f"{EVAL_CONF:g}, match = box centres ≤ {PD_RADIUS:g} px apart; area P/T = median predicted/"
                       "target box area)",
                       "- RetinaNet: `python -m tools.evidence.retina_eval` (`tools/test.py`, batch 1): COCO mAP50 and "
                       f"the same target-level figures from its boxes with score ≥ {EVAL_CONF:g}",
                       "- U-Net: `tools/test.py` with the test loader on this dataset (native size, IRSTDMetric)",
                       "- images without a target count in Fa / img (and are background images for mAP); s / epoch "
                       "is that of the run's training"])
    summary = write_tables(recs, folder, meta)
    if errors:
        log(f"{len(errors)} evaluation(s) failed; first: {errors[0]}")
    return {"summary": summary, "folder": folder, "records": recs, "errors": errors}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description="evaluate one trained YOLO detector on a prepared split (the child "
                                             "of python tools/ablation.py --evaluate)")
    sub = ap.add_subparsers(dest="part", required=True)
    y = sub.add_parser("yolo")
    y.add_argument("--weights", required=True)
    y.add_argument("--data-root", required=True, help="the SIRST-layout folder")
    y.add_argument("--data-dir", default=None, help="its conversion (prepare_yolo_eval; default: the cache)")
    y.add_argument("--split", default="test")
    y.add_argument("--imgsz", default="320", help="long side N, or 'native'")
    y.add_argument("--limit", type=int, default=None)
    y.add_argument("--work-dir", default=None)
    y.add_argument("--out", default=None)
    a = ap.parse_args(argv)
    imgsz = boxeval.parse_imgsz(a.imgsz)
    data = Path(a.data_dir) if a.data_dir else prepare_yolo_eval(a.data_root, a.split, a.limit)
    rec = evaluate_yolo(a.weights, a.data_root, data, a.split, imgsz, a.limit, a.work_dir)
    text = json.dumps(rec, indent=1)
    print(json.dumps({k: v for k, v in rec.items() if k != "per_image"}, indent=1))
    if a.out:
        Path(a.out).write_text(text)
    return rec


if __name__ == "__main__":
    os.environ.setdefault("MPLBACKEND", "Agg")
    main()
