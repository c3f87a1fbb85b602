"""Facility location (lazy greedy; dense or sparse k-NN kernel) and DPP greedy MAP.

Objectives are kept apart from optimisers (as apricot does): ``similarity`` builds a kernel,
``facility_location`` maximises f(A) = sum_v max_{a in A} s(v, a) over it.
"""
from __future__ import annotations

import heapq

import numpy as np

from ..data.errors import TunesiftError
from ..models.progress import progress_bar, wanted
from .kcenter import _check
from .neighbors import knn_graph


def similarity(X: np.ndarray, Y: np.ndarray | None = None, metric: str = "cosine") -> np.ndarray:
    """Dense similarity. ``cosine``: dot products of L2-normalised rows. ``euclidean``: submodlib's
    exp(-||x - y|| / dim) (unsquared distance over the embedding dimension; Superfiltering.D)."""
    X = _check(X)
    Y = X if Y is None else _check(Y)
    if metric == "cosine":
        Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
        Yn = Xn if Y is X else Y / np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), 1e-12)
        return Xn @ Yn.T
    if metric == "euclidean":
        d2 = (X * X).sum(1)[:, None] - 2 * X @ Y.T + (Y * Y).sum(1)[None, :]
        return np.exp(-np.sqrt(np.maximum(d2, 0)) / X.shape[1]).astype(np.float32)
    raise TunesiftError("metric must be cosine or euclidean")


def knn_similarity(X: np.ndarray, k: int = 20, metric: str = "cosine", chunk: int = 1024, index: str = "auto",
                   n_lists: int | None = None, n_probe: int = 8, seed: int = 0, graph=None):
    """Sparse kernel: each row keeps its k most similar points (itself included), as CSC columns.

    Returns (indptr, rows, vals) of a column-compressed matrix: column a lists the points v that
    count a among their k nearest, with s(v, a).  The neighbours come from ``knn_graph``: exact up
    to 60,000 points, an inverted-file index above (``index``, ``n_lists``, ``n_probe``).  ``graph``:
    that (ids, values) pair already built with these settings (a run's shared ``Context.knn_graph``)."""

    nbr, val = graph if graph is not None else knn_graph(X, k=k, metric=metric, index=index, n_lists=n_lists,
                                                         n_probe=n_probe, seed=seed, chunk=chunk)
    N, k = nbr.shape
    cols = nbr.ravel()
    order = np.argsort(cols, kind="stable")
    rows = np.repeat(np.arange(N), k)[order]
    indptr = np.searchsorted(cols[order], np.arange(N + 1))
    return indptr, rows, val.ravel()[order]


def facility_location(S=None, k: int = 10, *, sparse=None, initial: np.ndarray | None = None,
                      modular: np.ndarray | None = None, return_gains: bool = False, progress: bool | None = None):
    """Lazy greedy for facility location over a dense kernel ``S`` (N x N, rows = points covered,
    columns = candidates) or a ``sparse`` kernel from ``knn_similarity``.  Gains are clipped at 0,
    so negative similarities never reduce coverage.  ``initial``: coverage already achieved (e.g.
    by a private set; FLCG-style conditioning).  ``modular``: a per-candidate bonus added to every
    gain (QDIT's alpha * quality); the sum stays submodular, so lazy greedy stays exact.
    ``progress``: report picks (None: as the ``tunesift`` logger is set)."""
    if (S is None) == (sparse is None):
        raise TunesiftError("pass exactly one of a dense kernel S or a sparse kernel")
    n_cand = S.shape[1] if S is not None else len(sparse[0]) - 1
    n_pts = S.shape[0] if S is not None else n_cand
    cur = np.zeros(n_pts, dtype=np.float64) if initial is None else np.asarray(initial, np.float64).copy()

    bonus = np.zeros(n_cand) if modular is None else np.asarray(modular, dtype=np.float64)
    # Candidates' columns as contiguous rows: a strided column read per gain made the dense greedy 7x
    # slower than apricot's at 20,000 points (measured); one transposed copy fixes it.
    ST = None if S is None else (S.T if S.flags.f_contiguous else np.ascontiguousarray(S.T))

    buf = np.empty(n_pts, dtype=np.float64)
    cursum = [float(cur.sum())]

    def gain(a: int) -> float:
        if S is not None:
            # sum(max(s - c, 0)) = sum(max(s, c)) - sum(c): two passes over the row instead of three
            np.maximum(ST[a], cur, out=buf)
            return float(buf.sum()) - cursum[0] + bonus[a]
        p0, p1 = sparse[0][a], sparse[0][a + 1]
        return float(np.maximum(sparse[2][p0:p1] - cur[sparse[1][p0:p1]], 0).sum()) + bonus[a]

    def add(a: int) -> None:
        if S is not None:
            np.maximum(cur, ST[a], out=cur)
            cursum[0] = float(cur.sum())
        else:
            p0, p1 = sparse[0][a], sparse[0][a + 1]
            r = sparse[1][p0:p1]
            cur[r] = np.maximum(cur[r], sparse[2][p0:p1])

    if S is None:   # first gains of every candidate at once (a million Python calls took seconds)
        ip, r, v = sparse
        contrib = np.maximum(v - cur[r], 0)
        first = np.zeros(n_cand)
        nz = np.flatnonzero(ip[1:] > ip[:-1])
        first[nz] = np.add.reduceat(contrib, ip[:-1][nz]) if len(contrib) else 0
        first += bonus
    else:
        first = [gain(a) for a in range(n_cand)]
    heap = [(-float(g), a) for a, g in enumerate(first)]
    heapq.heapify(heap)
    picks, gains = [], []
    with progress_bar(total=min(k, n_cand), desc="facility location", unit="pick",
                      disable=not wanted(progress)) as bar:
        while heap and len(picks) < k:
            neg, a = heapq.heappop(heap)
            g = gain(a)
            if heap and g < -heap[0][0] - 1e-12:
                heapq.heappush(heap, (-g, a))   # stale bound: re-queue with the true gain
                continue
            picks.append(a)
            gains.append(g)
            add(a)
            bar.update(1)
    out = np.asarray(picks, dtype=np.int64)
    return (out, np.asarray(gains)) if return_gains else out


