"""A run of tools/ablation.py that is killed half-way resumes from its last end-of-epoch checkpoint (YOLO: `yolo
train resume`; U-Net: `tools/train.py --resume`), and its result covers every epoch; a YOLO run is finished only when
its last.pt loads and carries its last epoch."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools import ablation  # noqa: E402
from tools.evidence import mmlogs, unet_part  # noqa: E402
from tools.evidence.runs import Run  # noqa: E402
from tools.evidence import yolo_part  # noqa: E402
from tools.evidence.yolo_part import checkpoint_epoch  # noqa: E402


def _kill_between_checkpoints(argv: list[str], changed, complete, env: dict, timeout: float = 420) -> None:
    """Start ``tools/ablation.py argv`` in its own process group and kill the group at a complete checkpoint: each
    time ``changed()`` (a cheap look at the checkpoint files) the group is stopped (SIGSTOP), ``complete()`` checks
    the checkpoint while nothing can write it, and the group is killed (SIGKILL) if it holds, else let go on
    (SIGCONT). So the kill never lands while a checkpoint is being rewritten in place."""
    proc = subprocess.Popen([sys.executable, str(REPO / "tools" / "ablation.py"), *argv], cwd=REPO, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    t0 = time.time()
    try:
        while True:
            assert proc.poll() is None, "the ablation ended before a checkpoint of an epoch before the last"
            assert time.time() - t0 < timeout, "no checkpoint in time"
            if changed():
                os.killpg(proc.pid, signal.SIGSTOP)
                if complete():
                    return
                os.killpg(proc.pid, signal.SIGCONT)
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _changes(*files: Path):
    """A ``changed()`` for :func:`_kill_between_checkpoints`: true when any of ``files`` exists with another
    (mtime, size) than at the last call."""
    seen: dict = {}

    def changed() -> bool:
        now = {}
        for f in files:
            try:
                st = f.stat()
            except FileNotFoundError:
                continue
            now[f] = (st.st_mtime_ns, st.st_size)
        new = bool(now) and now != seen
        seen.clear()
        seen.update(now)
        return new

    return changed


@pytest.mark.parametrize("part, epochs", [("yolo", 4), ("unet", 3)])
def test_a_killed_run_resumes_from_its_last_checkpoint(part, epochs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GAUSSCONV_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "abl"
    argv = ["--parts", part, "--variants", "stock", "--seeds", "0", "--limit", "8", "--epochs", str(epochs),
            "--imgsz", "128", "--batch", "4", "--jobs", "1", "--out", str(out)]
    run = ablation.plan(out, [part], ["stock"], [0], epochs, epochs, split="trainval:test")[0]
    if part == "yolo":
        last = run.dir / "train" / "weights" / "last.pt"
        changed = _changes(last)

        def complete():  # a last.pt that loads and carries an epoch before the last
            done = checkpoint_epoch(last) if last.is_file() else None
            return done is not None and 1 <= done < epochs

    else:
        changed = _changes(run.dir / "last_checkpoint")

        def complete():
            return (run.dir / "last_checkpoint").is_file() and not (run.dir / f"epoch_{epochs}.pth").is_file()

    env = {**os.environ, "GAUSSCONV_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    _kill_between_checkpoints(argv, changed, complete, env)
    assert not run.done and (run.dir / "command.txt").is_file()
    cut = json.loads((run.dir / "segments.json").read_text())
    assert len(cut) == 1 and cut[0]["wall_s"] is None  # the segment that was killed

    ablation.main(argv)
    assert f"[resume] {part}/trainval-test/stock/seed0" in capsys.readouterr().out
    rec = json.loads(run.result_file.read_text())
    assert rec["resumed"] == 1 and rec["epochs_done"] == epochs
    segs = json.loads((run.dir / "segments.json").read_text())
    assert len(segs) == 2 and segs[1]["wall_s"] > 0
    assert {"resume", "--resume"} & set(segs[1]["command"])  # yolo train resume … / tools/train.py … --resume
    assert rec["command"] == segs[0]["command"]  # the run's own command, not the resume
    if part == "yolo":
        assert rec["curves"]["epoch"] == list(range(1, epochs + 1))  # every epoch once, in order (the last log of
        assert len(rec["curves"]["mAP50"]) == epochs                # an epoch trained twice wins)
    else:
        assert rec["curves"]["val_epoch"][-1] == epochs and sorted(rec["curves"]["epoch"]) == list(range(1, epochs + 1))
        assert len(list(run.dir.glob("*/vis_data/scalars.json"))) == 2  # one per segment, merged
        assert [c.name for c in mmlogs.epoch_checkpoints(run.dir)] == [f"epoch_{epochs}.pth"]  # the spare one went
    assert Path(rec["weights"]).is_file()

    # a run whose training finished but whose evaluation did not: rerunning trains nothing
    run.result_file.unlink()
    ablation.main(argv)
    assert json.loads(run.result_file.read_text())["resumed"] == 2
    assert json.loads((run.dir / "segments.json").read_text())[-1]["command"] == []


def test_a_yolo_run_is_finished_only_with_final_weights(tmp_path):
    """``results.csv`` with every epoch's row is not enough: a ``last.pt`` that does not load (killed while being
    written) starts the run again, one that carries an earlier epoch (killed before the last save) resumes it, and
    neither becomes a record; the end-of-epoch ``last.pt`` of the last epoch and the final stripped one (``epoch``
    −1, the epochs in ``train_results``, as Ultralytics' ``strip_optimizer`` leaves it) finish it."""
    import torch

    run = Run("yolo", "stock", 0, 3, tmp_path, {})
    w = tmp_path / "train" / "weights"
    w.mkdir(parents=True)
    (tmp_path / "train" / "results.csv").write_text(
        "epoch,time,train/box_loss,train/cls_loss,train/dfl_loss,metrics/precision(B),metrics/recall(B),"
        "metrics/mAP50(B),metrics/mAP50-95(B)\n" + "".join(f"{e},{10 * e},1,1,1,0.5,0.5,0.4,0.2\n" for e in (1, 2, 3)))
    last = w / "last.pt"
    assert yolo_part.resume_command(run) is None  # no checkpoint: starts again

    def save(**ckpt):
        torch.save({"ema": torch.nn.Conv2d(1, 1, 1), "model": None, "optimizer": {}, **ckpt}, last)

    save(epoch=1)  # saved after epoch 2 of 3 (0-based 1)
    good = last.read_bytes()
    assert checkpoint_epoch(last) == 2
    assert yolo_part.resume_command(run)[-2:] == ["resume", f"model={last}"]
    with pytest.raises(RuntimeError, match="carries epoch 2, not the run's last epoch 3"):
        yolo_part.result(run)
    last.write_bytes(good[: len(good) // 2])  # killed while the last save rewrote it in place
    assert checkpoint_epoch(last) is None and yolo_part.resume_command(run) is None
    with pytest.raises(RuntimeError, match="does not load"):
        yolo_part.result(run)
    torch.save({"epoch": 2, "ema": None, "model": None}, last)  # loads, but holds no weights
    assert checkpoint_epoch(last) is None
    save(epoch=2)  # the end-of-epoch save of the last epoch (killed before the final strip)
    assert yolo_part.resume_command(run) == [] and yolo_part.result(run)["epochs_done"] == 3
    torch.save({"epoch": -1, "model": torch.nn.Conv2d(1, 1, 1), "ema": None, "optimizer": None,
                "train_results": {"epoch": [1, 2, 3]}, "train_args": {"epochs": 3}}, last)  # stripped, final
    assert checkpoint_epoch(last) == 3 and yolo_part.resume_command(run) == []
    rec = yolo_part.result(run)
    assert rec["weights"] == str(last) and rec["metrics"]["mAP50"] == 0.4


def test_mmengine_logs_across_segments(tmp_path):
    """Records of a resumed MMEngine run: the later segment wins for the epoch trained twice; epoch seconds are
    timed within each segment."""
    a, b = tmp_path / "20260101_000000" / "vis_data", tmp_path / "20260101_010000" / "vis_data"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    (a / "scalars.json").write_text("\n".join(json.dumps(r) for r in [
        {"epoch": 1, "loss": 3.0, "lr": 0.1, "step": 5}, {"step": 1, "irstd/mIoU": 0.1},
        {"epoch": 2, "loss": 9.0, "lr": 0.1, "step": 10}]))  # epoch 2 cut off
    time.sleep(0.01)
    (b / "scalars.json").write_text("\n".join(json.dumps(r) for r in [
        {"epoch": 2, "loss": 2.0, "lr": 0.1, "step": 10}, {"step": 2, "irstd/mIoU": 0.2}]))
    os.utime(a / "scalars.json", (time.time() + 5, time.time() + 5))  # a copy's mtimes: the folder names still order
    recs, files = mmlogs.scalar_records(tmp_path)
    assert len(files) == 2
    assert [(r.get("epoch"), r.get("loss"), r.get("irstd/mIoU")) for r in recs] == [
        (1, 3.0, None), (None, None, 0.1), (2, 2.0, None), (None, None, 0.2)]
    log = tmp_path / "log.txt"
    log.write_text("\n".join([
        "11/25 10:00:00 - mmengine - INFO - Checkpoints will be saved to /x.",
        "11/25 10:01:40 - mmengine - INFO - Epoch(val) [1][21/21]    irstd/mIoU: 0.1",
        "11/25 10:02:00 - mmengine - INFO - Epoch(val) [2][10/21]",  # killed during validation
        "11/25 11:00:00 - mmengine - INFO - Checkpoints will be saved to /x.",
        "11/25 11:01:30 - mmengine - INFO - Epoch(val) [2][21/21]    irstd/mIoU: 0.2"]))
    assert mmlogs.epoch_seconds(log) == [100.0, 90.0]
    cmd = ["python", "tools/train.py", "cfg.py", "--work-dir", str(tmp_path), "--cfg-options", "a=1"]
    assert mmlogs.resume_command(tmp_path, 2, cmd) is None  # no checkpoint yet
    (tmp_path / "epoch_1.pth").write_bytes(b"")
    (tmp_path / "last_checkpoint").write_text(str(tmp_path / "epoch_0.pth"))  # cut between delete and rename
    assert mmlogs.resume_command(tmp_path, 2, cmd) == [*cmd[:5], "--resume", str(tmp_path / "epoch_1.pth"), *cmd[5:]]
    (tmp_path / "epoch_2.pth").write_bytes(b"")
    assert mmlogs.validated(tmp_path, 2) and mmlogs.resume_command(tmp_path, 2, cmd) == []


def test_mmengine_run_cut_during_its_last_validation_trains_the_last_epoch_again(tmp_path):
    """MMEngine saves epoch_<E>.pth before validating epoch E: a run cut in that validation is not finished (its
    result would have no last-epoch metrics on any rerun); it resumes from epoch_<E-1>.pth, which the runs keep."""
    seg = tmp_path / "20260101_000000" / "vis_data"
    seg.mkdir(parents=True)
    (seg / "scalars.json").write_text("\n".join(json.dumps(r) for r in [
        {"epoch": 1, "loss": 3.0, "lr": 0.1, "step": 5}, {"step": 1, "irstd/mIoU": 0.1},
        {"epoch": 2, "loss": 2.0, "lr": 0.1, "step": 10}]))  # epoch 2 trained and saved, its validation cut
    for k in (1, 2):
        (tmp_path / f"epoch_{k}.pth").write_bytes(b"")
    cmd = ["python", "tools/train.py", "cfg.py", "--work-dir", str(tmp_path), "--cfg-options", "a=1"]
    assert "default_hooks.checkpoint.max_keep_ckpts=2" in mmlogs.CHECKPOINT_OPTS
    assert not mmlogs.validated(tmp_path, 2)
    assert mmlogs.resume_command(tmp_path, 2, cmd) == [*cmd[:5], "--resume", str(tmp_path / "epoch_1.pth"), *cmd[5:]]
    (tmp_path / "epoch_1.pth").unlink()  # a run of before two were kept: stop in one line, naming the fix
    with pytest.raises(SystemExit, match=r"epoch_2.pth is saved but its validation was cut off .* delete the folder"):
        mmlogs.resume_command(tmp_path, 2, cmd)


def test_epoch_seconds_with_sparse_validation(tmp_path):
    """A run validated every 2nd epoch (the NUDT-SIRST U-Net: every 4th) still times every epoch, from the
    checkpoint saves: an epoch ends at the later of its save and its validation; a segment's first epoch starts at
    the segment's start; the epoch cut off is not timed and its retraining is. The mean is what the U-Net records
    as s / epoch, not the finished segments' wall time / all epochs (which undercounts a resumed run)."""
    log = tmp_path / "log.txt"
    stamp = "11/25 10:{:02d}:{:02d} - mmengine - INFO - "
    lines = [(0, 0, "Checkpoints will be saved to /x."),
             (1, 0, "Saving checkpoint at 1 epochs"),
             (2, 0, "Saving checkpoint at 2 epochs"), (2, 30, "Epoch(val) [2][21/21]    irstd/mIoU: 0.1"),
             (3, 20, "Saving checkpoint at 3 epochs"),
             (3, 50, "Epoch(train) [4][5/10]  loss: 1.0"),  # epoch 4 cut off half-way
             (10, 0, "Checkpoints will be saved to /x."),  # resumed from epoch 3
             (11, 10, "Saving checkpoint at 4 epochs"), (11, 40, "Epoch(val) [4][21/21]    irstd/mIoU: 0.2")]
    log.write_text("\n".join(stamp.format(m, s) + msg for m, s, msg in lines))
    assert mmlogs.epoch_seconds(log) == [60.0, 90.0, 50.0, 100.0]
    run = Run("unet", "stock", 0, 4, tmp_path)
    assert unet_part._epoch_cost(run) == {"sec_per_epoch": 75.0, "epoch_seconds": [60.0, 90.0, 50.0, 100.0]}
    log.write_text(stamp.format(0, 0) + "Checkpoints will be saved to /x.")
    assert mmlogs.epoch_seconds(log) == []
