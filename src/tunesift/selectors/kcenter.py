"""k-center greedy (farthest-first traversal), memory-bounded.

The plain greedy keeps a running min-distance vector and, at each pick, reads every point to
update it: O(N d) per pick and memory-bound, 0.085 s for 1M x 384 float32 on a 2-core CPU here, so
14 minutes for 10,000 picks.  ``kcenter_greedy`` makes the same choices lazily (see its docstring):
stale min-distances are upper bounds, only the frontier is refreshed, and refreshes are batched
matrix products.  Memory: the data, a float32 and an int64 per point, a heap; never an N x N matrix.
Both report picks as they go (``progress``): a bar on a terminal, a line every ~30 s in a log.
"""
from __future__ import annotations

import numpy as np

from ..data.errors import TunesiftError
from ..models.progress import progress_bar, wanted


def _check(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X)
    if X.ndim != 2 or len(X) == 0:
        raise TunesiftError("embeddings must be a non-empty 2-D array")
    if not np.isfinite(X).all():
        bad = np.flatnonzero(~np.isfinite(X).all(axis=1))
        raise TunesiftError(f"embeddings contain NaN/inf in {len(bad)} rows (first: {bad[:5].tolist()})")
    return np.ascontiguousarray(X, dtype=np.float32)


def _dist(X: np.ndarray, idx: np.ndarray | None, c: np.ndarray, sq_norms: np.ndarray) -> np.ndarray:
    """Euclidean distances from rows ``idx`` of X (all rows if None) to point ``c``."""
    rows = X if idx is None else X[idx]
    n = sq_norms if idx is None else sq_norms[idx]
    d2 = n - 2.0 * (rows @ c) + float(c @ c)
    return np.sqrt(np.maximum(d2, 0.0))


def kcenter_naive(X: np.ndarray, k: int, first: int = 0, seeds: list[int] | None = None) -> np.ndarray:
    """The plain greedy (reference): a full pass over the data per pick."""
    X = _check(X)
    sq = np.einsum("ij,ij->i", X, X)
    mind = np.full(len(X), np.inf, dtype=np.float32)
    centers = list(seeds) if seeds else [first]
    for c in centers:
        mind = np.minimum(mind, _dist(X, None, X[c], sq))
    picks = [] if seeds else [first]
    while len(picks) < k:
        nxt = int(np.argmax(mind))
        if mind[nxt] <= 0:
            break
        picks.append(nxt)
        mind = np.minimum(mind, _dist(X, None, X[nxt], sq))
    return np.asarray(picks[:k], dtype=np.int64)


def kcenter_torch(X: np.ndarray, k: int, first: int = 0, seeds: list[int] | None = None, device: str = "cuda",
                  chunk: int = 1 << 20, return_gains: bool = False, progress: bool | None = None):
    """The plain greedy in torch, for a GPU: the data stays on the device and each pick is one
    memory-bound pass (1M x 384 float32 is 1.5 GB: about 0.5 ms at HBM speed), so the lazy
    bookkeeping that pays on a CPU would cost more than it saves.  Same picks as ``kcenter_naive``
    (argmax ties go to the lowest index in both)."""
    import torch

    X = _check(X)
    N = len(X)
    if k <= 0:
        return np.zeros(0, np.int64)
    init = list(dict.fromkeys(int(s) for s in seeds)) if seeds else [int(first)]
    if any(not 0 <= s < N for s in init):
        raise TunesiftError("seed/first index out of range")
    T = torch.from_numpy(X).to(device)
    sq = (T * T).sum(1)
    mind = torch.full((N,), float("inf"), device=device)

    def update(c: int) -> None:
        v = T[c]
        for s in range(0, N, chunk):   # bounded temporaries on any N
            d2 = sq[s:s + chunk] - 2.0 * (T[s:s + chunk] @ v) + sq[c]
            # below float32 rounding of the expansion: a duplicate of the center (else never "covered")
            d2[d2 <= 1e-6 * (sq[s:s + chunk] + sq[c])] = 0
            torch.minimum(mind[s:s + chunk], d2.sqrt_(), out=mind[s:s + chunk])

    for c in init:
        update(c)
    picks: list[int] = [] if seeds else [int(first)]
    gains: list[float] = [] if seeds else [float("inf")]
    with progress_bar(total=k, desc="k-center", unit="pick", disable=not wanted(progress)) as bar:
        bar.update(len(picks))
        while len(picks) < k:
            nxt = int(torch.argmax(mind))   # first maximal index on ties, as numpy's argmax
            best = float(mind[nxt])
            if best <= 0:
                break
            picks.append(nxt)
            gains.append(best)
            update(nxt)
            bar.update(1)
    out = np.asarray(picks[:k], dtype=np.int64)
    return (out, np.asarray(gains[:k])) if return_gains else out


