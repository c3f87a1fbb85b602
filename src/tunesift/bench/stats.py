"""The bench's statistics: the difference of two methods' means over seeds, with its Welch interval
(scipy's unequal-variance t-test; its confidence interval is the Welch-Satterthwaite one), and the
correction for comparing many methods with one random baseline (Benjamini-Hochberg, scipy's)."""
from __future__ import annotations

import numpy as np
from scipy import stats


def welch_ci(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean difference a - b and the half-width of its Welch t confidence interval (nan if n < 2)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, float("nan")
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        return d, 0.0    # identical seeds on both sides: scipy's interval is undefined (0/0), ours is a point
    lo, hi = stats.ttest_ind(a, b, equal_var=False).confidence_interval(level)
    return d, float(hi - lo) / 2


def welch_p(a: np.ndarray, b: np.ndarray) -> float:
    """Two-sided p-value of Welch's t-test of a against b (nan if n < 2)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    if a.var(ddof=1) == 0 and b.var(ddof=1) == 0:
        return 1.0 if a.mean() == b.mean() else 0.0
    return float(stats.ttest_ind(a, b, equal_var=False).pvalue)


def bh_adjusted(p: np.ndarray) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values); nan entries stay nan and are not counted."""
    p = np.asarray(p, dtype=float)
    q = np.full_like(p, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        q[ok] = stats.false_discovery_control(p[ok], method="bh")
    return q
