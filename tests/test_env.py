"""The environment built by tools/setup_env.sh really works (nothing mocked).

- every pinned package imports at the version pinned in requirements/constraints.txt
- mmcv's compiled ops agree with torchvision's
- mmdet builds RetinaNet from its packaged config and runs loss + predict on the CPU
- pyirstdmetrics (installed --no-deps despite its numpy<2 pin) computes correct values on numpy 2.x
- ultralytics stays offline with the Makefile's switches
"""

from __future__ import annotations

import importlib.metadata as md
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
CONSTRAINTS = REPO / "requirements" / "constraints.txt"


def _pins() -> dict[str, str]:
    return dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", CONSTRAINTS.read_text(), re.M))


def test_project_imports():
    import gaussconv_plugin  # noqa: F401


@pytest.mark.parametrize(
    "dist, module",
    [
        ("torch", "torch"),
        ("torchvision", "torchvision"),
        ("ultralytics", "ultralytics"),
        ("mmengine", "mmengine"),
        ("mmcv", "mmcv"),
        ("mmdet", "mmdet"),
        ("numpy", "numpy"),
        ("onnx", "onnx"),
        ("onnxruntime", "onnxruntime"),
        ("opencv-python", "cv2"),
        ("pyirstdmetrics", "py_irstd_metrics"),
    ],
)
def test_pinned_versions(dist, module):
    mod = __import__(module)
    want = _pins()[dist]
    have = md.version(dist)
    assert have.split("+")[0] == want, f"{dist}: installed {have}, pinned {want}"
    version = getattr(mod, "__version__", None)
    if version is not None:  # the module agrees with its distribution metadata
        # (opencv's cv2.__version__ is 4.14.0 for the wheel 4.14.0.94)
        v = str(version).split("+")[0]
        assert want == v or want.startswith(v + "."), f"{module}.__version__ {version}, pinned {want}"


def test_setuptools_has_pkg_resources():
    # mmcv's setup.py imports pkg_resources, removed in setuptools 81.
    assert int(md.version("setuptools").split(".")[0]) < 81


def test_mmcv_nms_matches_torchvision():
    import mmcv.ops
    import torchvision

    g = torch.Generator().manual_seed(0)
    xy = torch.rand(200, 2, generator=g) * 100
    wh = torch.rand(200, 2, generator=g) * 30 + 1
    boxes = torch.cat([xy, xy + wh], dim=1).float()
    scores = torch.rand(200, generator=g)
    for iou in (0.3, 0.5, 0.7):
        _, keep_mmcv = mmcv.ops.nms(boxes, scores, iou)
        keep_tv = torchvision.ops.nms(boxes, scores, iou)
        assert 0 < len(keep_tv) < len(boxes)
        assert keep_mmcv.tolist() == keep_tv.tolist()


def test_mmdet_retinanet_forward_cpu():
    import mmdet
    from mmdet.registry import MODELS
    from mmdet.structures import DetDataSample
    from mmdet.utils import register_all_modules
    from mmengine.config import Config
    from mmengine.structures import InstanceData

    register_all_modules()
    cfg_file = Path(mmdet.__file__).parent / ".mim" / "configs" / "retinanet" / "retinanet_r50_fpn_1x_coco.py"
    cfg = Config.fromfile(str(cfg_file))
    cfg.model.backbone.init_cfg = None  # no pretrained download
    model = MODELS.build(cfg.model)
    model.init_weights()

    torch.manual_seed(0)
    h, w = 96, 128
    img = torch.randint(0, 256, (3, h, w), dtype=torch.uint8)
    sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), scale_factor=(1.0, 1.0), pad_shape=(h, w)))
    sample.gt_instances = InstanceData(
        bboxes=torch.tensor([[10.0, 12.0, 50.0, 60.0], [70.0, 20.0, 120.0, 90.0]]),
        labels=torch.tensor([1, 7]),
    )

    model.train()
    data = model.data_preprocessor({"inputs": [img], "data_samples": [sample]}, training=True)
    losses = model(**data, mode="loss")
    assert {"loss_cls", "loss_bbox"} <= set(losses)
    total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v) for v in losses.values())
    assert torch.isfinite(total)
    total.backward()

    model.eval()
    with torch.no_grad():
        data = model.data_preprocessor({"inputs": [img], "data_samples": [sample]}, training=False)
        feats = model(data["inputs"], mode="tensor")
        cls_scores, bbox_preds = feats
        assert len(cls_scores) == len(bbox_preds) == 5  # P3-P7
        assert cls_scores[0].shape[1] == 9 * 80  # anchors x classes
        (pred,) = model(**data, mode="predict")  # uses mmcv.ops.batched_nms
    inst = pred.pred_instances
    assert inst.bboxes.shape[1] == 4 and len(inst.bboxes) == len(inst.scores) == len(inst.labels)


