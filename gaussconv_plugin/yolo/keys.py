"""The top-level model-YAML keys the plug-in adds, read and validated (no Ultralytics import).

============================  ===========================  ===========================================
key                           default                      read by
============================  ===========================  ===========================================
``scale_loss``                ``none``                     :mod:`.loss` (``diff|var|ratio|sqrt|none``)
``scale_loss_form``           ``add``                      :mod:`.loss` (``add|mul``)
``scale_loss_lambda``         ``1.0``                      :mod:`.loss` (λ ≥ 0)
``scale_loss_balance``        ``false``                    :mod:`.loss` (keep the stock box-loss size)
``shape_lr_mult``             ``1.0``                      :mod:`.optim` (> 0: lr multiplier of σ/θ)
============================  ===========================  ===========================================

``add`` is the default form because the SIRST train → val design screen chose it
(``docs/ablation/screen_v2_train_val``). Each reader takes a model (its ``.yaml``) or the YAML dict itself;
:func:`check_model_keys` validates all of them while the model is parsed, so a bad value is one line before
anything is built.
"""
from __future__ import annotations

from ..losses import BOX_FORMS, SCALE_MODES, check_mode

__all__ = ["check_model_keys", "scale_loss_mode", "scale_loss_options", "shape_lr_mult"]


def _yaml_get(model_or_yaml, key: str, default):
    y = model_or_yaml if isinstance(model_or_yaml, dict) else getattr(model_or_yaml, "yaml", None)
    v = y.get(key, default) if isinstance(y, dict) else default
    return default if v is None else v


def scale_loss_mode(model) -> str:
    """``model.yaml['scale_loss']`` (``none`` if absent), validated."""
    mode = _yaml_get(model, "scale_loss", "none")
    return check_mode("none" if mode is False else mode)


def scale_loss_options(model) -> dict:
    """``{'form', 'lam', 'balance'}`` from ``model.yaml`` keys ``scale_loss_form`` (``add``), ``scale_loss_lambda``
    (1.0) and ``scale_loss_balance`` (false)."""
    form = _yaml_get(model, "scale_loss_form", "add")
    if form not in BOX_FORMS:
        raise ValueError(f"model YAML has scale_loss_form: {form!r}; use one of {', '.join(BOX_FORMS)}")
    lam = _yaml_get(model, "scale_loss_lambda", 1.0)
    if isinstance(lam, bool) or not isinstance(lam, (int, float)) or lam < 0:
        raise ValueError(f"model YAML has scale_loss_lambda: {lam!r}; use a number >= 0 such as 1.0")
    balance = _yaml_get(model, "scale_loss_balance", False)
    if not isinstance(balance, bool):
        raise ValueError(f"model YAML has scale_loss_balance: {balance!r}; use true or false")
    return {"form": form, "lam": float(lam), "balance": balance}


def shape_lr_mult(model) -> float:
    """``model.yaml['shape_lr_mult']`` (1 if absent): learning-rate multiplier of σ/θ, validated."""
    m = _yaml_get(model, "shape_lr_mult", 1.0)
    if isinstance(m, bool) or not isinstance(m, (int, float)) or not m > 0:
        raise ValueError(f"model YAML has shape_lr_mult: {m!r}; use a number > 0 such as 1 (default) or 10")
    return float(m)


def check_model_keys(d) -> None:
    """Validate every key above in the model dict ``d`` (what ``parse_model`` receives); one-line ``ValueError``."""
    mode = d.get("scale_loss", "none") if isinstance(d, dict) else "none"
    if mode is None or mode is False:  # YAML `scale_loss: ~` / `false`
        mode = "none"
    if mode not in SCALE_MODES:
        raise ValueError(
            f"model YAML has scale_loss: {mode!r}; use one of {', '.join(SCALE_MODES)} (or omit it for 'none')"
        )
    if isinstance(d, dict):
        scale_loss_options(d)  # validates scale_loss_form / scale_loss_lambda (one-line error)
        shape_lr_mult(d)