def flmi(S_qv: np.ndarray, k: int, eta: float = 1.0, return_gains: bool = False):
    """Facility-location mutual information with a query (target) set Q (PRISM's FLQMI, submodlib's
    FacilityLocationMutualInformation): I(A; Q) = sum_{i in Q} max_{j in A} s_ij + eta * sum_{j in A}
    max_{i in Q} s_ij.  ``S_qv``: |Q| x N similarities (clipped at 0).  The first term is a facility
    location over the query rows, the second a modular bonus, so the lazy greedy stays exact."""
    S_qv = np.asarray(S_qv, dtype=np.float64)
    return facility_location(S_qv, k, modular=eta * np.maximum(S_qv.max(axis=0), 0), return_gains=return_gains)


def flmi_saturated(S: np.ndarray, S_query: np.ndarray, k: int, eta: float = 1.0, return_gains: bool = False):
    """Facility-location mutual information FL1MI (submodlib's FacilityLocationMutualInformation, the
    one DELIFT calls): I(A; Q) = sum_{i in V} min(max_{j in A} s_ij, eta * max_{q in Q} s_iq).
    ``S``: N x N, ``S_query``: N x |Q|.  min(max_j s_ij, c_i) = max_j min(s_ij, c_i), so it is facility
    location over the kernel capped row by row at what the query set gives (gains clipped at 0, as
    submodlib's memoised coverage starts at 0)."""
    cap = eta * np.asarray(S_query, dtype=np.float64).max(axis=1)
    return facility_location(np.minimum(np.asarray(S, dtype=np.float64), cap[:, None]), k,
                             return_gains=return_gains)


def flcg(S: np.ndarray, S_private: np.ndarray, k: int, nu: float = 1.0, return_gains: bool = False):
    """Facility-location conditional gain away from a private set P (PRISM's FLCG):
    f(A | P) = sum_{i in V} max(max_{j in A} s_ij - nu * max_{p in P} s_ip, 0).  ``S``: N x N,
    ``S_private``: N x |P| (clipped at 0).  It is facility location started from the coverage P
    already gives (scaled by nu), so examples that P covers add little."""
    start = nu * np.maximum(np.asarray(S_private, dtype=np.float64).max(axis=1), 0)
    return facility_location(np.asarray(S, dtype=np.float64), k, initial=start, return_gains=return_gains)


def facility_location_value(S: np.ndarray, picks) -> float:
    if len(picks) == 0:
        return 0.0
    return float(np.maximum(S[:, list(picks)].max(axis=1), 0).sum())


def dpp_greedy(X: np.ndarray, k: int, quality: np.ndarray | None = None, eps: float = 1e-10,
               progress: bool | None = None) -> np.ndarray:
    """Fast greedy MAP inference for a DPP (Chen, Zhang, Zhou, NeurIPS 2018).

    Kernel L = diag(q) S diag(q), S = cosine similarity of the rows of X; built on the fly, one row
    per pick (O(N k) memory, no N x N matrix).  Each step adds the item with the largest marginal
    gain in log det(L_A), via an incremental Cholesky factorisation.  ``progress``: as ``facility_location``."""
    X = _check(X)
    Xn = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    N = len(Xn)
    q = np.ones(N, np.float64) if quality is None else np.asarray(quality, np.float64)
    if q.shape != (N,) or not np.isfinite(q).all() or (q < 0).any():
        raise TunesiftError("quality must be N finite, non-negative values")
    k = min(k, N)
    cis = np.zeros((k, N), dtype=np.float64)
    d2 = q * q * (Xn * Xn).sum(1)
    picks: list[int] = []
    j = int(np.argmax(d2))
    with progress_bar(total=k, desc="DPP greedy", unit="pick", disable=not wanted(progress)) as bar:
        while len(picks) < k:
            if d2[j] < eps:
                break
            picks.append(j)
            t = len(picks) - 1
            Lj = q[j] * q * (Xn @ Xn[j]).astype(np.float64)
            e = (Lj - cis[:t, j] @ cis[:t]) / np.sqrt(d2[j])
            cis[t] = e
            d2 = d2 - e * e
            d2[picks] = -np.inf
            j = int(np.argmax(d2))
            bar.update(1)
    return np.asarray(picks, dtype=np.int64)


def logdet_diversity(X: np.ndarray, eps: float = 1e-6) -> float:
    """log det(S + eps I) of the cosine kernel of the rows of X (higher = more diverse)."""
    S = similarity(X, metric="cosine").astype(np.float64)
    sign, val = np.linalg.slogdet(S + eps * np.eye(len(S)))
    return float(val) if sign > 0 else float("-inf")
