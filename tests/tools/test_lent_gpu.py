"""tools/lent_gpu.py: the pins of the wheels a bare GPU machine needs, the grayscale dataset copy (the very arrays
the loader reads), a pack too large for one call split over two, and a CPU rehearsal of the device-side ``run`` on
NUDT-SIRST: the ablation reads the carried copy without Ultralytics or MMDetection (absent there), a run cut by the
budget is stopped, what finished comes back as files that ``--restore`` takes."""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from gaussconv_plugin.data import load_image, load_mask, nudt_root  # noqa: E402
from tools import lent_gpu  # noqa: E402


def test_every_wheel_is_pinned_and_a_missing_pin_is_one_line(tmp_path):
    pins = lent_gpu.pinned()
    assert [p.split("==")[0] for p in pins] == list(lent_gpu.WHEELS)
    assert all(p.split("==")[1] for p in pins)
    c = tmp_path / "constraints.txt"
    c.write_text("mmengine==0.10.7\n# addict==2.4.0\n")
    with pytest.raises(SystemExit, match=r"constraints.txt: no pin for addict, yapf"):
        lent_gpu.pinned(("mmengine", "addict", "yapf"), c)


def test_pack_dataset_writes_the_arrays_the_loader_reads(tmp_path):
    src = tmp_path / "src" / "nudt_sirst"
    (src / "images").mkdir(parents=True)
    (src / "masks").mkdir()
    (src / "50_50").mkdir()
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 256, (16, 20), dtype=np.uint8)
    Image.fromarray(np.repeat(grey[..., None], 3, axis=2)).save(src / "images" / "a.png")  # RGB, equal channels
    Image.fromarray(rng.integers(0, 256, (16, 20, 3), dtype=np.uint8)).save(src / "images" / "b.png")  # colour
    for n in "ab":
        Image.fromarray((rng.random((16, 20)) > 0.9).astype(np.uint8) * 255).save(src / "masks" / f"{n}.png")
    (src / "50_50" / "train.txt").write_text("a\nb\n")
    out = lent_gpu.pack_dataset("nudt_sirst", tmp_path / "pack", root=src)
    assert out == tmp_path / "pack" / "data" / "nudt_sirst"  # named as the shared folder: same run paths
    for n in "ab":
        assert Image.open(out / "images" / f"{n}.png").mode == "L"
        np.testing.assert_array_equal(load_image(out, n), load_image(src, n))
        np.testing.assert_array_equal(load_mask(out, n), load_mask(src, n))
    assert (out / "50_50" / "train.txt").read_text() == "a\nb\n"


def test_run_rehearsed_on_cpu_reads_the_copy_and_returns_restorable_files(tmp_path, monkeypatch):
    src = nudt_root()  # ../shared/data/nudt_sirst (CI has it)
    pack = tmp_path / "pack"
    (pack / "data" / "nudt_sirst").mkdir(parents=True)
    copy = pack / "data" / "nudt_sirst"
    names = (src / "50_50" / "train.txt").read_text().split()[:2] + (src / "50_50" / "test.txt").read_text().split()[:2]
    for sub in ("images", "masks"):
        (copy / sub).mkdir()
        for n in names:
            (copy / sub / f"{n}.png").write_bytes((src / sub / f"{n}.png").read_bytes())
    (copy / "50_50").mkdir()
    for split in ("train", "test"):
        keep = [n for n in (src / "50_50" / f"{split}.txt").read_text().split() if n in names]
        (copy / "50_50" / f"{split}.txt").write_text("\n".join(keep) + "\n")
    (pack / "commit").write_text("rehearsal")
    monkeypatch.delenv("GAUSSCONV_NUDT_ROOT", raising=False)
    # the lent machine has neither Ultralytics nor MMDetection / MMCV: hide them from the rehearsal's processes
    blocked = tmp_path / "blocked"
    for m in ("ultralytics", "mmdet", "mmcv"):
        (blocked / m).mkdir(parents=True)
        (blocked / m / "__init__.py").write_text(f"raise ModuleNotFoundError(\"No module named {m!r}\", name={m!r})\n")
    monkeypatch.setenv("PYTHONPATH", str(blocked))
    out, work = tmp_path / "out", tmp_path / "work"
    opts = ["--dataset", "nudt_sirst", "--parts", "unet", "--variants", "stock", "--seeds", "0", "--epochs", "1",
            "--limit", "2", "--jobs", "1", "--threads", "1"]
    rc = lent_gpu.main(["run", "--no-install", "--pack", str(pack), "--work", str(work), "--out", str(out),
                        "--budget-s", "600", "--", *opts])
    assert rc == 0
    assert sorted(p.name for p in out.iterdir()) == ["ablation.md", "results.csv", "results.json", "runs.tar.gz"]
    (rec,) = json.loads((out / "results.json").read_text())["runs"]
    assert Path(rec["dataset"]["root"]) == copy.resolve()  # the carried copy, not ../shared/data
    with tarfile.open(out / "runs.tar.gz") as tar:
        members = tar.getnames()
    assert any(m.endswith("seed0/log.txt") for m in members)
    assert not any(m.endswith((".pth", ".pt")) for m in members)  # weights stay there
    # and the files come back as a published folder that --restore takes
    monkeypatch.delenv("PYTHONPATH")
    from tools import ablation
    monkeypatch.setenv("GAUSSCONV_NUDT_ROOT", str(copy))
    ablation.main([*opts, "--restore", str(out), "--report-only", "--out", str(tmp_path / "here")])
    (here,) = json.loads((tmp_path / "here" / "results.json").read_text())["runs"]
    assert here["restored_from"] and here["seed"] == 0


