"""Life cycle through the stock ``yolo`` CLI, each step in a fresh process with cwd outside the repository:
prepare a small SIRST subset → ``yolo train model=yolov8n-gauss.yaml`` → ``yolo val`` / ``yolo predict`` on
best.pt → ``yolo export format=onnx`` (standard ops, onnxruntime == PyTorch) → ``ULTRALYTICS_SAFE_LOAD=1``.

Offline: YOLO_OFFLINE / YOLO_AUTOINSTALL=false / a temp YOLO_CONFIG_DIR with stand-in fonts
(:func:`gaussconv_plugin.yolo.offline.offline_env`); ``plots`` stays at its default (True): plotting needs no
download once the fonts are in place. An audit hook in every CLI process records any DNS look-up or connection,
and the tests assert there was none; the hook also records that it was installed in each process, and a positive
control shows that the same hook does log a network attempt. Export uses ``simplify=False`` because ``onnxslim``
is not part of the pinned environment (with YOLO_AUTOINSTALL=false Ultralytics would otherwise fail to import it).
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

for _k, _v in {"YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "MPLBACKEND": "Agg", "HF_HUB_OFFLINE": "1"}.items():
    os.environ.setdefault(_k, _v)
os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="gaussconv_yolo_cfg_"))

# stand-in fonts where check_font looks (<YOLO_CONFIG_DIR>/Ultralytics/): no HEAD request to GitHub
from gaussconv_plugin.yolo.offline import ensure_fonts  # noqa: E402

ensure_fonts(os.environ["YOLO_CONFIG_DIR"])

pytest.importorskip("ultralytics", reason="ultralytics not installed: make setup")

from gaussconv_plugin.data.sirst import sirst_root  # noqa: E402
from gaussconv_plugin.data.yolo_format import prepare_yolo  # noqa: E402
from gaussconv_plugin.yolo.offline import offline_env  # noqa: E402

YOLO = Path(sys.executable).with_name("yolo")
IMGSZ = 160
LIMIT = 16  # images per split

# sitecustomize put on PYTHONPATH of every CLI process: an audit hook that logs any network attempt (DNS look-up,
# connect, urllib request) to $GC_NET_AUDIT, so the tests can assert that nothing reached for the network, and the
# pid and command of every process it was installed in to $GC_NET_AUDIT.installed (proof that it ran).
_NET_AUDIT = """\
import os, sys
_log = os.environ.get("GC_NET_AUDIT")
if _log:
    with open(_log + ".installed", "a") as f:
        f.write(f"{os.getpid()} {' '.join(sys.argv)[:200]}\\n")
    def _hook(event, args, _log=_log):
        if event in ("socket.getaddrinfo", "socket.gethostbyname", "socket.connect", "urllib.Request",
                     "http.client.connect"):
            with open(_log, "a") as f:
                f.write(f"{os.getpid()} {event} {args!r:.200}\\n")
    sys.addaudithook(_hook)
