"""Automatic registration of :class:`~gaussconv_plugin.GaussianShapedConv` with Ultralytics (stdlib only).

How it gets loaded:

- The installed file ``gaussconv_plugin_autohook.pth`` (site-packages; its line is :func:`pth_line`, written by
  ``setup.py``) runs one line at interpreter start-up.
  That line loads *this file only* (``importlib.util.spec_from_file_location``; the package ``__init__``, which
  imports torch, is not executed) and calls :func:`install`. Cost at start-up: a spec look-up and this module,
  no torch, no ultralytics.
- ``import gaussconv_plugin`` also calls :func:`install` (for a source checkout that was never installed).

What :func:`install` does: it puts a finder (:class:`_PostImportFinder`) at the front of ``sys.meta_path`` that
reacts to two module names, ``ultralytics.nn.tasks`` (model building, loss, fusing) and
``ultralytics.engine.trainer`` (σ/θ out of weight decay), and to the modules of ``gaussconv_plugin.yolo``. It lets
the real finders locate such a module and wraps the found loader's ``exec_module`` so that, right after a
trigger module has executed, ``gaussconv_plugin.yolo.adapter.register()`` runs (idempotent: each part is patched
once, when its module is complete). If they are already imported, it registers at once. Nothing happens in a
process that never imports Ultralytics.

Registration is triggered from this side only (the adapter never imports this module). When a trigger executes
while a ``gaussconv_plugin.yolo`` module is itself executing (``import gaussconv_plugin.yolo.adapter`` as a
process's first import makes it import Ultralytics, half-way through the adapter), the hook defers silently and
registers as soon as the outermost of those modules has finished executing.

Because the ``.pth`` runs in every interpreter, the hook is active in every process Ultralytics spawns
(dataloader workers started with ``spawn``, the DDP temp script launched by ``torch.distributed.run``);
``fork``-ed workers inherit the already-patched module.

Switch it off with the environment variable ``GAUSSCONV_NO_AUTOHOOK=1`` (then call
``gaussconv_plugin.yolo.register()`` yourself if you want the YAML support).
"""
from __future__ import annotations

import os
import sys
import warnings

__all__ = ["PTH_NAME", "pth_line", "TRIGGER", "TRIGGERS", "ENV_OFF", "disabled", "install", "uninstall", "is_installed",
           "last_error"]

TRIGGER = "ultralytics.nn.tasks"
TRIGGERS = (TRIGGER, "ultralytics.engine.trainer")
ADAPTER = "gaussconv_plugin.yolo.adapter"
OWN = "gaussconv_plugin.yolo."  # the adapter's modules: they import Ultralytics at module level
ENV_OFF = "GAUSSCONV_NO_AUTOHOOK"

_last_error: BaseException | None = None
_own_executing = 0  # how many modules under OWN are executing right now (nested imports)
_pending = False  # a trigger fired while one of them was executing: register when the outermost finishes

# Executed by the .pth line (in site's namespace, where the line imported os and sys): find the package without
# importing it, load this file as gaussconv_plugin._autohook and install the hook; never raise at start-up.
_PTH_BOOT = """\
try:
    import importlib.util as _u
    _s = _u.find_spec("gaussconv_plugin")
    for _d in (_s.submodule_search_locations or []) if _s else []:
        _p = os.path.join(_d, "_autohook.py")
        if os.path.isfile(_p):
            _sp = _u.spec_from_file_location("gaussconv_plugin._autohook", _p)
            _m = _u.module_from_spec(_sp)
            sys.modules[_sp.name] = _m
            _sp.loader.exec_module(_m)
            _m.install()
            break
except Exception as _e:
    sys.modules.pop("gaussconv_plugin._autohook", None)
    sys.stderr.write("gaussconv_plugin: auto-hook not installed (%s: %s); reinstall gaussconv-plugin "
                     "or set GAUSSCONV_NO_AUTOHOOK=1\\n" % (type(_e).__name__, _e))
"""

PTH_NAME = "gaussconv_plugin_autohook.pth"


