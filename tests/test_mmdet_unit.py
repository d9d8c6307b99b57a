"""MMDetection adapter without the Runner: registrations, DiffScaleIoULoss, GaussResNet, the four RetinaNet configs,
and a contract test on the MMDet/MMCV/MMEngine internals the adapter relies on (it fails loudly if they change)."""
from __future__ import annotations

import inspect
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

import gaussconv_plugin.mmdet as gmm
from gaussconv_plugin import GaussianShapedConv2d
from gaussconv_plugin.masks import sigma_to_raw
from gaussconv_plugin.mmdet.detection import DiffScaleIoULoss, GaussResNet, diff_scale_iou_loss

import mmcv
import mmdet
import mmengine
from mmcv.cnn import build_conv_layer
from mmdet.models.backbones import ResNet
from mmdet.models.losses import GIoULoss, IoULoss
from mmdet.registry import MODELS as DET_MODELS
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import DefaultScope

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "mmdet_cfgs"
PAIRS = [
    ("retinanet_r18_fpn_sirst320_cpu.py", "retinanet_r18_fpn_sirst320_cpu_gauss.py"),
    ("retinanet_r50_fpn_sirst640_amp.py", "retinanet_r50_fpn_sirst640_amp_gauss.py"),
]


@pytest.fixture(autouse=True)
def _mmdet_scope():
    """Default scope 'mmdet' for each test, restored afterwards (other test files may use other scopes)."""
    with DefaultScope.overwrite_default_scope("mmdet"):
        yield


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------- registration
def test_registrations_resolve_from_every_scope():
    assert ROOT_MODELS.get("GaussianShapedConv2d") is GaussianShapedConv2d
    assert DET_MODELS.get("GaussResNet") is GaussResNet
    assert DET_MODELS.get("DiffScaleIoULoss") is DiffScaleIoULoss
    for scope in ("mmdet", "mmengine", None):  # MMCV's build_conv_layer looks in the scope, then the root
        with DefaultScope.overwrite_default_scope(scope):
            conv = build_conv_layer(dict(type="GaussianShapedConv2d", sigma_init=1.0), 3, 8, 3, padding=1)
        assert type(conv) is GaussianShapedConv2d and conv.padding == (1, 1)
        torch.testing.assert_close(conv.sigma, torch.ones(8))
    built = DET_MODELS.build(dict(type="DiffScaleIoULoss", mode="var", loss_weight=2.0))
    assert isinstance(built, DiffScaleIoULoss) and built.mode == "var" and built.loss_weight == 2.0


def test_register_is_reimport_safe_and_refuses_to_shadow():
    from gaussconv_plugin.mmdet.registry import register_once

    assert register_once(ROOT_MODELS)(GaussianShapedConv2d) is GaussianShapedConv2d  # same object: no-op
    assert ROOT_MODELS.get("GaussianShapedConv2d") is GaussianShapedConv2d
    with pytest.raises(KeyError, match="already registered.*gaussconv_plugin.conv.*remove the other plugin"):
        register_once(ROOT_MODELS, "GaussianShapedConv2d")(nn.Conv2d)
    assert ROOT_MODELS.get("GaussianShapedConv2d") is GaussianShapedConv2d  # not shadowed


def test_every_registration_of_the_package_uses_register_once():
    """One registration style in gaussconv_plugin/mmdet: no bare register_module() outside registry.py."""
    import ast
    from pathlib import Path

    folder = Path(gmm.__file__).parent
    bare = []
    for f in sorted(folder.glob("*.py")):
        if f.name == "registry.py":
            continue
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("register_module", "_register_module"):
                bare.append(f"{f.name}:{node.lineno}")
    assert bare == []
    uses = sum(f.read_text().count("register_once(") for f in folder.glob("*.py") if f.name != "registry.py")
    assert uses >= 8  # conv, dataset, collate, segmentor, metric, hook, GaussResNet, DiffScaleIoULoss