"""


#: the ``yolo`` sub-commands this module's tests ran so far (each must have installed the network audit hook)
_RAN: list[str] = []


def _yolo(args: list[str], cwd: Path, env: dict, timeout: int = 300) -> str:
    _RAN.append(args[0])
    p = subprocess.run([str(YOLO), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    out = p.stdout + p.stderr
    assert p.returncode == 0, f"yolo {' '.join(args)} failed ({p.returncode}):\n{out[-4000:]}"
    return out


def _metrics(out: str) -> list[float]:
    """P, R, mAP50, mAP50-95 of the 'all' row of a validation table."""
    rows = [ln for ln in out.splitlines() if re.match(r"^\s+all\s+\d+\s+\d+", ln)]
    assert rows, f"no metrics row in:\n{out[-2000:]}"
    return [float(x) for x in rows[-1].split()[3:7]]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Train once (1 epoch) through the CLI; yields the paths and environment used."""
    if not YOLO.is_file():
        pytest.fail(f"{YOLO} missing: the ultralytics console script is not installed (make setup)")
    base = tmp_path_factory.mktemp("yolo_cli")
    data = prepare_yolo(sirst_root(), base / "sirst_yolo", limit=LIMIT)
    env = offline_env(base / "cfg")
    (base / "audit").mkdir()
    (base / "audit" / "sitecustomize.py").write_text(_NET_AUDIT)
    env["PYTHONPATH"] = str(base / "audit")  # nothing from the checkout: the package comes from site-packages
    env["GC_NET_AUDIT"] = str(base / "net_audit.log")
    work = base / "work"
    work.mkdir()
    out = _yolo(["train", "model=yolov8n-gauss.yaml", f"data={data}", "epochs=1", f"imgsz={IMGSZ}", "batch=8",
                 "device=cpu", "workers=2", f"project={base / 'runs'}", "name=train", "exist_ok=True",
                 "seed=0", "deterministic=True"], work, env)
    best = base / "runs" / "train" / "weights" / "best.pt"
    yield {"base": base, "data": data, "env": env, "work": work, "best": best, "train_out": out}
    log = base / "net_audit.log"
    assert not log.exists(), f"a yolo command reached for the network:\n{log.read_text()[:2000]}"


def test_train_builds_gaussian_model_and_writes_checkpoint(run):
    out = run["train_out"]
    assert "gaussconv_plugin.GaussianShapedConv" in out  # per-layer table, layers 0 and 1
    assert re.search(r"YOLOv8n-gauss summary: \d+ layers, 3,011,139 parameters", out), out[-3000:]
    assert "summary (fused)" in out  # final validation of best.pt runs the fused model
    assert run["best"].is_file() and (run["best"].parent / "last.pt").is_file()
    assert not list(run["work"].iterdir()), "train must write into project=, not the cwd"


def test_val_and_predict_in_fresh_processes(run):
    out = _yolo(["val", f"model={run['best']}", f"data={run['data']}", f"imgsz={IMGSZ}", "device=cpu",
                 f"project={run['base'] / 'runs'}", "name=val", "exist_ok=True"], run["work"], run["env"])
    m = _metrics(out)
    assert len(m) == 4 and all(0.0 <= v <= 1.0 for v in m)
    # the 'all' row counts the val split's images and exactly the targets of its label files
    n_targets = sum(len(f.read_text().split("\n")) - 1 for f in (run["data"].parent / "labels" / "val").glob("*.txt"))
    assert n_targets > 0 and re.search(rf"\ball\s+{LIMIT}\s+{n_targets}\s", out), (n_targets, out[-1500:])
    out = _yolo(["predict", f"model={run['best']}", f"source={run['data'].parent / 'images' / 'val'}",
                 f"imgsz={IMGSZ}", "device=cpu", "conf=0.0001", "save_txt=True", "save_conf=True",
                 f"project={run['base'] / 'runs'}", "name=predict", "exist_ok=True"], run["work"], run["env"])
    pred_dir = run["base"] / "runs" / "predict"
    assert len(list(pred_dir.glob("*.png")) + list(pred_dir.glob("*.jpg"))) == LIMIT
    labels = sorted((pred_dir / "labels").glob("*.txt"))  # written only for images with a detection
    assert labels, f"no label file under {pred_dir / 'labels'} at conf=0.0001"
    for f in labels:  # class cx cy w h conf, normalised
        a = np.loadtxt(f, ndmin=2)
        assert a.shape[1] == 6 and (a[:, 0] == 0).all() and (a[:, 1:5] >= -1e-6).all() and (a[:, 1:5] <= 1 + 1e-6).all()


