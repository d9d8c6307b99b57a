"""The runner's malloc settings (``tools.evidence.core.MALLOC_VARS``): every child run gets them unless the
environment sets its own, and they change no number — a training step under them ends with bit-identical
parameters (``tools/bench_alloc.py``'s children; the speed is the benchmark's to print, not a test's)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from tools import bench_alloc  # noqa: E402
from tools.evidence import core  # noqa: E402


def test_child_runs_get_the_malloc_settings_unless_the_environment_sets_them(monkeypatch):
    for k in core.MALLOC_VARS:
        monkeypatch.delenv(k, raising=False)
    env = core.child_env(1)
    assert {k: env[k] for k in core.MALLOC_VARS} == core.MALLOC_VARS
    assert int(env["MALLOC_MMAP_THRESHOLD_"]) >= 2 ** 31 and env["OMP_NUM_THREADS"] == "1"
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", "65536")
    assert core.child_env(2)["MALLOC_MMAP_THRESHOLD_"] == "65536"


@pytest.mark.parametrize("model", ["unet", "yolo"])
def test_the_malloc_settings_change_no_number(model):
    """A default and a tuned child train the same steps (small inputs) to the same parameters, byte for byte; each
    child started with the settings it was meant to (the tuned one with all of them, the default one with none)."""
    default, tuned = (bench_alloc.measure(model, t, steps=2, warmup=1, threads=1, batch=2, size=64)
                      for t in (False, True))
    assert default["malloc"] == {} and tuned["malloc"] == core.MALLOC_VARS
    assert default["digest"] == tuned["digest"]
    assert default["minflt"] > 0 and tuned["rss_mib"] > 0
