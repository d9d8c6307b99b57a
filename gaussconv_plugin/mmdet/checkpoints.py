"""MMEngine checkpoints under torch ≥ 2.6's weights-only ``torch.load``: :func:`allow_mmengine_checkpoints`.

Called once when :mod:`gaussconv_plugin.mmdet` is imported; idempotent.
"""
from __future__ import annotations

__all__ = ["allow_mmengine_checkpoints"]


def _checkpoint_getattr(obj, name: str):
    """Stand-in for ``builtins.getattr`` inside weights-only unpickling: only what MMEngine's ``HistoryBuffer``
    pickles (``getattr(HistoryBuffer, 'min')`` … its public statistics methods) is allowed."""
    from mmengine.logging import HistoryBuffer

    if obj is HistoryBuffer and isinstance(name, str) and not name.startswith("_") and callable(
        getattr(HistoryBuffer, name, None)
    ):
        return getattr(HistoryBuffer, name)
    import pickle

    raise pickle.UnpicklingError(
        f"weights-only load refused getattr({obj!r}, {name!r}); gaussconv_plugin only allows HistoryBuffer "
        "statistics methods (load untrusted files with weights_only=True and without them)"
    )


def allow_mmengine_checkpoints() -> list:
    """Let ``torch.load``'s default ``weights_only=True`` (torch ≥ 2.6) read MMEngine checkpoints.

    MMEngine 0.10.7 calls ``torch.load(file, map_location=...)`` without ``weights_only`` (its issue #1655),
    so under torch ≥ 2.6 ``--resume`` and ``load_from`` of its own checkpoints fail: besides tensors they hold
    the ``MessageHub`` state, i.e. ``HistoryBuffer`` objects (whose pickle calls
    ``getattr(HistoryBuffer, 'min')`` …), numpy arrays and numpy scalars. Instead of switching the safety check
    off (``weights_only=False`` or ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1``, which would let any checkpoint run
    code), this adds exactly those globals to torch's allow-list with ``torch.serialization.add_safe_globals``:
    ``HistoryBuffer``, numpy's ``_reconstruct``/``scalar``/``ndarray``/``dtype`` and the numeric/str/bool dtype
    classes (no object dtype), and, under the name ``builtins.getattr``, :func:`_checkpoint_getattr`, which
    only resolves ``HistoryBuffer``'s statistics methods. Idempotent; returns what was added.
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
    allowed = [HistoryBuffer, _reconstruct, scalar, np.ndarray, np.dtype, *dtypes,
               (_checkpoint_getattr, "builtins.getattr")]
    torch.serialization.add_safe_globals(allowed)
    return allowed