def test_mmdet_internals_contract():
    """Everything the adapter assumes about MMDet 3.x / MMCV 2.x / MMEngine 0.10; a failure here means the host
    changed and gaussconv_plugin/mmdet/ must be revisited."""
    assert mmdet.__version__.startswith("3."), mmdet.__version__
    assert mmcv.__version__.startswith("2."), mmcv.__version__
    assert mmengine.__version__.startswith("0.10."), mmengine.__version__
    # MMCV 2.x: conv layers live in MMEngine's root MODELS and build_conv_layer searches scope -> root
    src = inspect.getsource(build_conv_layer)
    assert "switch_scope_and_registry(None)" in src and "conv_layer(*args, **kwargs, **cfg_)" in src
    assert ROOT_MODELS.get("Conv2d") is nn.Conv2d
    # ResNet: stem / stage names, the stage list, _freeze_stages, and conv_cfg-built plain convs
    r = ResNet(depth=18)
    assert r.res_layers == ["layer1", "layer2", "layer3", "layer4"]
    assert type(r.conv1) is nn.Conv2d and r.conv1.kernel_size == (7, 7)
    assert callable(r._freeze_stages) and hasattr(r, "deep_stem") and hasattr(r, "num_stages")
    # MMEngine init matches base-class names (so Kaiming init reaches GaussianShapedConv2d)
    from mmengine.model.weight_init import _get_bases_name

    assert "Conv2d" in _get_bases_name(GaussianShapedConv2d(3, 4, 3))
    # AnchorHead with reg_decoded_bbox decodes the predictions and passes raw gt boxes as targets
    src = inspect.getsource(mmdet.models.dense_heads.AnchorHead.loss_by_feat_single)
    assert "self.bbox_coder.decode(anchors, bbox_pred)" in src and "self.loss_bbox(" in src
    # MMEngine loads checkpoints with a bare torch.load (hence allow_mmengine_checkpoints)
    from mmengine.runner import checkpoint as ckpt

    assert "torch.load(filename, map_location=map_location)" in inspect.getsource(ckpt.load_from_local)
    # ... through CheckpointLoader.load_checkpoint, a classmethod (wrapped by .checkpoints for the getattr scope)
    assert isinstance(ckpt.CheckpointLoader.__dict__["load_checkpoint"], classmethod)
    assert "checkpoint_loader(filename, map_location)" in inspect.getsource(ckpt.CheckpointLoader.load_checkpoint)
    # ... and the DDP wrapper gets device_ids=[LOCAL_RANK] (hence the CPU branch of runner.setup_launcher)
    from mmengine.runner import Runner

    assert "device_ids=[int(os.environ['LOCAL_RANK'])]" in inspect.getsource(Runner.wrap_model)


