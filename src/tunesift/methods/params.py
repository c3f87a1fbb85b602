"""Declared method parameters: a Config field's annotation is its contract, read in one place.

    @dataclass
    class MyConfig:
        band: Literal["low", "high", "middle"] = "low"
        alpha: Annotated[float, Range(0, 1)] = 0.5
        clusters: Annotated[int, Range(1)] | None = None      # None allowed; else >= 1

``specs(Config)`` reads those annotations once; ``check`` (called by ``Method.__init__``) turns
strings into the declared type (``-p key=value`` arrives as text) and rejects values outside the
choices or range, naming the method, the parameter and what it accepts; ``tunesift methods NAME``
prints the same specs.  A check that relates two fields stays in the Config's ``validate()``.
(Modelled on scikit-learn's ``_parameter_constraints``: constraints declared, validated once.)
"""
from __future__ import annotations

import dataclasses
import functools
import numbers
import os
import types
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Union, get_args, get_origin, get_type_hints

import numpy as np

from ..data.errors import TunesiftError
from ..models.templates import TEMPLATES
from ..signals.embeddings import FIELDS


@dataclass(frozen=True)
class Range:
    """A numeric interval; None leaves that side open-ended.  ``lo_open``/``hi_open`` exclude the end."""

    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False

    def __contains__(self, v: float) -> bool:
        if v != v:   # NaN is in no interval
            return False
        if self.lo is not None and (v <= self.lo if self.lo_open else v < self.lo):
            return False
        return not (self.hi is not None and (v >= self.hi if self.hi_open else v > self.hi))

    def __str__(self) -> str:
        if self.hi is None:
            return f"{'>' if self.lo_open else '>='} {self.lo}"
        if self.lo is None:
            return f"{'<' if self.hi_open else '<='} {self.hi}"
        return f"{'(' if self.lo_open else '['}{self.lo}, {self.hi}{')' if self.hi_open else ']'}"


@dataclass(frozen=True)
class Aliases:
    """Old spellings of a choice, accepted and rewritten to the current one (kept out of the choices)."""

    names: dict

    def __init__(self, **names: str):
        object.__setattr__(self, "names", dict(names))

    def __hash__(self) -> int:
        return hash(tuple(sorted(self.names.items())))


@dataclass(frozen=True)
class Fixture:
    """In a method's ``test_params``: a small file the conformance test writes and passes as this
    parameter (``tests/test_methods.py``'s ``FIXTURES``: target, preferences, corpus, rule)."""

    name: str


# Choices several methods share.
Template = Literal[TEMPLATES + ("auto",)]
Field = Literal[FIELDS]
TrainMethod = Literal["full", "lora"]
LossWeighting = Literal["group", "token", "example"]
Positive = Annotated[int, Range(1)]
KnnIndex = Literal["auto", "exact", "ivf", "faiss"]   # selectors.neighbors.knn_graph's indexes


@dataclass(frozen=True)
class Spec:
    """One parameter's declaration: its Python type, whether None is allowed, choices, range, default."""

    name: str
    kind: type            # int, float, str or bool; object: not checked (a list, a dict, ...)
    optional: bool
    choices: tuple | None
    range: Range | None
    aliases: dict
    default: Any

    def accepts(self) -> str:
        """What the parameter accepts, in words (errors and ``tunesift methods`` say the same)."""
        if self.choices is not None:
            what = "one of " + ", ".join(map(str, self.choices))
        elif self.range is not None:
            what = f"{self.kind.__name__} {self.range}"
        else:
            what = self.kind.__name__ if self.kind is not object else "any value"
        return what + (" or None" if self.optional else "")

    def describe(self) -> dict:
        return {"type": self.kind.__name__, "optional": self.optional, "accepts": self.accepts(),
                "choices": list(self.choices) if self.choices is not None else None,
                "range": str(self.range) if self.range is not None else None, "default": self.default}


def _split(hint: Any) -> tuple[Any, tuple, bool]:
    """(bare type, Annotated metadata, None allowed) of an annotation, in either nesting order."""
    meta: tuple = ()
    optional = False
    for _ in range(2):
        if get_origin(hint) is Annotated:
            hint, *more = get_args(hint)
            meta += tuple(more)
        if get_origin(hint) in (Union, types.UnionType):
            args = [a for a in get_args(hint) if a is not type(None)]
            optional = optional or len(args) < len(get_args(hint))
            hint = args[0] if len(args) == 1 else object
    return hint, meta, optional


@functools.cache
def specs(config_cls: type) -> dict[str, Spec]:
    """Every field's Spec, from the Config's annotations (a subclass's redeclaration wins)."""
    if not dataclasses.is_dataclass(config_cls):
        return {}
    hints = get_type_hints(config_cls, include_extras=True)
    out = {}
    for f in dataclasses.fields(config_cls):
        hint, meta, optional = _split(hints.get(f.name, object))
        choices = None
        if get_origin(hint) is Literal:
            choices = get_args(hint)
            hint = type(choices[0])
        kind = hint if hint in (int, float, str, bool) else object
        default = f.default if f.default is not dataclasses.MISSING else None
        out[f.name] = Spec(f.name, kind, optional, choices,
                           next((m for m in meta if isinstance(m, Range)), None),
                           next((m.names for m in meta if isinstance(m, Aliases)), {}), default)
    return out


_TRUE, _FALSE = ("true", "yes", "1", "on"), ("false", "no", "0", "off")


def convert(spec: Spec, text: str) -> Any:
    """A command-line string as the parameter's declared type (ValueError if it is not one)."""
    low = text.strip().lower()
    if spec.optional and low in ("none", "null"):
        return None
    if spec.kind is bool:
        if low in _TRUE + _FALSE:
            return low in _TRUE
        raise ValueError(text)
    if spec.kind is int:
        return int(text)
    if spec.kind is float:
        return float(text)
    return text


def _bad(method: str, spec: Spec, value: Any) -> TunesiftError:
    return TunesiftError(f"{method}: parameter '{spec.name}' must be {spec.accepts()}; got {value!r}")


def checked(method: str, spec: Spec, value: Any) -> Any:
    """``value`` converted to the declared type (from a string) and checked, else a TunesiftError."""
    if isinstance(value, str) and spec.optional and value.strip().lower() in ("none", "null"):
        return None     # -p x=none
    if value is None:
        if spec.optional or spec.kind is object:
            return None
        raise _bad(method, spec, value)
    if isinstance(value, str) and spec.kind is not str and spec.kind is not object:
        try:
            value = convert(spec, value)
        except ValueError:
            raise _bad(method, spec, value) from None
        if value is None:
            return None
    if isinstance(value, str) and value in spec.aliases:
        value = spec.aliases[value]
    if spec.kind is bool:
        ok = isinstance(value, (bool, np.bool_))
    elif spec.kind is int:       # NumPy integers too (numbers.Integral), not bools
        ok = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    elif spec.kind is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))
    elif spec.kind is str:
        ok = isinstance(value, (str, os.PathLike))   # a path object is a path
    else:
        ok = True
    if not ok or (spec.choices is not None and value not in spec.choices) or \
            (spec.range is not None and value not in spec.range):
        raise _bad(method, spec, value)
    return value


def check(method: str, config: Any) -> None:
    """Convert and check every declared field of ``config`` in place."""
    for name, spec in specs(type(config)).items():
        setattr(config, name, checked(method, spec, getattr(config, name)))
