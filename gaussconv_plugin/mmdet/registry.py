"""The one way this package registers with OpenMMLab: ``@register_once(REGISTRY)``, MMEngine's
``@REGISTRY.register_module()`` with a guard.

The guard: registering the *same* object under a name again is a no-op (so registering an object defined
elsewhere, e.g. :class:`~gaussconv_plugin.GaussianShapedConv2d` from the core, survives a second execution of
the registering module: ``importlib.reload``, or a test that imports it afresh), while a *different* object under
a taken name is refused with one line that names the module holding the name and the fix (MMEngine's own
``register_module()`` raises for both, with ``force=True`` it silently shadows the other plug-in).
"""
from __future__ import annotations

__all__ = ["register_once"]


def register_once(registry, name: str | None = None):
    """Decorator: register the class or function in ``registry`` as ``name`` (default: its ``__name__``).

    Use ``@register_once(MODELS)`` on a definition, or ``register_once(DATASETS)(obj)`` for an object defined
    elsewhere. Returns the object unchanged.

    Raises:
        KeyError: ``name`` is already registered in ``registry`` by a different object.
    """

    def deco(obj):
        key = name or obj.__name__
        have = registry.module_dict.get(key)
        if have is obj:
            return obj
        if have is not None:
            raise KeyError(
                f"{key!r} is already registered in {registry.name!r} by {have.__module__}; "
                "remove the other plugin from custom_imports or rename one of them"
            )
        registry.register_module(name=key, module=obj)
        return obj

    return deco