def test_safe_load(run):
    """ULTRALYTICS_SAFE_LOAD=1 (torch weights_only + allow-list) loads the checkpoint: the adapter allow-lists
    GaussianShapedConv/GaussianShapedConv2d."""
    env = dict(run["env"], ULTRALYTICS_SAFE_LOAD="1")
    out = _yolo(["val", f"model={run['best']}", f"data={run['data']}", f"imgsz={IMGSZ}", "device=cpu",
                 f"project={run['base'] / 'runs'}", "name=val_safe", "exist_ok=True"], run["work"], env)
    assert len(_metrics(out)) == 4
    code = (
        "import torch, ultralytics.nn.tasks as t, sys\n"
        "from ultralytics.utils import SAFE_LOAD\n"
        f"ck, _ = t.torch_safe_load({str(run['best'])!r})\n"
        "assert SAFE_LOAD and t._SafeLoad.SUPPORTED\n"
        "print(type((ck.get('ema') or ck['model']).model[0]).__name__)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=run["work"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.strip().splitlines()[-1] == "GaussianShapedConv"


def test_export_onnx_standard_ops_and_matches_pytorch(run):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    _yolo(["export", f"model={run['best']}", "format=onnx", f"imgsz={IMGSZ}", "device=cpu", "simplify=False"],
          run["work"], run["env"])
    f = run["best"].with_suffix(".onnx")
    g = onnx.load(str(f))
    onnx.checker.check_model(g)
    ops = {(n.domain, n.op_type) for n in g.graph.node}
    assert all(d in ("", "ai.onnx") for d, _ in ops), ops
    assert all(onnx.defs.has(op) for _, op in ops), ops
    n_conv = sum(n.op_type == "Conv" for n in g.graph.node)

    import torch
    from ultralytics import YOLO as UL

    model = UL(str(run["best"])).model.float().eval()
    n_layers = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())
    assert n_conv == n_layers  # the Gaussian layers became plain convs; nothing else (σ, θ ops) in the graph
    x = torch.rand(1, 3, IMGSZ, IMGSZ, generator=torch.Generator().manual_seed(0))
    sess = ort.InferenceSession(str(f), providers=["CPUExecutionProvider"])
    got = sess.run(None, {sess.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        ref = model(x)
    ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).numpy()
    assert got.shape == ref.shape
    np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4 * float(np.abs(ref).max()))


def test_the_audit_hook_logs_a_network_attempt(run):
    """Positive control: a process started with the same environment (same sitecustomize, same $GC_NET_AUDIT
    mechanism) that *does* reach for the network (DNS look-up, connect, urllib) gets each attempt logged."""
    control = run["base"] / "control_audit.log"
    env = dict(run["env"], GC_NET_AUDIT=str(control))
    code = (
        "import socket, urllib.request\n"
        "socket.getaddrinfo('localhost', 9)\n"
        "s = socket.socket(); s.settimeout(2); s.connect_ex(('127.0.0.1', 9)); s.close()\n"
        "try:\n    urllib.request.urlopen('http://127.0.0.1:9/', timeout=2)\nexcept OSError:\n    pass\n"
    )
    p = subprocess.run([sys.executable, "-c", code], cwd=run["work"], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr[-2000:]
    logged = control.read_text()
    for event in ("socket.getaddrinfo", "socket.connect", "urllib.Request"):
        assert event in logged, f"{event} not logged by the audit hook:\n{logged}"
    assert not (run["base"] / "net_audit.log").exists()  # the control wrote only its own log


def test_nothing_reached_for_the_network(run):
    """The audit hook was installed in every yolo CLI process run so far (in the whole module: train, val, predict,
    safe-load val, export; alone or in another order: those that ran) and logged no DNS/connect/urllib event."""
    installed = (run["base"] / "net_audit.log.installed").read_text().splitlines()
    argvs = [ln.split()[1:3] for ln in installed]  # [argv[0], argv[1]] of each process
    assert "train" in _RAN  # the fixture's
    for cmd in sorted(set(_RAN)):
        assert any(len(a) == 2 and Path(a[0]).name == "yolo" and a[1] == cmd for a in argvs), \
            f"no `yolo {cmd}` process installed the audit hook: {installed}"
    log = run["base"] / "net_audit.log"
    assert not log.exists(), log.read_text()[:2000]
