"""The method registry: every registered method class by name.

Built-in methods register when their module is imported; ``get_method`` and ``available_methods``
import them all on first use (``_load_all``).  That import stays inside the functions: the method
modules import this one to register, so importing them at the top would run them half-initialised.
"""
from __future__ import annotations

from ..data.errors import TunesiftError

REGISTRY: dict[str, type] = {}

# What a method may declare in ``needs``: the only words ``tunesift methods``, the bench's
# feasibility ranking (TEDD) and the docs read, so an unknown one fails at registration.
NEEDS: dict[str, str] = {
    "causal_lm": "the run's causal LM (--model)",
    "embedder": "a sentence encoder (--embedder)",
    "quality": "another method's score or a numeric field as quality",
    "judge": "a rating judge (the run's LM, or an OpenAI-compatible server)",
    "api_judge": "an API judge only (no local fallback)",
    "reward_model": "a reward model (or the run's LM as rating judge)",
    "fine-tuning": "fine-tunes a model during selection",
    "target_set": "examples of the target task (a dataset file; ROSE: preference pairs)",
}
# The needs that are models: TEDD counts each as one model used.
MODEL_NEEDS = frozenset({"causal_lm", "embedder", "quality", "judge", "reward_model"})


def stages_of(cls: type) -> int:
    """Algorithm stages: the class's own ``stages`` if it declares one, else derived from its needs
    (one stage, two when it uses more than one model: score, then combine)."""
    declared = cls.__dict__.get("stages")
    if declared is not None:
        return int(declared)
    return 2 if len(set(cls.needs) & MODEL_NEEDS) > 1 else 1


def register(cls: type) -> type:
    """Class decorator: make a method available by ``cls.name``."""
    if not getattr(cls, "name", None):
        raise TypeError("a registered method needs a name")
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise TypeError(f"method name {cls.name!r} is taken by {REGISTRY[cls.name].__qualname__}")
    needs = getattr(cls, "needs", ())
    if not isinstance(needs, tuple) or any(n not in NEEDS for n in needs):
        raise TypeError(f"method {cls.name!r}: needs must be a tuple drawn from {', '.join(NEEDS)}; got {needs!r}")
    cls.stages = stages_of(cls)
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
