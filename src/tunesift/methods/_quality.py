"""Quality scores for diversity methods: another registered method's score, or a record field.

``ctx`` is the run's ``base.Context``; not imported here, since ``base`` imports this module."""
from __future__ import annotations

import numpy as np

from ..data.errors import TunesiftError
from ..data.example import Dataset
from .registry import REGISTRY, available_methods, get_method


def quality_scores(data: Dataset, ctx, source: str | None, eps: float = 1e-3):
    """(quality in [eps, 1] by min-max scaling, eligible, reason).  None = uniform quality."""
    n = len(data)
    if source is None:
        return np.ones(n), np.ones(n, bool), np.full(n, "", dtype=object)
    if source in available_methods():
        m = get_method(source)()
        t, _ = m.run(data, ctx)   # the template, scores only
        raw = t["score"].to_numpy(dtype=float)
        if not m.higher_is_better:
            raw = -raw
        eligible = t["eligible"].to_numpy(bool) & np.isfinite(raw)
        reason = np.where(eligible, "", t["reason"].astype(str).replace("", f"{source} score undefined"))
    else:
        vals = []
        for e in data.examples:
            v = e.raw.get(source)
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise TunesiftError(f"{data.path}, line {e.line}, field '{source}': quality must be a number "
                                    f"(or name a method: {', '.join(sorted(REGISTRY))})")
            vals.append(float(v))
        raw = np.asarray(vals)
        eligible = np.isfinite(raw)
        reason = np.where(eligible, "", f"{source} is not finite")
    ok = raw[eligible]
    if len(ok) == 0:
        raise TunesiftError(f"no example has a usable quality score from {source!r}")
    lo, hi = ok.min(), ok.max()
    q = np.where(eligible, eps + (1 - eps) * (raw - lo) / (hi - lo) if hi > lo else 1.0, 0.0)
    return q, eligible, reason.astype(object)
