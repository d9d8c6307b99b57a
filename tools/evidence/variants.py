"""Variants of the ablation, per part: which conv sits in the stem and which loss trains the model.

YOLOv8n-P2 (``yolo_cfgs/yolov8-p2-*.yaml``; layers 0–1 are the two stride-2 stem convs):

================  =====================================================  ======================================
variant           layers 0–1                                             box loss
================  =====================================================  ======================================
``stock``         ``Conv``                                               stock CIoU
``gsconv``        ``GaussianShapedConv``, package defaults               stock CIoU
``gsconv-t0``     ``GaussianShapedConv``, ``theta_init: 0`` (until #33)  stock CIoU
``gsconv-hard``   ``GaussianShapedConv``, ``mask_floor: 0`` (v1 design)  stock CIoU
``gsconv-f03``    ``GaussianShapedConv``, ``mask_floor: 0.3``            stock CIoU
``gsconv-f06``    ``GaussianShapedConv``, ``mask_floor: 0.6``            stock CIoU
``gsconv-f1``     ``GaussianShapedConv``, ``mask_floor: 1`` (no pinwheel) stock CIoU
``gsconv-lr10``   ``GaussianShapedConv``, ``mask_floor: 0.3``, σ/θ lr ×10 stock CIoU
``gsconv-tmid``   ``GaussianShapedConv``, ``theta_init: mid``            stock CIoU
``pconv``         ``PConv`` (Yang et al., AAAI 2025)                      stock CIoU
``diff``          ``Conv``                                               CIoU + diff scale term, default form
``diff-add``      ``Conv``                                               CIoU + (1 − α), ``scale_loss_form: add``
``diff-mul``      ``Conv``                                               1 − α·IoU + (IoU − CIoU) (``mul``)
``diff-l025``     ``Conv``                                               CIoU + 0.25·(1 − α) (``add``, λ = 0.25)
``both``          ``GaussianShapedConv`` defaults                         diff, default form
``both-t0``       ``GaussianShapedConv``, ``theta_init: 0`` (until #33)  diff, default form
``both-l025``     ``GaussianShapedConv`` defaults                         CIoU + 0.25·(1 − α)
``diff-bal``      ``Conv``                                               diff, ``scale_loss_balance: true``
``both-bal``      ``GaussianShapedConv`` defaults                         diff, ``scale_loss_balance: true``
``both-tmid``     ``GaussianShapedConv``, ``theta_init: mid``            diff, default form
================  =====================================================  ======================================

``stock-finest``, ``gsconv-finest`` and ``both-finest`` are ``stock``, ``gsconv`` and ``both`` with ``Detect`` on
the finest output alone (``head='finest'``: P2, the P3–P5 heads and the layers that only fed them removed). The
coarse heads of a P2 model trained on 1–30 px targets only ever see negatives and draw untrained boxes: the large
false boxes of issue 33 (``docs/ablation/ood_yolo_trainval_test``).

MSHNet U-Net (``mmdet_cfgs/unet_mshnet_base_cpu.py``): ``stock`` (no Gaussian conv, SLS ``var`` loss), ``gsconv``
(``gauss_conv='both'``), ``diff`` (``diff`` mask loss), ``both``; the mask-loss screen's two ``both`` forms,
``both-directed`` (``model.loss.area_grad=directed``: the area gradient only grows target pixels or shrinks
background) and ``both-noloc`` (``model.loss.with_location=False``: without MSHNet's location term); and the two
forms that constrain (``docs/method.md``, "Forms that constrain"; SLS ``var`` loss as ``gsconv``): ``gsconv-hard``
(``model.net.gauss_kwargs.mask_floor=0``: the hard pinwheel in every Gaussian conv, all of them stride 1 in the
U-Net, so no pixel is blind) and ``gsconv-safree`` (``model.net.sa_form=free``: the first-stage convs of ``gsconv``,
the spatial-attention convs weight-free, ``G·M / Σ G·M`` with σ and θ their only parameters).

RetinaNet-R18 (``mmdet_cfgs/retinanet_r18_fpn_sirst320_cpu.py`` and its ``_gauss`` twin): ``stock`` (ResNet-18,
GIoU), ``gsconv`` (``GaussResNet`` as in the twin, GIoU), ``diff`` (ResNet-18, ``DiffScaleIoULoss`` diff/add),
``both`` (the twin); see :mod:`tools.evidence.retina_part`.

Variants named after a design (``gsconv-f03``, ``diff-mul`` …) pin their options, so their runs stay what they
were when the package defaults change (those from before ``theta_init='mid'`` became the default pin θ₀ = 0;
``gsconv-t0``/``both-t0`` are ``gsconv``/``both`` as they were until then); ``gsconv``/``diff``/``both`` follow the
defaults, and every run records the options it was trained with (:func:`resolved`; a run whose record differs
from what its variant resolves to now is refused by :func:`tools.evidence.runs.check_specs`). The U-Net and
RetinaNet keep θ₀ = 0 for every variant that does not name ``theta_init``
(:data:`gaussconv_plugin.masks.PINNED_THETA_INIT`).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

__all__ = ["Variant", "VARIANTS", "PART_VARIANTS", "BASELINE_LOSS", "resolved", "check_variants"]


@dataclass(frozen=True)
class Variant:
    """``conv``: the stem module (``Conv`` | ``GaussianShapedConv`` | ``PConv``); ``conv_opts``: options of the
    Gaussian conv (empty = package defaults); ``loss``: scale mode (None = the part's baseline loss);
    ``yaml_keys``: further top-level keys of the YOLO model YAML (``scale_loss_form``, ``scale_loss_lambda``,
    ``scale_loss_balance``, ``shape_lr_mult``); ``loss_opts``: further options of the U-Net's mask loss
    (``model.loss.<key>``); ``net_opts``: further options of the U-Net (``model.net.<key>``, e.g. ``sa_form``). The
    U-Net passes ``conv_opts`` as ``model.net.gauss_kwargs.<key>``. ``head``: YOLO's detection head, ``'all'``
    levels of the base YAML or the ``'finest'`` alone (:func:`tools.evidence.yolo_part.model_yaml`)."""

    conv: str = "Conv"
    conv_opts: dict = field(default_factory=dict)
    loss: str | None = None
    yaml_keys: dict = field(default_factory=dict)
    loss_opts: dict = field(default_factory=dict)
    net_opts: dict = field(default_factory=dict)
    head: str = "all"

    @property
    def gauss(self) -> bool:
        return self.conv == "GaussianShapedConv"


GS = "GaussianShapedConv"
VARIANTS = {
    "stock": Variant(),
    "gsconv": Variant(GS),
    "gsconv-t0": Variant(GS, {"theta_init": 0.0}),
    "gsconv-hard": Variant(GS, {"mask_floor": 0.0, "theta_init": 0.0}),
    "gsconv-f03": Variant(GS, {"mask_floor": 0.3, "theta_init": 0.0}),
    "gsconv-f06": Variant(GS, {"mask_floor": 0.6, "theta_init": 0.0}),
    "gsconv-f1": Variant(GS, {"mask_floor": 1.0, "theta_init": 0.0}),
    "gsconv-lr10": Variant(GS, {"mask_floor": 0.3, "theta_init": 0.0}, yaml_keys={"shape_lr_mult": 10}),
    "gsconv-tmid": Variant(GS, {"theta_init": "mid"}),
    "pconv": Variant("PConv"),
    "diff": Variant(loss="diff"),
    "diff-add": Variant(loss="diff", yaml_keys={"scale_loss_form": "add"}),
    "diff-mul": Variant(loss="diff", yaml_keys={"scale_loss_form": "mul"}),
    "diff-l025": Variant(loss="diff", yaml_keys={"scale_loss_form": "add", "scale_loss_lambda": 0.25}),
    "both": Variant(GS, loss="diff"),
    "both-t0": Variant(GS, {"theta_init": 0.0}, loss="diff"),
    "both-l025": Variant(GS, {"theta_init": 0.0}, loss="diff",
                         yaml_keys={"scale_loss_form": "add", "scale_loss_lambda": 0.25}),
    "diff-bal": Variant(loss="diff", yaml_keys={"scale_loss_balance": True}),
    "both-bal": Variant(GS, {"theta_init": 0.0}, loss="diff", yaml_keys={"scale_loss_balance": True}),
    "both-tmid": Variant(GS, {"theta_init": "mid"}, loss="diff"),
    "stock-finest": Variant(head="finest"),
    "gsconv-finest": Variant(GS, head="finest"),
    "both-finest": Variant(GS, loss="diff", head="finest"),
    "both-directed": Variant(GS, loss="diff", loss_opts={"area_grad": "directed"}),
    "both-noloc": Variant(GS, loss="diff", loss_opts={"with_location": False}),
    "gsconv-safree": Variant(GS, net_opts={"sa_form": "free"}),
}
_UNET_ONLY = ("both-directed", "both-noloc", "gsconv-safree")
PART_VARIANTS = {"yolo": [v for v in VARIANTS if v not in _UNET_ONLY],
                 "unet": ["stock", "gsconv", "diff", "both", "gsconv-hard", "gsconv-tmid", "both-tmid", *_UNET_ONLY],
                 "retina": ["stock", "gsconv", "diff", "both"]}
# stock CIoU for YOLO; MSHNet's SLS for the U-Net; GIoU (= DiffScaleIoULoss mode 'none') for RetinaNet
BASELINE_LOSS = {"yolo": "none", "unet": "var", "retina": "none"}


def check_variants(parts, variants) -> None:
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    for p in parts:
        bad = [v for v in variants if v not in PART_VARIANTS[p]]
        if bad and len(parts) == 1:
            raise SystemExit(f"variant(s) {', '.join(bad)} have no {p} form; the {p} part has "
                             f"{', '.join(PART_VARIANTS[p])}")


def resolved(part: str, name: str) -> dict:
    """The options a run of ``name`` is trained with, package defaults filled in (recorded in each result)."""
    from gaussconv_plugin.masks import DEFAULT_MASK_FLOOR, DEFAULT_THETA_INIT, PINNED_THETA_INIT

    v = VARIANTS[name]
    d = asdict(v)
    d["loss"] = v.loss or BASELINE_LOSS[part]
    if part != "yolo":
        d.pop("head")  # the YOLO head alone has levels to choose
    if v.gauss:
        theta = DEFAULT_THETA_INIT if part == "yolo" else PINNED_THETA_INIT  # the U-Net and GaussResNet pin θ₀
        d["conv_opts"] = {"mask_floor": DEFAULT_MASK_FLOOR, "theta_init": theta, **v.conv_opts}
    if part == "unet":  # model.net as unet_part.command sets it
        d["net_opts"] = {"gauss_conv": "both" if v.gauss else "none", "sa_form": "conv", **v.net_opts}
    if part == "yolo" and v.loss:
        d["yaml_keys"] = {"scale_loss_form": "add", "scale_loss_lambda": 1.0, **d["yaml_keys"]}
    if part == "retina":  # the twin configs' box loss (tools.evidence.retina_part)
        d["box_loss"] = ({"type": "DiffScaleIoULoss", "mode": v.loss, "iou_mode": "giou", "form": "add",
                          "loss_weight": 2.0} if v.loss else {"type": "GIoULoss", "loss_weight": 2.0})
    return d