def test_reg_decoded_bbox_passes_boxes_to_the_loss():
    """Functional half of the contract: RetinaHead hands DiffScaleIoULoss decoded pixel boxes and raw gt boxes."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    head = DET_MODELS.build(dict(
        type="RetinaHead", num_classes=1, in_channels=8, feat_channels=8, stacked_convs=1,
        anchor_generator=dict(type="AnchorGenerator", octave_base_scale=2, scales_per_octave=1, ratios=[1.0],
                              strides=[4, 8]),
        bbox_coder=dict(type="DeltaXYWHBBoxCoder", target_means=[0.0] * 4, target_stds=[1.0] * 4),
        reg_decoded_bbox=True,
        loss_cls=dict(type="FocalLoss", use_sigmoid=True, gamma=2.0, alpha=0.25, loss_weight=1.0),
        loss_bbox=dict(type="DiffScaleIoULoss", mode="diff"),
        train_cfg=dict(assigner=dict(type="MaxIoUAssigner", pos_iou_thr=0.5, neg_iou_thr=0.4, min_pos_iou=0,
                                     ignore_iof_thr=-1),
                       sampler=dict(type="PseudoSampler"), allowed_border=-1, pos_weight=-1, debug=False)))
    seen = []
    orig = head.loss_bbox.forward

    def spy(pred, target, weight=None, **kw):
        seen.append((pred.detach(), target.detach(), weight))
        return orig(pred, target, weight, **kw)

    head.loss_bbox.forward = spy
    gt = torch.tensor([[10.0, 12.0, 16.0, 17.0], [40.0, 30.0, 44.0, 33.0]])
    sample = DetDataSample(metainfo=dict(img_shape=(64, 64), pad_shape=(64, 64), batch_input_shape=(64, 64)))
    sample.gt_instances = InstanceData(bboxes=gt, labels=torch.zeros(2, dtype=torch.long))
    feats = (torch.randn(1, 8, 16, 16), torch.randn(1, 8, 8, 8))
    losses = head.loss(feats, [sample])
    assert all(torch.isfinite(torch.stack(v)).all() for v in losses.values())
    targets = torch.cat([t for _, t, _ in seen])
    weights = torch.cat([w for _, _, w in seen])
    pos = weights[:, 0] > 0
    assert pos.any()
    # positives regress to the raw gt boxes (not encoded deltas)
    assert all(any(torch.equal(t, g) for g in gt) for t in targets[pos])
    preds = torch.cat([p for p, _, _ in seen])
    assert (preds[:, 2] >= preds[:, 0]).all() and (preds[:, 3] >= preds[:, 1]).all()  # decoded xyxy


# ------------------------------------------------------------------------------------------------ loss
def _rand_boxes(n, g):
    xy = torch.rand(n, 2, generator=g) * 50
    wh = torch.rand(n, 2, generator=g) * 20 + 0.5
    return torch.cat([xy, xy + wh], 1)


@pytest.mark.parametrize("iou_mode, host", [("giou", GIoULoss()), ("iou", IoULoss(mode="linear"))])
def test_mode_none_equals_mmdet_loss(iou_mode, host):
    g = torch.Generator().manual_seed(0)
    pred, target = _rand_boxes(64, g), _rand_boxes(64, g)
    target[:20] = pred[:20] + torch.randn(20, 4, generator=g)  # some overlapping pairs
    target = torch.cat([torch.minimum(target[:, :2], target[:, 2:]), torch.maximum(target[:, :2], target[:, 2:])], 1)
    weight = (torch.rand(64, 4, generator=g) > 0.3).float()
    ours = DiffScaleIoULoss(mode="none", iou_mode=iou_mode, loss_weight=2.0)
    host.loss_weight = 2.0
    for kw in (dict(), dict(weight=weight), dict(weight=weight, avg_factor=17.0),
               dict(weight=weight[:, 0], reduction_override="sum"), dict(reduction_override="none")):
        torch.testing.assert_close(ours(pred, target, **kw), host(pred, target, **kw), rtol=1e-5, atol=1e-6)


def test_diff_loss_hand_values():
    t = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
    p = torch.tensor([[0.0, 0.0, 20.0, 10.0],   # twice the area: IoU 1/2, alpha = 1 - 100/300
                      [20.0, 0.0, 30.0, 10.0],  # same size, disjoint: IoU 0, alpha 1, GIoU penalty 1/3
                      [2.0, 3.0, 12.0, 13.0]])  # same size, shifted: alpha 1
    inter = 8.0 * 7.0
    u, c = 200.0 - inter, 12.0 * 13.0
    for form in ("mul", "add"):
        giou = diff_scale_iou_loss(p, t, "diff", "giou", form=form)
        iou = diff_scale_iou_loss(p, t, "diff", "iou", form=form)
        # row 0: mul 1 - alpha*IoU (GIoU penalty 0: the target is inside), add 1 - IoU + (1 - alpha)
        row0 = 1 - (2 / 3) * 0.5 if form == "mul" else 1 - 0.5 + 1 / 3
        torch.testing.assert_close(giou[:2], torch.tensor([row0, 1 + 1 / 3]))
        torch.testing.assert_close(iou[:2], torch.tensor([row0, 1.0]))
        torch.testing.assert_close(giou[2], torch.tensor(1 - inter / u + (c - u) / c))
        # alpha only makes a wrong size worse: diff >= none everywhere, equal iff the areas match
        none = diff_scale_iou_loss(p, t, "none", "giou", form=form)
        assert giou[0] > none[0] and torch.allclose(giou[1:], none[1:])
    # over-size coefficient
    half = diff_scale_iou_loss(p[:1], t[:1], "diff", "iou", lambda_over=0.5, form="mul")
    torch.testing.assert_close(half, torch.tensor([1 - (1 - 0.5 / 3) * 0.5]))
    half = diff_scale_iou_loss(p[:1], t[:1], "diff", "iou", lambda_over=0.5)  # add: 1 - IoU + λ+·|D|/(P+T)
    torch.testing.assert_close(half, torch.tensor([0.5 + 0.5 / 3]))


@pytest.mark.parametrize("mode", ["diff", "var", "ratio", "sqrt", "none"])
def test_loss_finite_on_empty_targets_and_half_precision(mode):
    g = torch.Generator().manual_seed(1)
    pred = _rand_boxes(32, g).requires_grad_(True)
    target = torch.zeros(32, 4)  # negative anchors: all-zero targets, weight 0
    target[:4] = _rand_boxes(4, g)
    pred_deg = pred.detach().clone()
    pred_deg[8:12] = 0.0  # degenerate predictions too
    weight = torch.zeros(32, 4)
    weight[:4] = 1.0
    loss_fn = DiffScaleIoULoss(mode=mode)
    loss = loss_fn(pred, target, weight, avg_factor=4)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(pred.grad).all() and pred.grad[4:].abs().sum() == 0
    assert torch.isfinite(loss_fn(pred_deg, target, reduction_override="none")).all()
    half = loss_fn(pred.detach().half(), target.half(), weight.half(), avg_factor=4)
    assert half.dtype == torch.float32 and torch.isclose(half, loss.detach(), rtol=1e-2)


def test_gradient_flows_through_alpha():
    """alpha is not detached: near the target size, diff pushes a too-large box back harder than plain IoU."""
    t = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    p = torch.tensor([[0.0, 0.0, 11.0, 10.0]], requires_grad=True)  # contains the target: IoU = T/P
    diff_scale_iou_loss(p, t, "diff", "iou", form="mul").sum().backward()
    g_diff = p.grad[0, 2].item()
    p.grad = None
    diff_scale_iou_loss(p, t, "diff", "iou").sum().backward()  # form='add'
    g_add = p.grad[0, 2].item()
    p.grad = None
    diff_scale_iou_loss(p, t, "none", "iou").sum().backward()
    g_none = p.grad[0, 2].item()
    # d/dP of 1 - T/P and of 1 - 2T^2/(P(P+T)) at P = 110, T = 100, times dP/dx2 = 10
    assert g_none == pytest.approx(10 * 100 / 110**2, rel=1e-5)
    assert g_diff == pytest.approx(10 * 2 * 100**2 * (2 * 110 + 100) / (110**2 * 210**2), rel=1e-5)
    assert g_diff > g_none > 0
    # add: 1 - T/P + (P - T)/(P + T), so d/dP = T/P^2 + 2T/(P + T)^2
    assert g_add == pytest.approx(10 * (100 / 110**2 + 200 / 210**2), rel=1e-5)
    assert g_add > g_none


def test_zero_weight_returns_graph_zero():
    pred = torch.rand(5, 4, requires_grad=True)
    out = DiffScaleIoULoss()(pred, torch.rand(5, 4), torch.zeros(5, 4))
    assert out.item() == 0.0 and out.requires_grad


def test_loss_errors_name_the_fix():
    with pytest.raises(ValueError, match=r"^unknown scale-loss mode 'dif'; use one of diff, var, ratio, sqrt, none$"):
        DiffScaleIoULoss(mode="dif")
    with pytest.raises(ValueError, match=r"unknown iou_mode 'ciou'; use one of iou, giou"):
        DiffScaleIoULoss(iou_mode="ciou")
    with pytest.raises(ValueError, match="lambda_over must lie in"):
        DiffScaleIoULoss(lambda_over=2.0)
    with pytest.raises(ValueError, match="reg_decoded_bbox=True"):
        DiffScaleIoULoss()(torch.rand(3, 5), torch.rand(3, 5))
    # through the registry (what a config does), the message survives MMEngine's re-raise, on one line
    with pytest.raises(ValueError) as e:
        DET_MODELS.build(dict(type="DiffScaleIoULoss", mode="dif"))
    msg = str(e.value)
    assert "\n" not in msg and "unknown scale-loss mode 'dif'; use one of diff, var, ratio, sqrt, none" in msg


# -------------------------------------------------------------------------------------------- backbone
@pytest.mark.parametrize("kw, names", [
    (dict(depth=18), ["conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.1.conv1", "layer1.1.conv2"]),
    (dict(depth=50), ["conv1", "layer1.0.conv2", "layer1.1.conv2", "layer1.2.conv2"]),
    (dict(depth=18, deep_stem=True, gauss_stages=(False, True, False, False)),
     ["stem.0", "stem.3", "stem.6", "layer2.0.conv1", "layer2.0.conv2", "layer2.1.conv1", "layer2.1.conv2"]),
    (dict(depth=18, gauss_stem=False, gauss_stages=(False,) * 4), []),
])
def test_gauss_resnet_swaps_exactly_the_kxk_convs(kw, names):
    m = GaussResNet(**kw)
    assert m.gauss_conv_names == names
    for name, mod in m.named_modules():
        if isinstance(mod, nn.Conv2d):
            assert isinstance(mod, GaussianShapedConv2d) == (name in names), name
            if name in names:
                assert mod.kernel_size[0] > 1
    plain = ResNet(**{k: v for k, v in kw.items() if not k.startswith("gauss")})
    for name in names:  # same geometry as the conv it replaced
        a, b = plain.get_submodule(name), m.get_submodule(name)
        assert (a.in_channels, a.out_channels, a.kernel_size, a.stride, a.padding, a.dilation, a.bias is None) == \
               (b.in_channels, b.out_channels, b.kernel_size, b.stride, b.padding, b.dilation, b.bias is None)
    extra = sum(p.numel() for p in m.parameters()) - sum(p.numel() for p in plain.parameters())
    assert extra == sum(2 * m.get_submodule(n).out_channels for n in names)


def test_gauss_resnet_trains_inits_loads_and_freezes():
    torch.manual_seed(0)
    m = GaussResNet(depth=18)
    m.init_weights()  # mmengine Kaiming(fan_out, normal) reaches the Gaussian convs
    std = m.conv1.weight.std().item()
    assert abs(std - math.sqrt(2 / (64 * 49))) < 0.2 * math.sqrt(2 / (64 * 49))
    m = GaussResNet(depth=18)  # fresh (torch default init): zero_init_residual would zero the layer1 gradients
    m.train()
    outs = m(torch.randn(2, 3, 64, 64))
    assert [tuple(o.shape) for o in outs] == [(2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4), (2, 512, 2, 2)]
    sum(o.mean() for o in outs).backward()
    for n in m.gauss_conv_names:
        conv = m.get_submodule(n)
        assert conv.sigma_raw.grad is not None and conv.sigma_raw.grad.abs().sum() > 0, n
        assert conv.theta.grad is not None and conv.theta.grad.abs().sum() > 0, n
    # a plain ResNet checkpoint loads: only sigma/theta are missing
    missing, unexpected = m.load_state_dict(ResNet(depth=18).state_dict(), strict=False)
    assert not unexpected and sorted(missing) == sorted(
        f"{n}.{p}" for n in m.gauss_conv_names for p in ("sigma_raw", "theta"))
    frozen = GaussResNet(depth=18, frozen_stages=1)
    assert not frozen.conv1.sigma_raw.requires_grad and not frozen.layer1[0].conv1.theta.requires_grad
    assert frozen.layer2[0].conv1.weight.requires_grad
    torch.testing.assert_close(frozen.conv1.sigma_raw, sigma_to_raw(3.5).expand(64))  # default sigma = k/2
    # θ₀ = 0 as the published RetinaNet runs (the package default 'mid' only where named)
    assert float(frozen.conv1.theta.abs().max()) == 0.0 == float(frozen.layer1[0].conv2.theta.abs().max())
    mid = GaussResNet(depth=18, gauss_conv_cfg=dict(type="GaussianShapedConv2d", theta_init="mid"))
    assert float(mid.conv1.theta.min()) > 0.1 and float(mid.layer1[0].conv2.theta.min()) > 0.2


def test_gauss_resnet_errors_name_the_fix():
    with pytest.raises(ValueError, match="conv type 'GausianShapedConv2d' in gauss_conv_cfg is not registered; "
                                         "use type='GaussianShapedConv2d'"):
        GaussResNet(depth=18, gauss_conv_cfg=dict(type="GausianShapedConv2d"))
    with pytest.raises(ValueError, match="gauss_stages has 2 entries but num_stages=4"):
        GaussResNet(depth=18, gauss_stages=(True, False))
    with pytest.raises(TypeError, match="gauss_conv_cfg must be a dict with a 'type'"):
        GaussResNet(depth=18, gauss_conv_cfg="GaussianShapedConv2d")


def test_check_conv_cfgs_names_the_bad_path():
    cfg = Config(dict(default_scope="mmdet", model=dict(type="RetinaNet", backbone=dict(
        type="ResNet", depth=18, conv_cfg=dict(type="GaussianShapedConv2d")),
        neck=dict(type="FPN", conv_cfg=dict(type="Conv2d"), plugins=[dict(conv_cfg=dict(type="Nope"))]))))
    with pytest.raises(ValueError, match=r"^model\.neck\.plugins\.0\.conv_cfg: conv type 'Nope' is not registered; "
                                         r"use 'GaussianShapedConv2d'"):
        gmm.check_conv_cfgs(cfg)
    cfg.model.neck.plugins = []
    gmm.check_conv_cfgs(cfg)  # all known


# ----------------------------------------------------------------------------------------------- configs
@pytest.mark.parametrize("base, gauss", PAIRS)
def test_config_twins_differ_only_in_backbone_convs_and_alpha(base, gauss, config_diff):
    cb, cg = Config.fromfile(CFG / base), Config.fromfile(CFG / gauss)
    assert cb.custom_imports == dict(imports=["gaussconv_plugin.mmdet"], allow_failed_imports=False)
    fb, fg, diff = config_diff(cb, cg)
    assert diff == {
        "model.backbone.type", "model.backbone.gauss_conv_cfg.type", "model.backbone.gauss_stem",
        "model.backbone.gauss_stages", "model.bbox_head.loss_bbox.type", "model.bbox_head.loss_bbox.mode",
        "model.bbox_head.loss_bbox.iou_mode",
    }, diff
    assert (fb["model.backbone.type"], fg["model.backbone.type"]) == ("ResNet", "GaussResNet")
    assert fb["model.bbox_head.loss_bbox.type"] == "GIoULoss" and fg["model.bbox_head.loss_bbox.mode"] == "diff"
    assert fb["model.bbox_head.reg_decoded_bbox"] is True
    assert cb.model.backbone.init_cfg is None and cb.load_from is None  # offline
    assert cb.model.backbone.frozen_stages == -1  # the Gaussian stem/stage 1 must train
    assert cb.val_evaluator.type == "CocoMetric" and cb.val_evaluator.metric == "bbox"
    assert cb.model.bbox_head.num_classes == 1 and cb.train_dataloader.dataset.metainfo.classes == ("Target",)


@pytest.mark.parametrize("base, gauss", PAIRS)
def test_config_twins_build_with_parameter_budget(base, gauss):
    counts = []
    for name in (base, gauss):
        cfg = Config.fromfile(CFG / name)
        model = DET_MODELS.build(cfg.model)
        counts.append(sum(p.numel() for p in model.parameters()))
        if name == gauss:
            gs = [m for m in model.modules() if isinstance(m, GaussianShapedConv2d)]
            assert len(gs) == len(model.backbone.gauss_conv_names) > 0
            assert all(m.kernel_size[0] > 1 for m in gs)
            assert isinstance(model.bbox_head.loss_bbox, DiffScaleIoULoss)
    nb, ng = counts
    assert nb < ng <= nb * 1.001, (nb, ng, (ng - nb) / nb)


def test_pretrained_weights_are_one_cfg_option_away():
    """The recipe documented in the paper-scale configs really produces a Pretrained init_cfg."""
    cfg = Config.fromfile(CFG / "retinanet_r50_fpn_sirst640_amp_gauss.py")
    cfg.merge_from_dict({"model.backbone.init_cfg._delete_": True, "model.backbone.init_cfg.type": "Pretrained",
                         "model.backbone.init_cfg.checkpoint": "torchvision://resnet50"})
    assert cfg.model.backbone.init_cfg == dict(type="Pretrained", checkpoint="torchvision://resnet50")


class Evil:
    pass


class GetattrElsewhere:
    def __reduce__(self):
        return getattr, (np.ndarray, "tofile")


def test_checkpoint_allow_list_for_weights_only_load(tmp_path):
    """torch >= 2.6 loads with weights_only=True; MMEngine checkpoints (HistoryBuffer, numpy) still load, while
    arbitrary objects stay refused."""
    from mmengine.logging import HistoryBuffer
    from mmengine.runner.checkpoint import load_checkpoint

    hb = HistoryBuffer()
    hb.update(1.5)
    hb.update(np.float64(2.0))
    ckpt = dict(state_dict={"w": torch.ones(2)}, message_hub=dict(log_scalars={"loss": hb}, runtime_info=dict(
        iter=3, arr=np.arange(3), f=np.float32(0.5), i=np.int64(7), b=np.bool_(True))))
    torch.save(ckpt, tmp_path / "c.pth")
    m = nn.Module()
    m.w = nn.Parameter(torch.zeros(2))
    back = load_checkpoint(m, str(tmp_path / "c.pth"), map_location="cpu")
    assert back["message_hub"]["log_scalars"]["loss"].current() == 2.0
    assert back["message_hub"]["runtime_info"]["arr"].tolist() == [0, 1, 2]
    torch.testing.assert_close(m.w.data, torch.ones(2))

    torch.save({"x": Evil()}, tmp_path / "evil.pth")
    with pytest.raises(Exception, match="Unsupported global"):
        torch.load(tmp_path / "evil.pth")
    torch.save({"x": GetattrElsewhere()}, tmp_path / "evil2.pth")  # getattr on anything but HistoryBuffer
    with pytest.raises(Exception, match="Unsupported global: GLOBAL getattr"):  # getattr: only in MMEngine's
        torch.load(tmp_path / "evil2.pth")
    with pytest.raises(Exception, match="refused getattr"), gmm.checkpoints.mmengine_checkpoint_globals():
        torch.load(tmp_path / "evil2.pth")
    with pytest.raises(Exception, match="refused getattr"):  # MMEngine's loader: the same stand-in
        load_checkpoint(m, str(tmp_path / "evil2.pth"), map_location="cpu")


def test_ultralytics_safe_load_of_a_fused_checkpoint_beside_the_mmdet_package(tmp_path):
    """``ULTRALYTICS_SAFE_LOAD=1`` resolves ``Conv.forward_fuse`` of a fused checkpoint with Ultralytics' own
    ``builtins.getattr`` stand-in: importing gaussconv_plugin.mmdet (whose stand-in is scoped to MMEngine's loads)
    does not take its place. A fresh process each (the flag is read at import)."""
    import subprocess
    import sys

    pytest.importorskip("ultralytics")
    env = {**os.environ, "YOLO_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_CONFIG_DIR": str(tmp_path / "cfg")}
    ckpt = tmp_path / "fused.pt"
    save = f"from ultralytics import YOLO\nm = YOLO('yolov8n.yaml')\nm.model.fuse()\nm.save({str(ckpt)!r})"
    p = subprocess.run([sys.executable, "-c", save], env=env, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    load = ("import gaussconv_plugin.mmdet\nfrom ultralytics import YOLO\n"
            f"print(type(YOLO({str(ckpt)!r}).model).__name__)")
    p = subprocess.run([sys.executable, "-c", load], env={**env, "ULTRALYTICS_SAFE_LOAD": "1"}, capture_output=True,
                       text=True, timeout=300)
    assert p.returncode == 0 and p.stdout.strip().endswith("DetectionModel"), p.stderr[-3000:]


@pytest.mark.parametrize("name", [n for pair in PAIRS for n in pair])
def test_config_models_compute_losses_and_predict(name):
    """Every config's detector (neck levels = anchor strides, decoded-box loss) runs loss and predict on CPU."""
    from mmdet.structures import DetDataSample
    from mmengine.structures import InstanceData

    torch.manual_seed(0)
    cfg = Config.fromfile(CFG / name)
    model = DET_MODELS.build(cfg.model)
    model.init_weights()
    assert len(cfg.model.bbox_head.anchor_generator.strides) == cfg.model.neck.num_outs
    samples = []
    for _ in range(2):
        s = DetDataSample(metainfo=dict(img_shape=(96, 128), ori_shape=(96, 128), pad_shape=(96, 128),
                                        batch_input_shape=(96, 128), scale_factor=(1.0, 1.0)))
        s.gt_instances = InstanceData(bboxes=torch.tensor([[20.0, 30.0, 26.0, 35.0], [70.0, 40.0, 73.0, 44.0]]),
                                      labels=torch.zeros(2, dtype=torch.long))
        samples.append(s)
    data = model.data_preprocessor(dict(inputs=[torch.randint(0, 255, (3, 96, 128), dtype=torch.uint8)] * 2,
                                        data_samples=samples), training=True)
    model.train()
    losses = model.loss(data["inputs"], data["data_samples"])
    total = sum(v for vs in losses.values() for v in (vs if isinstance(vs, list) else [vs]))
    assert torch.isfinite(total)
    total.backward()
    if "gauss" in name:
        assert model.backbone.conv1.sigma_raw.grad is not None and model.backbone.conv1.sigma_raw.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        preds = model.predict(data["inputs"], data["data_samples"])
    assert len(preds) == 2 and preds[0].pred_instances.bboxes.shape[-1] == 4


@pytest.mark.parametrize("name", [g for _, g in PAIRS])
def test_optimizer_exempts_exactly_sigma_and_theta_from_weight_decay(name):
    from mmengine.optim import build_optim_wrapper

    cfg = Config.fromfile(CFG / name)
    model = DET_MODELS.build(cfg.model)
    if not torch.cuda.is_available():
        cfg.optim_wrapper.type = "OptimWrapper"  # AmpOptimWrapper refuses to exist without a GPU
        cfg.optim_wrapper.pop("loss_scale", None)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    names = {id(p): n for n, p in model.named_parameters()}
    no_decay = sorted(names[id(p)] for g in wrapper.optimizer.param_groups for p in g["params"]
                      if g["weight_decay"] == 0)
    assert no_decay == sorted(f"backbone.{n}.{p}" for n in model.backbone.gauss_conv_names
                              for p in ("sigma_raw", "theta"))


def test_tool_errors_one_line_per_kind_and_debug_reraises(capsys):
    """The tools' error rule (``runner.tool_errors``): a caught exception ends in one line and exit 2 — a
    DataFileError's own line (also wrapped in a DataLoader worker's traceback text), a FileNotFoundError's followed
    by the hint; an exception outside ``catch`` passes through; ``debug`` re-raises."""
    from gaussconv_plugin.data.sirst import DataFileError
    from gaussconv_plugin.mmdet.runner import tool_errors

    worker = DataFileError("Caught DataFileError in DataLoader worker process 0.\nOriginal Traceback (most recent "
                           "call last):\n  File \"x.py\", line 1\ngaussconv_plugin.data.sirst.DataFileError: image "
                           "/d/a.png cannot be decoded; replace it")
    cases = [
        (worker, (DataFileError, FileNotFoundError), "t.py: error: image /d/a.png cannot be decoded; replace it"),
        (FileNotFoundError("no /d/ann.json"), (DataFileError, FileNotFoundError),
         "t.py: error: FileNotFoundError: no /d/ann.json; HINT"),
        (KeyError("Foo is not in the registry"), (Exception,), "t.py: error: KeyError: Foo is not in the registry"),
    ]
    for exc, catch, line in cases:
        with pytest.raises(SystemExit) as e:
            with tool_errors("t.py", False, catch, "; HINT"):
                raise exc
        assert e.value.code == 2
        assert capsys.readouterr().err.strip() == line
        with pytest.raises(type(exc)):
            with tool_errors("t.py", True, catch, "; HINT"):
                raise exc
    with pytest.raises(RuntimeError):  # not in catch: the traceback (a bug, not a user's input)
        with tool_errors("t.py", False, (DataFileError, FileNotFoundError)):
            raise RuntimeError("a bug")


def test_efficient_conv_bn_eval_keeps_the_envelope_and_fx_tracing_is_one_line():
    """MMCV's ``ConvModule(..., efficient_conv_bn_eval=True)`` folds BN into ``conv.weight`` per output channel and
    calls ``conv._conv_forward`` with it: the output is the plain eval path's (W·G·M, then BN). MMEngine's runner
    option traces with torch.fx, which the conv refuses in one line naming the fix."""
    import torch.fx

    torch.manual_seed(0)
    kw = dict(padding=1, conv_cfg=dict(type="GaussianShapedConv2d"), norm_cfg=dict(type="BN"))
    fast, ref = mmcv.cnn.ConvModule(8, 16, 3, efficient_conv_bn_eval=True, **kw), mmcv.cnn.ConvModule(8, 16, 3, **kw)
    with torch.no_grad():
        fast.bn.running_mean.normal_()
        fast.bn.running_var.uniform_(0.5, 2.0)
        fast.bn.weight.normal_()
        fast.conv.sigma_raw.normal_()
        fast.conv.theta.fill_(0.3)
    ref.load_state_dict(fast.state_dict())
    fast.eval(), ref.eval()
    x = torch.randn(2, 8, 12, 12)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), ref(x), rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match=r"cannot be traced by torch.fx .* leave the modules holding it out of "
                                           r"efficient_conv_bn_eval"):
        torch.fx.symbolic_trace(nn.Sequential(GaussianShapedConv2d(4, 4, 3)))


