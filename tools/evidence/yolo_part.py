"""YOLOv8n part: the variant's model YAML, the stock ``yolo train`` command, its result and its target-level
evaluation (:mod:`.boxeval` in a child process, fixed protocol: one image at a time at the training size)."""
from __future__ import annotations

import csv
import json
import statistics
import sys
from pathlib import Path

from gaussconv_plugin.boxmetrics import EVAL_CONF  # the target-level evaluation's confidence threshold

from . import defaults
from .core import REPO, Run, call_step, dataset_tag
from .variants import BASELINE_LOSS, VARIANTS

__all__ = ["model_yaml", "data_yaml", "command", "resume_command", "checkpoint_epoch", "checkpoint_ok", "result",
           "evaluate", "DEFAULTS"]

DEFAULTS = defaults.YOLO  # the part's defaults (:mod:`.defaults`)


def model_yaml(run: Run) -> Path:
    """Write the variant's model YAML into the run folder: the packaged P2 (or P3–P5) base twin with layers 0–1
    replaced by the variant's conv (+ options), the scale-loss keys set and, for ``head='finest'``, ``Detect`` on
    the finest level alone (the head's later layers dropped). Named ``yolov8n-…`` (scale ``n``)."""
    import yaml

    v = VARIANTS[run.variant]
    arch = run.opts.get("yolo_arch", DEFAULTS["yolo_arch"])
    stem = "yolov8-p2" if arch == "p2" else "yolov8"
    src = REPO / "yolo_cfgs" / f"{stem}-base.yaml"
    cfg = yaml.safe_load(src.read_text())
    for row in cfg["backbone"][:2]:
        row[2] = v.conv
        if v.conv_opts:
            row[3] = [*row[3], dict(v.conv_opts)]
    if v.head == "finest":  # Detect on the finest output alone; the layers that only fed coarser levels go too
        det = cfg["head"][-1]
        finest = det[0][0]
        cfg["head"] = cfg["head"][: finest - len(cfg["backbone"]) + 1] + [[[finest], *det[1:]]]
    cfg["scale_loss"] = v.loss or BASELINE_LOSS["yolo"]
    cfg.update(v.yaml_keys)
    dst = run.dir / f"{stem.replace('yolov8', 'yolov8n')}-{run.variant}.yaml"
    dst.write_text(f"# ablation variant {run.variant!r}: {src.name} with layers 0-1 = {v.conv} {v.conv_opts or ''}, "
                   f"scale_loss={cfg['scale_loss']} {v.yaml_keys or ''}\n" + yaml.safe_dump(cfg, sort_keys=False))
    return dst


def data_yaml(opts: dict) -> Path:
    """The split pair of ``opts['split']`` of ``opts['data_root']`` as a YOLO dataset in the cache (converted once;
    the default SIRST folder keeps its ``sirst_yolo[_<train>-<eval>]`` cache names)."""
    from gaussconv_plugin.data import cache_dir, sirst_root
    from gaussconv_plugin.data.yolo_format import prepare_yolo

    from .datasets import is_default_sirst, parse_split

    train, ev = parse_split(opts.get("split", "trainval:test"))
    limit = opts.get("limit")
    root = sirst_root(opts.get("data_root")).resolve()
    if is_default_sirst(root):
        sub = "sirst_yolo" if (train, ev) == ("trainval", "test") else f"sirst_yolo_{train}-{ev}"
        sub += f"_limit{limit}" if limit else ""
    else:
        sub = f"yolo_{dataset_tag(root, limit)}_{train}-{ev}"
    return Path(prepare_yolo(root, cache_dir(sub), splits=(("train", train), ("val", ev)), limit=limit))


def device(opts: dict) -> str:
    """The ``device=`` of ``yolo train``: ``opts['device']`` if set, else GPU 0 where CUDA is available (as MMEngine
    picks it for the U-Net and RetinaNet parts), else ``cpu``."""
    if opts.get("device"):
        return str(opts["device"])
    import torch

    return "0" if torch.cuda.is_available() else "cpu"


def command(run: Run, data: Path) -> list[str]:
    o = run.opts
    yolo = Path(sys.executable).with_name("yolo")
    return [str(yolo), "train", f"model={model_yaml(run)}", f"data={data}", f"epochs={run.epochs}",
            f"imgsz={o.get('imgsz', DEFAULTS['imgsz'])}", f"batch={o.get('batch', DEFAULTS['batch'])}",
            f"device={device(o)}", "workers=0", f"seed={run.seed}", "deterministic=True",
            f"project={run.dir}", "name=train", "exist_ok=True", "plots=False", "amp=False"]


def resume_command(run: Run, data=None) -> list[str] | None:
    """How the run goes on from its ``last.pt`` (Ultralytics rewrites it in place at every epoch end, then once more
    at the end of training, stripped): ``[]`` where it loads and carries the run's last epoch (training finished:
    nothing to train); ``yolo train resume`` where it loads and carries an earlier epoch (``results.csv`` may hold
    a row more: the epoch cut off after its row was written and before its save is trained again); None where there
    is none or it does not load (cut off while being written: the run starts again). :func:`checkpoint_epoch`."""
    last = run.dir / "train" / "weights" / "last.pt"
    if not last.is_file():
        return None
    done = checkpoint_epoch(last)
    if done is None:  # killed while it was being written
        return None
    if done >= run.epochs:
        return []
    return [str(Path(sys.executable).with_name("yolo")), "train", "resume", f"model={last}"]


