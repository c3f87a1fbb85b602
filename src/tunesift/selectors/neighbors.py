"""k-nearest-neighbour graphs for sparse kernels: exact (blocked) or an inverted-file index.

The exact graph is O(N^2 d): fine at tens of thousands of points, hours of products at a million on
two cores.  The inverted-file (IVF) index, as in faiss's IndexIVFFlat, clusters the points into
``n_lists`` cells by k-means and compares each cell's points only with the points of the cells
nearest to it (up to a quota of ``n_probe`` average cells' worth): about N * n_probe * N / n_lists
products instead of N^2.  It is approximate; ``benchmarks/diversity.py`` prints its recall against
the exact graph.  ``index="faiss"`` builds the same kind of index with faiss (``IndexIVFFlat``, cells
trained on the same sample) where faiss-cpu is installed (``tunesift[faiss]``);
``benchmarks/diversity.py --knn-compare`` measures both (docs/benchmarks.md).
"""
from __future__ import annotations

import numpy as np

from ..data.errors import TunesiftError
from ..models.progress import progress_bar, wanted
from .cluster import kmeans
from .kcenter import _check

EXACT_UP_TO = 60_000     # ``index="auto"``: above this many points the exact graph takes minutes


def _prepare(X: np.ndarray, metric: str):
    """Rows and a per-candidate offset such that ``X_q @ Y.T + off`` ranks neighbours by similarity."""
    import torch

    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        # sentence embeddings usually come normalised: no second copy of a 1.5 GB matrix then
        Xn = X if np.abs(norms - 1).max() < 1e-6 else X / np.maximum(norms, 1e-12)
        T = torch.from_numpy(np.ascontiguousarray(Xn, dtype=np.float32))
        return T, torch.zeros(len(X))
    if metric == "euclidean":
        T = torch.from_numpy(X)
        return T, -0.5 * (T * T).sum(1)       # x.y - |y|^2/2 = (|x|^2 - d^2)/2: same order as -d
    raise TunesiftError("metric must be cosine or euclidean")


def _to_similarity(T, q_idx, nbr, score, metric: str, dim: int, distances: bool = False):
    """The kernel's similarity for the chosen neighbours.  Euclidean distances are recomputed as
    ||x - y|| (k per point, cheap): the |x|^2 - 2x.y + |y|^2 expansion that ranks them loses
    ~1e-3 absolute to float32 cancellation near zero."""
    import torch

    if metric == "cosine":
        return score
    nb = torch.as_tensor(nbr)
    d = (T[q_idx][:, None, :] - T[nb]).norm(dim=2)
    return d if distances else (-d / dim).exp()


def _knn_exact(T, off, k: int, metric: str, chunk: int, distances: bool = False, bar=None):
    import torch

    N, dim = T.shape
    nbr = np.empty((N, k), dtype=np.int64)
    val = np.empty((N, k), dtype=np.float32)
    for s in range(0, N, chunk):
        q = torch.arange(s, min(s + chunk, N))
        score = T[q] @ T.T + off[None, :]
        v, i = torch.topk(score, k, dim=1)    # 30x faster than numpy's argpartition here
        nbr[s:s + len(q)] = i.numpy()
        val[s:s + len(q)] = _to_similarity(T, q, i, v, metric, dim, distances).numpy()
        bar.update(len(q))
    return nbr, val


def _knn_ivf(T, off, k: int, metric: str, n_lists: int, n_probe: int, seed: int, distances: bool = False,
             bar=None):
    import torch

    N, dim = T.shape
    rng = np.random.default_rng(seed)
    train = rng.choice(N, size=min(N, max(40 * n_lists, 50_000)), replace=False)
    # Cells as faiss trains its coarse quantiser: Lloyd from random points, a few iterations; they only
    # have to be compact, and k-means++ seeding cost more than the search here.
    _, C = kmeans(T[torch.from_numpy(np.sort(train))].numpy(), n_lists, seed=seed, iters=10, init="random", tol=0.0)
    Cn = torch.from_numpy(C)
    csq = (Cn * Cn).sum(1)
    lists = np.empty(N, dtype=np.int64)
    for s in range(0, N, 65536):              # nearest centroid (euclidean) for every point
        B = T[s:s + 65536]
        lists[s:s + len(B)] = torch.argmax(B @ Cn.T - 0.5 * csq[None, :], dim=1).numpy()
    order = np.argsort(lists, kind="stable")
    bounds = np.searchsorted(lists[order], np.arange(n_lists + 1))
    # Cells probed per cell: the nearest ones (itself first) until they hold n_probe average cells'
    # worth of points.  A fixed count of cells let big cells probe big cells: 3.5x the products
    # at 200,000 points and unbounded at a million (cell sizes vary 7x on clustered data).
    sizes = np.diff(bounds)
    quota = n_probe * N / n_lists
    near = torch.topk(Cn @ Cn.T - 0.5 * csq[None, :], min(4 * n_probe, n_lists), dim=1).indices.numpy()
    probe = []
    for c in range(n_lists):
        row = np.concatenate([[c], near[c][near[c] != c]])
        probe.append(row[: int(np.searchsorted(np.cumsum(sizes[row]), quota)) + 1])
    nbr = np.empty((N, k), dtype=np.int64)
    val = np.empty((N, k), dtype=np.float32)
    for c in range(n_lists):
        q = order[bounds[c]:bounds[c + 1]]
        if not len(q):
            continue
        cand = np.concatenate([order[bounds[j]:bounds[j + 1]] for j in probe[c]])
        kk = min(k, len(cand))
        ct = torch.from_numpy(cand)
        score = T[torch.from_numpy(q)] @ T[ct].T
        if metric != "cosine":
            score += off[ct][None, :]
        v, i = torch.topk(score, kk, dim=1)
        got = cand[i.numpy()]
        sim = _to_similarity(T, torch.from_numpy(q), got, v, metric, dim, distances).numpy()
        if kk < k:   # fewer candidates than k: repeat the last neighbour (at similarity 0 in a kernel)
            got = np.pad(got, ((0, 0), (0, k - kk)), mode="edge")
            sim = np.pad(sim, ((0, 0), (0, k - kk)), mode="edge" if distances else "constant")
        nbr[q], val[q] = got, sim
        bar.update(len(q))
    return nbr, val