def test_shape_decay_warning_names_the_fix():
    """A config whose optimizer would weight-decay σ/θ gets one line naming the custom_keys to add (MMEngine's
    longest-contained-key rule); the shipped gauss configs and a stock model get none."""
    from gaussconv_plugin.mmdet.runner import shape_decay_warning

    gauss, stock = GaussResNet(depth=18), ResNet(depth=18)
    keys = {".sigma_raw": dict(decay_mult=0.0), ".theta": dict(decay_mult=0.0)}
    cfg = lambda pw: Config(dict(optim_wrapper=dict(  # noqa: E731
        type="OptimWrapper", optimizer=dict(type="AdamW", lr=1e-4, weight_decay=0.05), paramwise_cfg=pw)))
    line = shape_decay_warning(cfg({}), gauss)
    assert line.startswith("10 σ/θ tensors of Gaussian-shaped convs get weight decay (e.g. conv1.sigma_raw); add "
                           "optim_wrapper.paramwise_cfg.custom_keys={'.sigma_raw': dict(decay_mult=0.0)"), line
    assert shape_decay_warning(cfg(dict(custom_keys=keys)), gauss) is None
    assert shape_decay_warning(cfg({}), stock) is None
    # a longer key contained in the name wins over '.theta' (MMEngine's rule): its decay applies, as MMEngine's own
    # optimizer builder does (conv1.theta, layer1.0.conv1.theta, layer1.1.conv1.theta)
    from mmengine.optim import build_optim_wrapper

    partial = {**keys, "conv1.theta": dict(lr_mult=0.1)}
    built = build_optim_wrapper(gauss, cfg(dict(custom_keys=partial)).optim_wrapper)
    names = {id(p): n for n, p in gauss.named_parameters()}
    decayed = [names[id(p)] for g in built.optimizer.param_groups if g["weight_decay"] > 0 for p in g["params"]
               if names[id(p)].endswith((".sigma_raw", ".theta"))]
    assert len(decayed) == 3
    assert shape_decay_warning(cfg(dict(custom_keys=partial)), gauss).startswith("3 σ/θ tensors")
    assert shape_decay_warning(Config(dict(optim_wrapper=dict(optimizer=dict(type="SGD", lr=0.1)))), gauss) is None
    shipped = Config.fromfile(str(CFG / "retinanet_r18_fpn_sirst320_cpu_gauss.py"))
    assert shipped.optim_wrapper.optimizer.weight_decay > 0
    assert shape_decay_warning(shipped, gauss) is None