def _mask_pair():
    """16x16 ground truth with a 3x3 and a 2x2 target; prediction hits the first
    (plus one extra column), misses the second and adds a one-pixel false alarm."""
    gt = np.zeros((16, 16), dtype=bool)
    gt[2:5, 2:5] = True  # target A, 9 px, centroid (3, 3)
    gt[10:12, 10:12] = True  # target B, 4 px, centroid (10.5, 10.5)
    prob = np.full((16, 16), 0.2)  # below the 0.5 threshold everywhere...
    prob[2:5, 2:6] = 0.9  # ...but A and one column beside it: 12 px, centroid (3, 3.5)
    prob[13, 2] = 0.8  # false alarm, 1 px
    return prob, gt


def test_pyirstdmetrics_on_numpy2():
    assert int(np.__version__.split(".")[0]) >= 2
    from py_irstd_metrics import CMMetrics, IoUHandler, ProbabilityDetectionAndFalseAlarmRate

    prob, gt = _mask_pair()
    # By hand: TP = 9, FP = 3 (extra column) + 1 (false alarm) = 4, FN = 4 (target B)
    tp, fp, fn = 9, 4, 4
    cm = CMMetrics(threshold=0.5, metric_handlers={"iou": IoUHandler(with_dynamic=False, with_binary=True)})
    cm.update(prob, gt)
    assert cm.get()["iou"]["binary"] == pytest.approx(tp / (tp + fp + fn))  # 9/17

    # Target level: A is matched (centroid distance 0.5 < 3), B is missed, the false-alarm
    # blob (1 px) is unmatched: Pd = 1/2, Fa = 1 px / 256 px.
    pdfa = ProbabilityDetectionAndFalseAlarmRate(num_bins=1, distance_threshold=3)
    pdfa.update(prob, gt)
    res = pdfa.get()
    assert float(res["probability_detection"][0]) == pytest.approx(0.5)
    assert float(res["false_alarm"][0]) == pytest.approx(1 / 256)


def test_ultralytics_offline_switches(tmp_path):
    """With the Makefile's env, ultralytics reports offline and finds its font locally."""
    env = dict(os.environ)
    env.update(YOLO_OFFLINE="1", YOLO_AUTOINSTALL="false", YOLO_CONFIG_DIR=str(REPO / ".venv" / "ultralytics"))
    code = (
        "from ultralytics.utils import ONLINE, AUTOINSTALL, USER_CONFIG_DIR\n"
        "from ultralytics.utils.checks import check_font\n"
        "print(ONLINE, AUTOINSTALL, USER_CONFIG_DIR, check_font('Arial.ttf'))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    online, autoinstall, cfg_dir, font = out.stdout.split()[-4:]
    assert (online, autoinstall) == ("False", "False")
    assert Path(cfg_dir) == REPO / ".venv" / "ultralytics" / "Ultralytics"
    assert Path(font).parent == Path(cfg_dir)  # the stand-in font written by setup_env.sh, no download