def _last_per_key(rows: list[dict], keys: tuple[str, ...]) -> list[dict]:
    """``rows`` with one row per ``keys`` value, the last one written (a resumed run logs the epoch it was cut off
    in again), in order of ``keys`` (epoch numerically)."""
    last = {tuple(r[k] for k in keys): r for r in rows}
    return sorted(last.values(), key=lambda r: (int(float(r[keys[0]])), *(r[k] for k in keys[1:])))


def checkpoint_epoch(path: Path) -> int | None:
    """The epochs of training the Ultralytics checkpoint ``path`` carries (3: saved at the end of epoch 3), or None
    where it does not load (cut off while being written) or holds no model. An end-of-epoch ``last.pt`` holds
    ``epoch`` = the 0-based epoch it was saved after, its EMA model and the optimizer; the final one, which training
    rewrites at its end (``ultralytics.utils.torch_utils.strip_optimizer``: the EMA as ``model``, no optimizer),
    holds ``epoch = -1`` and the epochs trained in ``train_results`` (``results.csv``'s columns; without them, the
    ``train_args`` epochs)."""
    import torch

    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception:  # noqa: BLE001 — any failure to read it means it is not a complete checkpoint
        return None
    if not isinstance(ckpt, dict) or ckpt.get("epoch") is None:
        return None
    if ckpt.get("ema") is None and ckpt.get("model") is None:
        return None
    if int(ckpt["epoch"]) >= 0:
        return int(ckpt["epoch"]) + 1
    res = {str(k).strip(): v for k, v in (ckpt.get("train_results") or {}).items()}
    epochs = [int(float(e)) for e in res.get("epoch") or [] if e is not None]
    if epochs:
        return max(epochs)
    n = (ckpt.get("train_args") or {}).get("epochs")
    return int(n) if n is not None else None


def checkpoint_ok(path: Path) -> bool:
    """Whether the Ultralytics checkpoint ``path`` loads (one cut off while being written does not)."""
    return checkpoint_epoch(path) is not None


def result(run: Run) -> dict:
    """The run's record from ``results.csv`` (the last row of each epoch), its σ/θ log and its final weights; a run
    whose ``last.pt`` does not load or does not carry its last epoch has no record (one line: resume it)."""
    last_pt = run.dir / "train" / "weights" / "last.pt"
    done = checkpoint_epoch(last_pt) if last_pt.is_file() else None
    if done is None or done < run.epochs:
        what = "is missing or does not load" if done is None else f"carries epoch {done}"
        raise RuntimeError(f"{last_pt} {what}, not the run's last epoch {run.epochs}: no record from these weights; "
                           "rerun the same command to resume the run")
    rows = list(csv.DictReader((run.dir / "train" / "results.csv").open()))
    rows = _last_per_key([{k.strip(): v for k, v in r.items()} for r in rows], ("epoch",))
    if not rows:
        raise RuntimeError(f"{run.dir}/train/results.csv has no epochs")
    last = rows[-1]
    times = [float(r["time"]) for r in rows]
    # the clock restarts at 0 when a run is resumed: that epoch's time is its own value
    per_epoch = [b - a if b >= a else b for a, b in zip([0.0] + times[:-1], times)]
    curves = {k: [float(r[c]) for r in rows] for k, c in [
        ("box_loss", "train/box_loss"), ("cls_loss", "train/cls_loss"), ("dfl_loss", "train/dfl_loss"),
        ("mAP50", "metrics/mAP50(B)"), ("mAP50-95", "metrics/mAP50-95(B)")]}
    shape = run.dir / "train" / "gauss_shape.csv"
    return {
        "metrics": {"mAP50": float(last["metrics/mAP50(B)"]), "mAP50-95": float(last["metrics/mAP50-95(B)"]),
                    "precision": float(last["metrics/precision(B)"]), "recall": float(last["metrics/recall(B)"])},
        "epochs_done": len(rows),
        "sec_per_epoch": statistics.median(per_epoch),
        "curves": {"epoch": [int(float(r["epoch"])) for r in rows], **curves},
        "shape_log": _last_per_key(list(csv.DictReader(shape.open())), ("epoch", "layer")) if shape.is_file() else [],
        "weights": str(last_pt),
    }


def evaluate(run: Run, threads: int = 1) -> dict:
    """Target-level figures of the run's last weights on its evaluation split (child process, see boxeval)."""
    out = run.dir / "boxeval.json"
    cmd = [sys.executable, "-m", "tools.evidence.boxeval", "--weights", str(run.dir / "train" / "weights" / "last.pt"),
           "--split", run.split[1], "--imgsz", str(run.opts.get("imgsz", DEFAULTS["imgsz"])),
           "--conf", str(EVAL_CONF), "--out", str(out)]
    if run.opts.get("data_root"):
        cmd += ["--data-root", str(run.opts["data_root"])]
    if run.opts.get("limit"):
        cmd += ["--limit", str(run.opts["limit"])]
    call_step(cmd, run, threads, "boxeval.log", cwd=REPO)
    rec = json.loads(out.read_text())
    from .boxeval import false_box_metrics

    return {"metrics": {**{k: rec[k] for k in ("Pd", "Fa_per_img", "area_ratio_median")}, **false_box_metrics(rec)},
            "boxeval": rec}
