"""Score-based selectors: plain functions over arrays, usable without the rest of tunesift."""
from __future__ import annotations

import numpy as np

from .budget import Budget


def rank_order(scores: np.ndarray, higher_is_better: bool = True) -> np.ndarray:
    """Indices from best to worst; NaN last; ties broken by index (deterministic)."""
    s = np.asarray(scores, dtype=np.float64)
    key = np.where(np.isnan(s), np.inf, -s if higher_is_better else s)
    return np.lexsort((np.arange(len(s)), key))


def top_k(scores: np.ndarray, budget: Budget | str | int | float, eligible: np.ndarray | None = None,
          higher_is_better: bool = True, n_pool: int | None = None) -> np.ndarray:
    """Indices of the best eligible examples under ``budget`` (sorted by rank)."""
    budget = Budget.parse(budget)
    s = np.asarray(scores, dtype=np.float64)
    ok = np.ones(len(s), bool) if eligible is None else np.array(eligible, dtype=bool)
    ok &= ~np.isnan(s)
    order = rank_order(s, higher_is_better)
    order = order[ok[order]]
    if budget.kind == "threshold":
        order = order[[budget.passes(v) for v in s[order]]] if len(order) else order
    k = budget.count(len(s) if n_pool is None else n_pool)
    return order if k is None else order[:k]


def band(scores: np.ndarray, where: str) -> np.ndarray:
    """A ranking score for low / high / middle bands (higher = better)."""
    s = np.asarray(scores, dtype=np.float64)
    if where == "low":
        return -s
    if where == "high":
        return s
    if where == "middle":
        return -np.abs(s - np.nanmedian(s))
    raise ValueError("band must be low, high or middle")


def balanced_greedy(I: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """BIDS's balanced selection over a per-task utility matrix ``I`` [examples, tasks]: repeatedly
    take the task whose mean utility over the picks so far is lowest (ties: the lower task index; at
    the start every task is at 0) and add the unpicked example with the highest utility for it
    (ties: the lower index).  Returns (picks in order, the task each was picked for)."""
    I = np.asarray(I, dtype=np.float64)
    n, K = I.shape
    k = min(int(k), n)
    taken = np.zeros(n, dtype=bool)
    sums = np.zeros(K)
    picks, tasks = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    for s in range(k):
        t = int(np.argmin(sums / max(s, 1)))
        col = np.where(taken, -np.inf, I[:, t])
        i = int(np.argmax(col))
        picks[s], tasks[s] = i, t
        taken[i] = True
        sums += I[i]
    return picks, tasks
