"""G2IS's gradient walk: per principal direction of the target's gradients, a walk over the pool's
gradient-similarity graph that keeps the chosen set's summed gradient pointing that way."""
from __future__ import annotations

import logging

import numpy as np
from sklearn.decomposition import PCA

from .cluster import proportional_quotas

log = logging.getLogger("tunesift")


def principal_directions(V: np.ndarray, keep: float = 0.5, mode: str = "variance") -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's PCA of the target gradients ``V`` [M, d], as G2IS's code fits it
    (gradient_walk.py:41-53): the components (unit rows) and their explained-variance ratios,
    renormalised over the kept ones.  The signs matter: the walk's anchors and fallback rank by signed
    dot products, and scikit-learn's ``svd_flip`` fixes each sign where a bare SVD leaves it arbitrary.
    ``variance``: ``PCA(n_components=keep)``, the fewest components whose cumulative ratio exceeds
    ``keep`` (all at ``keep=1``); ``count_ratio``: int(d x keep) components, at least one, capped at
    min(M, d) where scikit-learn would raise.  The exact solver: scikit-learn's "auto" would pick an
    unseeded randomized one for large count_ratio fits."""
    X = np.asarray(V, dtype=np.float64)
    if len(X) < 2 or not np.ptp(X, axis=0).any():   # one target example, or identical ones: its own direction
        d = X[0]
        return (d / max(np.linalg.norm(d), 1e-30))[None, :], np.ones(1)
    if mode == "variance":
        n = keep if keep < 1 else min(X.shape)
    else:
        n = min(max(1, int(X.shape[1] * keep)), min(X.shape))
    pca = PCA(n_components=n, svd_solver="full").fit(X)
    w = pca.explained_variance_ratio_
    return pca.components_, w / w.sum()


def gradient_walk(F: np.ndarray, components: np.ndarray, budgets: np.ndarray, neighbors: np.ndarray,
                  delta: float = 0.8, anchor_pool: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Algorithm 1 of G2IS over unit-norm pool gradients ``F`` [N, d].

    For each component c (a unit direction) with budget B_c: the anchor is the first not yet chosen
    of the ``anchor_pool`` points with the largest dot product with c (else the best unchosen
    point); then, while the component's set S is short, take the first neighbour (in ``neighbors``
    order, most similar first) of the last point added that is unchosen, conflicts with no member of
    S (every cosine >= 0) and keeps |cos(sum S + g, c)| >= ``delta`` |cos(sum S, c)|; failing that, the
    first unchosen point by dot product with c that meets the same two conditions; failing that, the
    component stops short (logged).  Returns (picks in order, the component each was picked for)."""
    F = np.asarray(F, dtype=np.float64)
    N = len(F)
    taken = np.zeros(N, dtype=bool)
    picks: list[int] = []
    comp: list[int] = []

    def cos(v, c):
        return abs(float(v @ c)) / max(float(np.linalg.norm(v)), 1e-30)

    for ci, (c, B) in enumerate(zip(components, budgets)):
        if B <= 0 or taken.all():
            continue
        sim = F @ c
        order = np.lexsort((np.arange(N), -sim))          # by dot product with c, ties to the lower index
        free = [i for i in order[:anchor_pool] if not taken[i]]
        anchor = free[0] if free else int(order[~taken[order]][0])
        S = [int(anchor)]
        taken[anchor] = True
        g = F[anchor].copy()
        while len(S) < B:
            old = cos(g, c)

            def ok(j) -> bool:
                return (not taken[j] and bool((F[S] @ F[j] >= 0).all())
                        and cos(g + F[j], c) >= delta * old)

            nxt = next((int(j) for j in neighbors[S[-1]] if j >= 0 and ok(j)), None)
            if nxt is None:
                nxt = next((int(j) for j in order if ok(j)), None)
            if nxt is None:
                log.warning("g2is: component %d stopped at %d of %d examples (no candidate keeps its direction)",
                            ci, len(S), B)
                break
            S.append(nxt)
            taken[nxt] = True
            g += F[nxt]
        picks += S
        comp += [ci] * len(S)
    return np.asarray(picks, dtype=np.int64), np.asarray(comp, dtype=np.int64)


def component_budgets(weights: np.ndarray, budget: int) -> np.ndarray:
    """The budget split over components in proportion to their weights (largest remainders)."""
    scale = 10 ** 9
    return proportional_quotas(np.round(np.asarray(weights) * scale).astype(np.int64), budget)
