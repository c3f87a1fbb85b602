"""k-means cluster sampling and the score-first diversity filter."""
from __future__ import annotations

import warnings

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning

from ..data.errors import TunesiftError
from .kcenter import _check


def kmeans(X: np.ndarray, k: int, seed: int = 0, iters: int = 300, init: str = "k-means++",
           tol: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's k-means (Lloyd, one initialisation, ``init`` k-means++ or random rows, its
    relative ``tol``); returns (labels, float32 centroids).  Deterministic per seed.  The one k-means
    of the package: the cluster-based methods and the IVF index's cells both use it."""
    X = _check(X)
    k = min(k, len(X))
    with warnings.catch_warnings():
        # fewer distinct points than clusters: some clusters repeat, as before; not worth a warning
        warnings.simplefilter("ignore", ConvergenceWarning)
        km = KMeans(n_clusters=k, init=init, n_init=1, max_iter=iters, tol=tol, random_state=seed,
                    algorithm="lloyd").fit(X)
    return km.labels_.astype(np.int64), km.cluster_centers_.astype(np.float32)


def proportional_quotas(sizes: np.ndarray, budget: int) -> np.ndarray:
    """``budget`` split across groups in proportion to their ``sizes``: floors, then one more to the
    largest remainders (ties to the lower group index), each capped at its group's size."""
    sizes = np.asarray(sizes, dtype=np.int64)
    raw = budget * sizes / max(int(sizes.sum()), 1)
    quota = np.floor(raw).astype(np.int64)
    for j in np.argsort(-(raw - quota), kind="stable")[: max(budget - int(quota.sum()), 0)]:
        quota[j] += 1
    return np.minimum(quota, sizes)


def lowest_per_cluster(labels: np.ndarray, scores: np.ndarray, quota: np.ndarray) -> np.ndarray:
    """The ``quota[j]`` lowest-scoring members of every cluster ``j`` (ties to the lower index),
    cluster by cluster, each cluster's picks lowest first.  ``labels`` < 0 marks points outside any."""
    labels, scores = np.asarray(labels), np.asarray(scores, dtype=np.float64)
    order = np.lexsort((np.arange(len(labels)), scores, labels))   # by cluster, then score, then index
    order = order[labels[order] >= 0]
    starts = np.searchsorted(labels[order], np.arange(len(quota)), side="left")
    ends = np.searchsorted(labels[order], np.arange(len(quota)), side="right")
    parts = [order[a:min(a + int(q), e)] for a, e, q in zip(starts, ends, quota)]
    return np.concatenate(parts or [np.zeros(0, np.int64)]).astype(np.int64)


def cluster_representatives(X: np.ndarray, budget: int, n_clusters: int, seed: int = 0,
                            scores: np.ndarray | None = None, mode: str = "centroid") -> tuple[np.ndarray, np.ndarray]:
    """Split ``budget`` across k-means clusters in proportion to their size (largest remainders), then
    take per cluster the points nearest the centroid (``centroid``) or evenly spaced through the
    cluster's middle score band (``band``: Cherry LLM's pre-experience sampling; needs ``scores``)."""
    X = _check(X)
    labels, C = kmeans(X, n_clusters, seed)
    k = C.shape[0]
    quota = proportional_quotas(np.bincount(labels, minlength=k), budget)
    picks = []
    for j in range(k):
        members = np.flatnonzero(labels == j)
        if quota[j] == 0 or len(members) == 0:
            continue
        if mode == "centroid":
            d = ((X[members] - C[j]) ** 2).sum(1)
            picks.extend(members[np.lexsort((members, d))][: quota[j]])
        elif mode == "band":
            if scores is None:
                raise TunesiftError("band mode needs scores")
            s = scores[members]
            lo, hi = np.nanpercentile(s, 25), np.nanpercentile(s, 75)
            mid = members[(s >= lo) & (s <= hi)]
            mid = mid[np.argsort(scores[mid], kind="stable")]
            stride = max(len(mid) // quota[j], 1)
            picks.extend(mid[::stride][: quota[j]] if len(mid) >= quota[j] else members[: quota[j]])
        else:
            raise TunesiftError("mode must be centroid or band")
    return np.asarray(picks, dtype=np.int64), labels


def score_first_filter(X: np.ndarray, scores: np.ndarray, budget: int | None, threshold: float = 0.9) -> np.ndarray:
    """DEITA's rule: walk examples from the highest score down; keep one if its cosine similarity to
    the nearest *already kept* example is below ``threshold`` (not to the whole pool, a mistake some
    reimplementations make)."""
    X = _check(X)
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    order = np.lexsort((np.arange(len(X)), -np.nan_to_num(np.asarray(scores, float), nan=-np.inf)))
    cap = len(X) if budget is None else budget
    kept = np.empty((min(cap, len(X)), X.shape[1]), dtype=np.float32)
    picks: list[int] = []
    for i in order:
        if len(picks) >= cap:
            break
        if picks and float((kept[: len(picks)] @ Xn[i]).max()) >= threshold:
            continue
        kept[len(picks)] = Xn[i]
        picks.append(int(i))
    return np.asarray(picks, dtype=np.int64)