def _refresh(X, sq, C, csq, nC, idx, upto, mind, block: int = 256) -> None:
    """Bring ``mind[idx]`` up to date against centers ``upto[idx] .. nC-1``.

    Rows are sorted by their mark and the new centers taken in blocks, so a block is multiplied
    only with the rows that still lack it: the work is the rows' own backlog plus at most one
    block each, not every row times the oldest row's backlog (which measured 3.8x the needed
    products on 200,000 points)."""
    order = np.argsort(upto[idx], kind="stable")
    idx = idx[order]
    marks = upto[idx]
    P = X[idx]
    best = np.full(len(idx), np.inf, dtype=np.float32)
    for a in range(int(marks[0]), nC, block):
        b = min(a + block, nC)
        m = int(np.searchsorted(marks, b, side="left"))    # rows whose mark is before b
        D2 = P[:m] @ C[a:b].T
        D2 *= -2.0
        D2 += sq[idx[:m], None]
        D2 += csq[None, a:b]
        late = marks[:m] > a                                # rows that already count part of the block
        if late.any():
            r = np.flatnonzero(late)
            D2[r] = np.where(np.arange(a, b)[None, :] < marks[r, None], np.inf, D2[r])
        np.minimum(best[:m], D2.min(axis=1), out=best[:m])
    mind[idx] = np.minimum(mind[idx], np.sqrt(np.maximum(best, 0.0)))
    upto[idx] = nC


def kcenter_greedy(X: np.ndarray, k: int, first: int = 0, seeds: list[int] | None = None,
                   batch: int = 512, return_gains: bool = False, device: str | None = None,
                   pool_size: int = 65536, progress: bool | None = None):
    """k-center greedy by lazy evaluation: the plain greedy's picks, much less work.

    A point's min-distance only falls as centers are added, so a stale value is an upper bound.
    At each pick, the points with the largest bounds are brought up to date against the centers
    added since each was last updated (blocked matrix products, compute-bound, instead of the
    plain greedy's memory-bound pass over every point), and the best is accepted once it is
    fresh and no bound can beat it.  The candidates live in a pool (the ``pool_size`` largest
    bounds, kept sorted by index so ``argmax`` breaks ties to the lowest index as the plain
    greedy does); the pool is rebuilt from all points when a bound outside it could win.
    ``seeds``: an already-selected set (MoDS's seed set); the picks continue from it and do not
    repeat it.  Stops early when every point coincides with a center (duplicates).
    ``return_gains``: also return each pick's distance to the centers before it (inf for ``first``).

    Distances are float32 as in the plain greedy; the two compute them by different BLAS kernels
    (matrix-matrix here, matrix-vector there), so where two points' distances tie to float32
    rounding the picks may differ from then on; the covering radius after every pick agrees to
    float32 rounding.
    ``device``: a CUDA device runs the plain greedy there instead (``kcenter_torch``).
    ``progress``: report picks (None: as the ``tunesift`` logger is set; see ``models.progress.wanted``).
    """
    if device is not None and str(device).startswith("cuda"):
        return kcenter_torch(X, k, first=first, seeds=seeds, device=str(device), return_gains=return_gains,
                             progress=progress)

    X = _check(X)
    N, d = X.shape
    if k <= 0:
        return np.zeros(0, np.int64)
    init = list(dict.fromkeys(int(s) for s in seeds)) if seeds else [int(first)]
    if any(not 0 <= s < N for s in init):
        raise TunesiftError("seed/first index out of range")
    sq = np.einsum("ij,ij->i", X, X)
    C = np.empty((len(init) + k, d), dtype=np.float32)
    csq = np.empty(len(init) + k, dtype=np.float32)
    C[: len(init)] = X[init]
    csq[: len(init)] = sq[init]
    nC = len(init)
    mind = np.full(N, np.inf, dtype=np.float32)
    for c in init:
        np.minimum(mind, _dist(X, None, X[c], sq), out=mind)
    upto = np.full(N, nC, dtype=np.int64)          # centers each point's mind already accounts for
    picks: list[int] = [] if seeds else [int(first)]
    gains: list[float] = [] if seeds else [float("inf")]
    M = max(1, min(N, pool_size))

    def rebuild():
        if M >= N:
            return np.arange(N), -np.inf
        v = np.partition(mind, N - M)[N - M]        # the M-th largest bound; ties all join the pool
        inside = mind >= v
        rest = mind[~inside]
        return np.flatnonzero(inside), (float(rest.max()) if len(rest) else -np.inf)

    pool, thr = rebuild()
    with progress_bar(total=k, desc="k-center", unit="pick", disable=not wanted(progress)) as bar:
        bar.update(len(picks))
        while len(picks) < k:
            while True:
                bounds = mind[pool]
                j = int(np.argmax(bounds))
                best = float(bounds[j])
                if best <= thr and thr > -np.inf:      # a point outside the pool may win or tie
                    pool, thr = rebuild()
                    continue
                i = int(pool[j])
                if upto[i] == nC:
                    break
                if len(pool) > batch:
                    top = pool[np.argpartition(bounds, len(pool) - batch)[len(pool) - batch:]]
                else:
                    top = pool
                stale = top[upto[top] < nC]
                if not (stale == i).any():    # ties at the cut may leave the argmax out of the top
                    stale = np.append(stale, i)
                _refresh(X, sq, C, csq, nC, stale, upto, mind)
            if best <= 0:
                break
            picks.append(i)
            gains.append(best)
            C[nC] = X[i]
            csq[nC] = sq[i]
            nC += 1
            mind[i] = 0.0
            upto[i] = nC
            bar.update(1)
    out = np.asarray(picks[:k], dtype=np.int64)
    return (out, np.asarray(gains[:k])) if return_gains else out