def _faiss():
    try:
        import faiss   # optional extra (tunesift[faiss]); only index="faiss" imports it
    except ImportError:
        raise TunesiftError('index="faiss" needs faiss-cpu: pip install "tunesift[faiss]"') from None
    return faiss


def _knn_faiss(T, k: int, metric: str, n_lists: int, n_probe: int, seed: int, distances: bool = False):
    """faiss's IndexIVFFlat (inner product on the rows ``_prepare`` gave, or L2): ``n_lists`` cells
    trained on a sample as ours are, ``n_probe`` nearest cells searched per query."""
    faiss = _faiss()
    X = T.numpy()
    N, dim = X.shape
    quant = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quant, dim, n_lists,
                               faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2)
    index.cp.seed = seed
    rng = np.random.default_rng(seed)
    train = np.sort(rng.choice(N, size=min(N, max(40 * n_lists, 50_000)), replace=False))
    index.train(np.ascontiguousarray(X[train]))
    index.add(X)
    index.nprobe = n_probe
    score, nbr = index.search(X, k)
    miss = nbr < 0                      # fewer candidates than k in the probed cells: repeat the last found
    if miss.any():
        for j in range(1, k):
            nbr[:, j] = np.where(miss[:, j], nbr[:, j - 1], nbr[:, j])
            score[:, j] = np.where(miss[:, j], 0.0 if not distances else score[:, j - 1], score[:, j])
    if metric == "cosine":
        return nbr.astype(np.int64), score.astype(np.float32)
    import torch
    val = _to_similarity(T, torch.arange(N), nbr, None, metric, dim, distances).numpy()
    return nbr.astype(np.int64), val.astype(np.float32)


def knn_graph(X: np.ndarray, k: int = 20, metric: str = "cosine", index: str = "auto", n_lists: int | None = None,
              n_probe: int = 8, seed: int = 0, chunk: int = 1024, distances: bool = False,
              progress: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Each point's ``k`` most similar points (itself included) and the similarities: (N x k ids,
    N x k values).  ``metric``: cosine, or submodlib's exp(-||x - y|| / dim).  ``index``: exact, ivf,
    faiss (faiss's IVF index, its ``n_probe`` counted in cells), or auto (exact up to 60,000 points).  IVF: ``n_lists`` cells (default sqrt(N)); each cell's points
    are compared with the nearest cells holding ``n_probe`` average cells' worth of points;
    deterministic per ``seed``.  ``distances`` (euclidean only): return ||x - y|| instead of the kernel.
    ``progress``: report points done (None: as the ``tunesift`` logger is set; faiss searches in one call)."""
    import torch

    X = _check(X)
    N = len(X)
    k = min(k, N)
    if index not in ("auto", "exact", "ivf", "faiss"):
        raise TunesiftError("index must be auto, exact, ivf or faiss")
    if distances and metric != "euclidean":
        raise TunesiftError("distances=True needs metric='euclidean'")
    T, off = _prepare(X, metric)
    bar = progress_bar(total=N, desc="k-NN graph", unit="pt", disable=not wanted(progress))
    with bar, torch.inference_mode():
        if index == "exact" or (index == "auto" and N <= EXACT_UP_TO):
            return _knn_exact(T, off, k, metric, chunk, distances, bar)
        n_lists = int(n_lists or max(1, round(np.sqrt(N))))
        if index == "faiss":
            return _knn_faiss(T, k, metric, min(n_lists, N), n_probe, seed, distances)
        return _knn_ivf(T, off, k, metric, min(n_lists, N), n_probe, seed, distances, bar)
