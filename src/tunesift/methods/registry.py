"""The method registry: every registered method class by name.

Built-in methods register when their module is imported; ``get_method`` and ``available_methods``
import them all on first use (``_load_all``).  That import stays inside the functions: the method
modules import this one to register, so importing them at the top would run them half-initialised.
"""
from __future__ import annotations

from ..data.errors import TunesiftError

REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Class decorator: make a method available by ``cls.name``."""
    if not getattr(cls, "name", None):
        raise TypeError("a registered method needs a name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise TypeError(f"method name {cls.name!r} is taken by {REGISTRY[cls.name].__qualname__}")
    REGISTRY[cls.name] = cls
    return cls


def get_method(name: str) -> type:
    from . import _load_all  # noqa: F401  (import side effect: every built-in method registers)
    if name not in REGISTRY:
        raise TunesiftError(f"unknown method {name!r}; available: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def available_methods() -> dict[str, type]:
    from . import _load_all  # noqa: F401
    return dict(sorted(REGISTRY.items()))