def test_run_stops_a_run_past_its_budget(tmp_path):
    """A run past its budget is stopped with its whole process tree (the ablation and the training it started):
    exit 124, the files still come back, and no process of that work dir is left."""
    pack = tmp_path / "pack"
    (pack / "data").mkdir(parents=True)
    work = tmp_path / "w"
    rc = lent_gpu.main(["run", "--no-install", "--pack", str(pack), "--work", str(work), "--out",
                        str(tmp_path / "o"), "--budget-s", "20", "--", "--dataset", "nudt_sirst", "--parts", "unet",
                        "--variants", "stock", "--seeds", "0", "--epochs", "50", "--limit", "2", "--jobs", "1"])
    assert rc == 124
    assert (tmp_path / "o" / "runs.tar.gz").is_file()
    assert list(work.rglob("command.txt")), "the budget ran out before the training started: nothing was tested"
    left = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(work) in cmdline and "--report-only" not in cmdline:
            left.append(cmdline)
    assert not left, f"processes of the stopped run are still alive: {left}"


def test_a_pack_over_the_limit_travels_in_two_calls_and_run_checks_it_is_whole(tmp_path, monkeypatch):
    pack = tmp_path / "pack"
    data = pack / "data" / "irstd1k"
    for sub in ("images", "masks", "idx"):
        (data / sub).mkdir(parents=True)
    names = [f"XDU{i}" for i in range(10)]
    for n in names:
        (data / "images" / f"{n}.png").write_bytes(b"i" * 1000)
        (data / "masks" / f"{n}.png").write_bytes(b"m" * 100)
    (data / "idx" / "trainval.txt").write_text("\n".join(names[:8]) + "\n")
    (data / "idx" / "test.txt").write_text("\n".join(names[8:]) + "\n")
    (pack / "wheels").mkdir()
    (pack / "wheels" / "x.whl").write_bytes(b"w" * 500)
    # room for the wheels, masks, lists and 6 of the 10 images beside a 2000-byte working tree
    limit = 2000 + 500 + 1000 + 60 + 6 * 1000 + 100
    moved = lent_gpu.split_for_travel(pack, tree=2000, limit=limit, margin=0)
    assert moved == 4000
    carried = sorted(p.stem for p in (data / "images").iterdir())
    staged = sorted(p.stem for p in (pack / "stage" / "irstd1k" / "images").iterdir())
    assert sorted(carried + staged) == sorted(names) and not set(carried) & set(staged)
    # run refuses a copy without its staged part, in one line naming the fix
    with pytest.raises(SystemExit, match=r"4 images of its split lists are missing .*lent_gpu.py stage"):
        lent_gpu.merge_stage(pack, staged=tmp_path / "nothing_staged")
    # the first call stages, the second merges: the copy is whole again
    monkeypatch.setattr(lent_gpu, "STAGE", tmp_path / "machine_tmp")
    lent_gpu.stage(argparse.Namespace(pack=str(pack)))
    shutil.rmtree(pack / "stage")  # the second call does not carry it
    lent_gpu.merge_stage(pack, staged=lent_gpu.STAGE)
    assert sorted(p.stem for p in (data / "images").iterdir()) == sorted(names)
    # a stage too large to travel even alone is refused
    with pytest.raises(SystemExit, match="do not fit one call beside the working tree either"):
        lent_gpu.split_for_travel(pack, tree=2000, limit=2000 + 500 + 1000 + 60 + 1000, margin=0)
