"""MMEngine checkpoints under torch ≥ 2.6's weights-only ``torch.load``: :func:`allow_mmengine_checkpoints`.

Called once when :mod:`gaussconv_plugin.mmdet` is imported; idempotent. MMEngine internal touched here (and
nowhere else): ``mmengine.runner.checkpoint.CheckpointLoader.load_checkpoint``, wrapped so that every MMEngine
checkpoint load (``load_from``, ``--resume``, any URL scheme) runs inside :func:`mmengine_checkpoint_globals`.
"""
from __future__ import annotations

import contextlib
import functools

__all__ = ["allow_mmengine_checkpoints", "mmengine_checkpoint_globals"]

_MARK = "__gaussconv_plugin_wrapped__"


def _checkpoint_getattr(obj, name: str):
    """Stand-in for ``builtins.getattr`` inside weights-only unpickling: only what MMEngine's ``HistoryBuffer``
    pickles (``getattr(HistoryBuffer, 'min')`` … its public statistics methods) is allowed."""
    import pickle

    from mmengine.logging import HistoryBuffer

    if obj is HistoryBuffer and isinstance(name, str) and not name.startswith("_") and callable(
        getattr(HistoryBuffer, name, None)
    ):
        return getattr(HistoryBuffer, name)
    what = obj.__qualname__ if isinstance(obj, type) else type(obj).__name__  # obj may be half unpickled: no repr
    raise pickle.UnpicklingError(
        f"weights-only load refused getattr({what}, {name!r}); gaussconv_plugin only allows HistoryBuffer "
        "statistics methods while loading MMEngine checkpoints (load untrusted files with weights_only=True)"
    )


@contextlib.contextmanager
def mmengine_checkpoint_globals():
    """A ``with`` block in which weights-only ``torch.load`` resolves ``builtins.getattr`` with
    :func:`_checkpoint_getattr` (``HistoryBuffer``'s statistics methods only). Scoped, not process-wide: torch keeps
    one function per allow-listed name, and Ultralytics' restricted load (``ULTRALYTICS_SAFE_LOAD=1``) needs its
    own ``builtins.getattr`` (``Conv.forward_fuse`` of fused checkpoints) — a process-wide one of ours took its place
    whenever this package was imported. No-op under torch < 2.4."""
    import torch

    scoped = getattr(torch.serialization, "safe_globals", None)
    if scoped is None:
        yield
        return
    with scoped([(_checkpoint_getattr, "builtins.getattr")]):
        yield


def _wrap_loader() -> None:
    """``CheckpointLoader.load_checkpoint`` (every scheme) → the same inside :func:`mmengine_checkpoint_globals`."""
    from mmengine.runner.checkpoint import CheckpointLoader

    orig = CheckpointLoader.__dict__["load_checkpoint"].__func__
    if getattr(orig, _MARK, False):
        return

    @functools.wraps(orig)
    def load_checkpoint(cls, *args, **kwargs):
        with mmengine_checkpoint_globals():
            return orig(cls, *args, **kwargs)

    setattr(load_checkpoint, _MARK, True)
    CheckpointLoader.load_checkpoint = classmethod(load_checkpoint)


def allow_mmengine_checkpoints() -> list:
    """Let ``torch.load``'s default ``weights_only=True`` (torch ≥ 2.6) read MMEngine checkpoints.

    MMEngine 0.10.7 calls ``torch.load(file, map_location=...)`` without ``weights_only`` (its issue #1655),
    so under torch ≥ 2.6 ``--resume`` and ``load_from`` of its own checkpoints fail: besides tensors they hold
    the ``MessageHub`` state, i.e. ``HistoryBuffer`` objects (whose pickle calls
    ``getattr(HistoryBuffer, 'min')`` …), numpy arrays and numpy scalars. Instead of switching the safety check
    off (``weights_only=False`` or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which would let any checkpoint run
    code), this adds exactly those globals to torch's allow-list with ``torch.serialization.add_safe_globals``:
    ``HistoryBuffer``, numpy's ``_reconstruct``/``scalar``/``ndarray``/``dtype`` and the numeric/str/bool dtype
    classes (no object dtype); ``builtins.getattr`` is allowed only inside MMEngine's checkpoint loads
    (:func:`mmengine_checkpoint_globals`, which ``CheckpointLoader.load_checkpoint`` now runs in). Idempotent;
    returns what was added process-wide.
    """
    import numpy as np
    import torch
    from mmengine.logging import HistoryBuffer

    if not hasattr(torch.serialization, "add_safe_globals"):  # torch < 2.4: weights_only defaults to False
        return []
    try:
        from numpy._core.multiarray import _reconstruct, scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import _reconstruct, scalar
    dtypes = dict.fromkeys(type(np.dtype(t)) for t in "bBhHiIlLqQefdg?U")
    allowed = [HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype, *dtypes]
    torch.serialization.add_safe_globals(allowed)
    _wrap_loader()
    return allowed
