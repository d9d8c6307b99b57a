#!/usr/bin/env python
"""Benchmark: the ablation's CPU training steps under glibc's default malloc settings and under the runner's
(:data:`tools.evidence.core.MALLOC_VARS`), side by side.

Each candidate trains in a fresh child process (malloc reads its settings at start-up), the two in alternation
(default, tuned, default, tuned, … for ``--rounds``); each child takes ``--warmup`` steps, then times ``--steps``.
Printed per model: wall and CPU (user + kernel) seconds per step, minor page faults per step and peak resident memory,
each with its ratio to the default row, and whether the two ended with bit-identical parameters (the setting must
change no number). Run::

    python tools/bench_alloc.py                    # U-Net (batch 8, 256²) and YOLOv8n-P2 (batch 16, 320²), 1 thread
    python tools/bench_alloc.py --models unet --rounds 3 --steps 6

Models: ``unet`` — the MSHNet U-Net of the ablation (``MSHUNet``, 1 channel, deep-supervised SLS loss, Adagrad);
``yolo`` — ``yolov8n-p2.yaml``'s ``DetectionModel`` (forward + backward of the mean of its raw outputs: the
allocations of a training step without the data pipeline). Inputs are random with a fixed seed.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tools.evidence.core import MALLOC_VARS, child_env  # noqa: E402

__all__ = ["MODELS", "child", "measure", "main"]

#: model → (batch, image size) of its step
MODELS = {"unet": (8, 256), "yolo": (16, 320)}


def _step_fn(model: str, batch: int, size: int):
    """A training step of ``model`` on one fixed random batch, and the module whose parameters it updates."""
    import torch

    torch.manual_seed(0)
    if model == "unet":
        from gaussconv_plugin.losses import ScaleIoULoss
        from gaussconv_plugin.unet import MSHUNet, deep_supervision_loss

        net, loss_fn = MSHUNet(1), ScaleIoULoss("var")
        x = torch.randn(batch, 1, size, size)
        t = (torch.rand(batch, 1, size, size) > 0.995).float()
        opt = torch.optim.Adagrad(net.parameters(), lr=0.05)

        def loss():
            fused, sides = net(x)
            return deep_supervision_loss(fused, sides, t, loss_fn)[0]
    else:
        from ultralytics.nn.tasks import DetectionModel

        net = DetectionModel("yolov8n-p2.yaml", ch=3, nc=1, verbose=False)
        net.train()
        x = torch.rand(batch, 3, size, size)
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

        def tensors(o):  # Detect's training output: a list of maps, or a dict of them (newer heads)
            if torch.is_tensor(o):
                return [o]
            return [t for v in (o.values() if isinstance(o, dict) else o) for t in tensors(v)]

        def loss():
            return sum(o.float().mean() for o in tensors(net(x)))

    def step():
        opt.zero_grad()
        loss().backward()
        opt.step()

    return step, net


def child(model: str, steps: int, warmup: int, threads: int, batch: int | None = None,
          size: int | None = None) -> dict:
    """In this process: ``warmup`` then ``steps`` timed steps (``batch``, ``size``: default :data:`MODELS`'s);
    ``{wall, cpu, sys, minflt}`` per step, peak RSS (MiB), a digest of the final parameters and the malloc settings
    the process started with."""
    import resource

    import torch

    torch.set_num_threads(threads)
    step, net = _step_fn(model, batch or MODELS[model][0], size or MODELS[model][1])
    for _ in range(warmup):
        step()
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    for _ in range(steps):
        step()
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    h = hashlib.sha1()
    for p in net.parameters():
        h.update(p.detach().contiguous().numpy().tobytes())
    return {"wall": wall / steps, "cpu": (r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime) / steps,
            "sys": (r1.ru_stime - r0.ru_stime) / steps, "minflt": (r1.ru_minflt - r0.ru_minflt) / steps,
            "rss_mib": r1.ru_maxrss / 1024, "digest": h.hexdigest(),
            "malloc": {k: os.environ[k] for k in MALLOC_VARS if k in os.environ}}


def measure(model: str, tuned: bool, steps: int, warmup: int, threads: int, batch: int | None = None,
            size: int | None = None) -> dict:
    """:func:`child` of ``model`` in a fresh process: the environment of the ablation's child runs
    (:func:`~tools.evidence.core.child_env`), with :data:`MALLOC_VARS` (``tuned``) or without them."""
    env = {k: v for k, v in child_env(threads).items() if k not in MALLOC_VARS}
    if tuned:
        env.update(MALLOC_VARS)
    out = subprocess.run([sys.executable, __file__, "--child", model, "--steps", str(steps), "--warmup", str(warmup),
                          "--threads", str(threads), *(["--batch", str(batch)] if batch else []),
                          *(["--size", str(size)] if size else [])], env=env, cwd=REPO, capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"bench_alloc: the {model} child failed: {(out.stderr.strip().splitlines() or [''])[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python tools/bench_alloc.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", choices=list(MODELS), default=list(MODELS))
    ap.add_argument("--rounds", type=int, default=2, help="alternating pairs of children per model (default 2)")
    ap.add_argument("--steps", type=int, default=4, help="timed steps per child (default 4)")
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps first (default 2)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=None, help="batch of every model (default: its own, see MODELS)")
    ap.add_argument("--size", type=int, default=None, help="image size of every model (default: its own)")
    ap.add_argument("--child", choices=list(MODELS), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.child, a.steps, a.warmup, a.threads, a.batch, a.size)))
        return
    import torch

    print(f"torch {torch.__version__}, {platform.machine()}, {a.threads} thread(s); median of {a.rounds} alternating "
          f"children per row, {a.steps} timed steps each after {a.warmup}; tuned = "
          + " ".join(f"{k}={v}" for k, v in MALLOC_VARS.items()) + "\n")
    print("| model (batch, size) | malloc | s / step (wall) | ratio | CPU s / step | ratio | kernel s / step | "
          "page faults / step | ratio | peak RSS (MiB) | ratio | same parameters |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for model in a.models:
        runs: dict = {False: [], True: []}
        for _ in range(a.rounds):
            for tuned in (False, True):
                runs[tuned].append(measure(model, tuned, a.steps, a.warmup, a.threads, a.batch, a.size))
        med = {t: {k: statistics.median(r[k] for r in rs) for k in ("wall", "cpu", "sys", "minflt", "rss_mib")}
               for t, rs in runs.items()}
        same = len({r["digest"] for rs in runs.values() for r in rs}) == 1
        b, batch, size = med[False], a.batch or MODELS[model][0], a.size or MODELS[model][1]
        for tuned in (False, True):
            m = med[tuned]
            print(f"| {model + f' ({batch}, {size}²)' if not tuned else ''} | {'tuned' if tuned else 'default'} | "
                  f"{m['wall']:.2f} | {m['wall'] / b['wall']:.2f}× | {m['cpu']:.2f} | {m['cpu'] / b['cpu']:.2f}× | "
                  f"{m['sys']:.2f} | {m['minflt']:,.0f} | {m['minflt'] / b['minflt']:.3f}× | {m['rss_mib']:.0f} | "
                  f"{m['rss_mib'] / b['rss_mib']:.2f}× | {('yes' if same else 'NO') if tuned else ''} |", flush=True)


if __name__ == "__main__":
    main()
