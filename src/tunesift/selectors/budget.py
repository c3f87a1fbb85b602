"""One budget vocabulary for every method.

- a count: ``1000``
- a fraction of the input pool: ``"5%"`` or ``0.05``
- a score threshold: ``">=0.8"``, ``"<1"`` (keeps every eligible example whose score passes)
- ``"all"``: every eligible example (pure filters such as r-IFD's rule)
"""
from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from ..data.errors import TunesiftError

_OPS = {">=": operator.ge, ">": operator.gt, "<=": operator.le, "<": operator.lt}


@dataclass(frozen=True)
class Budget:
    kind: str            # count | fraction | threshold | all
    value: float = 0.0
    op: str = ""

    @classmethod
    def parse(cls, spec: "Budget | str | int | float | None") -> "Budget":
        if isinstance(spec, Budget):
            return spec
        if spec is None or (isinstance(spec, str) and spec.strip().lower() in ("all", "")):
            return cls("all")
        if isinstance(spec, bool):
            raise TunesiftError(f"invalid budget {spec!r}")
        if isinstance(spec, int):
            if spec < 0:
                raise TunesiftError("a budget count must be >= 0")
            return cls("count", spec)
        if isinstance(spec, float):
            if not 0 < spec <= 1:
                raise TunesiftError("a fractional budget must lie in (0, 1]; use an int for a count")
            return cls("fraction", spec)
        s = str(spec).strip().replace(" ", "")
        m = re.fullmatch(r"(>=|<=|>|<)(-?[0-9.]+(?:e-?\d+)?)", s)
        if m:
            return cls("threshold", float(m.group(2)), m.group(1))
        if s.endswith("%"):
            try:
                return cls.parse(float(s[:-1]) / 100)
            except ValueError:
                pass
        elif re.fullmatch(r"\d+", s):
            return cls("count", int(s))
        elif re.fullmatch(r"0?\.\d+|1\.0*", s):
            return cls.parse(float(s))
        raise TunesiftError(f"invalid budget {spec!r}: use a count (1000), a fraction of the input (5% or 0.05), "
                            "a score threshold (>=0.8) or 'all'")

    def count(self, n_pool: int) -> int | None:
        """Examples to keep out of a pool of ``n_pool`` (None = no count limit)."""
        if self.kind == "count":
            return int(self.value)
        if self.kind == "fraction":
            return int(round(self.value * n_pool))
        return None

    def passes(self, score: float) -> bool:
        return self.kind != "threshold" or _OPS[self.op](score, self.value)

    def __str__(self) -> str:
        return {"count": f"{int(self.value)}", "fraction": f"{self.value:.4g} of the input",
                "threshold": f"score {self.op} {self.value:g}", "all": "all eligible"}[self.kind]