def pth_line() -> str:
    """The single line of ``gaussconv_plugin_autohook.pth`` (``setup.py`` writes it into site-packages).

    ``site`` executes it at interpreter start-up: unless ``$GAUSSCONV_NO_AUTOHOOK`` is set it runs ``_PTH_BOOT``,
    which loads this file only (not the package ``__init__``, which imports torch) and calls :func:`install`."""
    return (
        "import os, sys; "
        "os.environ.get('GAUSSCONV_NO_AUTOHOOK', '').strip().lower() in ('', '0', 'false', 'no', 'off') "
        "and 'gaussconv_plugin._autohook' not in sys.modules "
        f"and exec({_PTH_BOOT!r})"
    )


def disabled() -> bool:
    """True when ``$GAUSSCONV_NO_AUTOHOOK`` is set to anything but ``''``/``0``/``false``/``no``/``off``."""
    return os.environ.get(ENV_OFF, "").strip().lower() not in ("", "0", "false", "no", "off")


def last_error() -> BaseException | None:
    """The exception the last automatic registration raised (None if it succeeded or never ran)."""
    return _last_error


def _register() -> None:
    """Import the Ultralytics adapter and register; a failure becomes one warning (stock Ultralytics keeps working).

    Deferred (:data:`_pending`) while a module under :data:`OWN` is executing: it is half-built, and the adapter
    needs it; the finder calls this again when the outermost such module has finished."""
    global _last_error, _pending
    if disabled():
        return
    if _own_executing:
        _pending = True
        return
    _pending = False
    try:
        from gaussconv_plugin.yolo import adapter

        adapter.register()
        _last_error = None
    except Exception as e:  # never break `import ultralytics` for users who do not use the plug-in
        _last_error = e
        warnings.warn(
            f"gaussconv_plugin could not register GaussianShapedConv with Ultralytics ({type(e).__name__}: {e}); "
            "check that ultralytics is 8.4 (pip install 'ultralytics>=8.4,<8.5') or set GAUSSCONV_NO_AUTOHOOK=1",
            RuntimeWarning,
            stacklevel=2,
        )


class _PostImportFinder:
    """``sys.meta_path`` entry that runs :func:`_register` right after a module of :data:`TRIGGERS` executes, and
    counts the modules under :data:`OWN` while they execute (a registration deferred meanwhile runs after them).

    It never loads anything itself: for those names it asks the other finders for the spec and wraps that
    spec's loader's ``exec_module`` (an instance attribute, so ``__loader__`` keeps its real type)."""

    _gaussconv_autohook = True  # marker: recognised across reloads of this module

    def find_spec(self, fullname, path=None, target=None):
        own = fullname.startswith(OWN)
        if not (own or fullname in TRIGGERS) or disabled():
            return None
        spec = None
        for finder in list(sys.meta_path):
            if getattr(finder, "_gaussconv_autohook", False) or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                break
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        orig_exec = loader.exec_module

        def exec_module(module, _orig=orig_exec, _loader=loader, _own=own):
            global _own_executing
            _own_executing += _own
            try:
                _orig(module)
            finally:
                _own_executing -= _own
                try:
                    del _loader.exec_module  # restore the class method for any later reload
                except AttributeError:
                    pass
            if not _own or (_pending and not _own_executing):
                _register()

        try:
            loader.exec_module = exec_module
        except (AttributeError, TypeError):  # a loader type that refuses instance attributes
            return spec
        return spec

    def invalidate_caches(self):
        pass


def is_installed() -> bool:
    """Whether the post-import finder is on ``sys.meta_path``."""
    return any(getattr(f, "_gaussconv_autohook", False) for f in sys.meta_path)


def install() -> bool:
    """Install the hook (idempotent). Registers immediately if ``ultralytics.nn.tasks`` is already imported.

    Returns False when switched off by ``$GAUSSCONV_NO_AUTOHOOK``, True otherwise."""
    if disabled():
        return False
    if not is_installed():
        sys.meta_path.insert(0, _PostImportFinder())
    tasks = sys.modules.get(TRIGGER)
    if tasks is not None and hasattr(tasks, "parse_model"):  # fully imported already
        _register()
    return True


def uninstall() -> None:
    """Remove the finder from ``sys.meta_path`` (does not undo a registration already made)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not getattr(f, "_gaussconv_autohook", False)]
