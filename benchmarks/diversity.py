"""Diversity selectors at scale: time, peak memory, and the ratio against the naive versions.

    python benchmarks/diversity.py                 # 1,000,000 x 384, k-center 10,000 (the issue's target)
    python benchmarks/diversity.py --n 200000 --k 2000 --quick
    python benchmarks/diversity.py --device cuda   # k-center as the plain greedy on the GPU
    python benchmarks/diversity.py --knn-compare --n 200000   # the k-NN graph: torch IVF vs faiss
    PYTHONPATH=/tmp/apr:/tmp/sml python benchmarks/diversity.py --compare 10000   # vs apricot-select, submodlib

Data: synthetic embeddings shaped like sentence embeddings (unit vectors in 384-d drawn around
2,000 topic centres with varied spread), since embedding a million real texts takes hours on a CPU.
Uniform random vectors in 384-d are the worst case for any triangle-inequality pruning (all
distances concentrate); ``--uniform`` measures that case too.
The naive k-center (one full pass over the data per pick) is timed on its first picks and its
per-pick cost extrapolated (it is constant per pick); agreement is checked on a smaller instance
where the naive greedy runs to the end (identical picks, or the covering radius after each pick).
"""
from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from tunesift.selectors.kcenter import kcenter_greedy, kcenter_naive, kcenter_torch  # noqa: E402
from tunesift.selectors.neighbors import knn_graph  # noqa: E402
from tunesift.selectors.submodular import dpp_greedy, facility_location, knn_similarity  # noqa: E402


def embeddings(n: int, d: int, uniform: bool, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if uniform:
        X = rng.standard_normal((n, d), dtype=np.float32)
    else:
        centres = rng.standard_normal((2000, d), dtype=np.float32)
        spread = rng.uniform(0.2, 0.8, size=2000).astype(np.float32)
        lab = rng.integers(0, 2000, size=n)
        X = np.empty((n, d), dtype=np.float32)
        for s in range(0, n, 100_000):
            l = lab[s:s + 100_000]
            X[s:s + 100_000] = centres[l] + spread[l, None] * rng.standard_normal((len(l), d), dtype=np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def peak_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=384)
    ap.add_argument("--k", type=int, default=10_000)
    ap.add_argument("--uniform", action="store_true")
    ap.add_argument("--naive-picks", type=int, default=30)
    ap.add_argument("--quick", action="store_true", help="skip the FL and DPP parts")
    ap.add_argument("--device", default=None, help="cuda: time the torch k-center on the GPU instead")
    ap.add_argument("--compare", type=int, default=0, help="N: compare facility location (k = N/10) with "
                    "apricot-select's and submodlib's lazy greedy on the same precomputed kernels (where importable)")
    ap.add_argument("--knn-compare", action="store_true", help="k-NN graph (k=20) with tunesift's torch IVF "
                    "and with faiss's IndexIVFFlat (where installed): build time, recall@20, peak memory")
    args = ap.parse_args()
    if args.knn_compare:
        return knn_compare(args.n, args.d, args.uniform)
    if args.compare:
        return compare_libraries(args.compare, args.d)
    if args.device:
        return gpu(args)

    # exactness on an instance where the naive greedy runs to the end
    Xs = embeddings(50_000, args.d, args.uniform, seed=1)
    t = time.perf_counter(); a = kcenter_greedy(Xs, 500); ta = time.perf_counter() - t
    t = time.perf_counter(); b = kcenter_naive(Xs, 500); tb = time.perf_counter() - t
    X64 = Xs.astype(np.float64)
    s64 = (X64 * X64).sum(1)

    def radii(p):
        m, out = np.full(len(X64), np.inf), []
        for j in p:
            m = np.minimum(m, np.sqrt(np.maximum(s64 - 2 * X64 @ X64[j] + s64[j], 0)))
            out.append(m.max())
        return np.asarray(out)
    rel = np.abs(radii(a) / radii(b) - 1).max()
    print(f"agreement: 50,000 x {args.d}, 500 picks: identical={list(a) == list(b)}, covering radius after each "
          f"pick max rel diff {rel:.1e}; lazy {ta:.1f}s, naive {tb:.1f}s ({tb / ta:.1f}x)")

    X = embeddings(args.n, args.d, args.uniform)
    base = peak_gb()
    print(f"data: {args.n:,} x {args.d} float32 ({X.nbytes / 2**30:.2f} GiB), "
          f"{'uniform' if args.uniform else 'clustered'}; peak RSS so far {base:.2f} GiB")
    t = time.perf_counter()
    kcenter_naive(X, args.naive_picks)
    per_pick = (time.perf_counter() - t) / args.naive_picks
    print(f"naive k-center: {per_pick:.3f}s per pick -> {per_pick * args.k / 60:.1f} min for {args.k:,} (extrapolated)")
    t = time.perf_counter()
    kcenter_greedy(X, args.k)
    tk = time.perf_counter() - t
    print(f"lazy k-center: {args.k:,} picks in {tk:.1f}s ({tk / 60:.2f} min), peak RSS {peak_gb():.2f} GiB, "
          f"{per_pick * args.k / tk:.1f}x the naive greedy")
    if args.quick:
        return
    t = time.perf_counter()
    nbr, vals = knn_graph(X, k=20)          # exact up to 60,000 points, an IVF index above
    tkn = time.perf_counter() - t
    qs = np.random.default_rng(5).choice(args.n, 1000, replace=False)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(nbr[qs], exact_neighbours(X, qs, 20))])
    print(f"k-NN graph (k=20, cosine) on {args.n:,}: {tkn:.1f}s, recall@20 {recall:.4f} against the exact "
          f"neighbours of 1,000 random points; peak RSS {peak_gb():.2f} GiB")
    sp = csc(nbr, vals)
    del nbr, vals
    t = time.perf_counter()
    fl = facility_location(sparse=sp, k=args.k)
    tfl = time.perf_counter() - t
    per_pick = naive_fl_per_pick(sp, 5)
    print(f"sparse facility location: {len(fl):,} picks in {tfl:.1f}s, peak RSS {peak_gb():.2f} GiB; naive greedy "
          f"(every gain each pick) {per_pick:.3f}s per pick -> {per_pick * args.k / 60:.1f} min "
          f"({per_pick * args.k / tfl:.0f}x)")
    m = min(args.n, 50_000)   # what the approximate graph costs the objective, where the exact one is cheap
    ex, ap = knn_similarity(X[:m], k=20, index="exact"), knn_similarity(X[:m], k=20, index="ivf")
    val = lambda p: sparse_value(ex, p)  # noqa: E731
    a, b = facility_location(sparse=ex, k=m // 10), facility_location(sparse=ap, k=m // 10)
    print(f"on {m:,} points, {m // 10:,} picks: objective on the exact k-NN kernel {val(a):.2f} (picked on it) vs "
          f"{val(b):.2f} (picked on the IVF graph), ratio {val(b) / val(a):.5f}")
    t = time.perf_counter()
    dpp_greedy(X[:50_000], 1000)
    print(f"DPP greedy: 1,000 of {min(args.n, 50_000):,} in {time.perf_counter() - t:.1f}s, peak RSS {peak_gb():.2f} GiB")


def _knn_child(n: int, d: int, uniform: bool, index: str, conn) -> None:
    X = embeddings(n, d, uniform)
    base = peak_gb()
    t = time.perf_counter()
    nbr, _ = knn_graph(X, k=20, index=index)
    took = time.perf_counter() - t
    qs = np.random.default_rng(5).choice(n, 1000, replace=False)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(nbr[qs], exact_neighbours(X, qs, 20))])
    conn.send((took, recall, peak_gb() - base))


def knn_compare(n: int, d: int, uniform: bool) -> None:
    """Each index in a fresh process, so that peak memory is its own (above the data's)."""
    import multiprocessing as mp
    ctx = mp.get_context("spawn")
    for index in ("ivf", "faiss"):
        if index == "faiss":
            try:
                import faiss  # noqa: F401
            except ImportError:
                print("faiss: not installed (pip install faiss-cpu)")
                continue
        a, b = ctx.Pipe()
        p = ctx.Process(target=_knn_child, args=(n, d, uniform, index, b))
        p.start()
        took, recall, mem = a.recv()
        p.join()
        print(f"k-NN graph (k=20, cosine, {index}) on {n:,} x {d} {'uniform' if uniform else 'clustered'}: "
              f"{took:.1f}s, recall@20 {recall:.4f} (1,000 random points vs exact), peak RSS above the data "
              f"{mem:.2f} GiB")


def csc(nbr: np.ndarray, vals: np.ndarray):
    N, k = nbr.shape
    cols = nbr.ravel()
    order = np.argsort(cols, kind="stable")
    return np.searchsorted(cols[order], np.arange(N + 1)), np.repeat(np.arange(N), k)[order], vals.ravel()[order]


def naive_fl_per_pick(sp, picks: int) -> float:
    """The plain greedy on the sparse kernel: every candidate's gain recomputed (vectorised) at each pick."""
    ip, r, v = sp
    cur = np.zeros(len(ip) - 1)
    nz = np.flatnonzero(ip[1:] > ip[:-1])
    t = time.perf_counter()
    for _ in range(picks):
        g = np.zeros(len(ip) - 1)
        g[nz] = np.add.reduceat(np.maximum(v - cur[r], 0), ip[:-1][nz])
        a = int(np.argmax(g))
        cur[r[ip[a]:ip[a + 1]]] = np.maximum(cur[r[ip[a]:ip[a + 1]]], v[ip[a]:ip[a + 1]])
    return (time.perf_counter() - t) / picks


def sparse_value(sp, picks) -> float:
    """Facility-location objective of ``picks`` on a sparse kernel: sum over points of the best cover."""
    ip, r, v = sp
    cur = np.zeros(len(ip) - 1)
    for a in picks:
        cur[r[ip[a]:ip[a + 1]]] = np.maximum(cur[r[ip[a]:ip[a + 1]]], v[ip[a]:ip[a + 1]])
    return float(cur.sum())


def exact_neighbours(X: np.ndarray, qs: np.ndarray, k: int) -> np.ndarray:
    import torch
    Xn = torch.from_numpy(X / np.linalg.norm(X, axis=1, keepdims=True))
    return np.concatenate([torch.topk(Xn[torch.from_numpy(qs[s:s + 100])] @ Xn.T, k, dim=1).indices.numpy()
                           for s in range(0, len(qs), 100)])   # 100 rows at a time: bounded memory


def _first_diff(a, b):
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def compare_libraries(n: int, d: int) -> None:
    """Facility location against apricot-select and submodlib (each when importable), on the same
    precomputed kernels: dense cosine (clipped at 0) on n points, and a 20-NN sparse kernel."""
    X = embeddings(n, d, False, seed=2)
    S = np.maximum(X.astype(np.float64) @ X.T.astype(np.float64), 0)
    k = n // 10
    val = lambda p: S[:, p].max(1).sum()  # noqa: E731
    t = time.perf_counter()
    ours = facility_location(S, k)
    t_ours = time.perf_counter() - t
    print(f"dense facility location, cosine kernel, {n:,} points, {k:,} picks: tunesift {t_ours:.2f}s, "
          f"objective {val(ours):.6f}")
    try:
        import apricot
        apricot.FacilityLocationSelection(5, metric="precomputed", optimizer="lazy", verbose=False).fit(S[:50, :50])
        sel = apricot.FacilityLocationSelection(k, metric="precomputed", optimizer="lazy", verbose=False)
        t = time.perf_counter()   # numba compiled above: time the selection, not the JIT
        sel.fit(S)
        t_apr = time.perf_counter() - t
        theirs = np.asarray(sel.ranking)
        print(f"  apricot {apricot.__version__} lazy: {t_apr:.2f}s (tunesift {t_apr / t_ours:.2f}x as fast); picks "
              f"identical up to pick {_first_diff(ours, theirs)}; objective {val(theirs):.6f}")
    except ImportError:
        print("  apricot-select not importable: skipped")
    try:
        from submodlib import FacilityLocationFunction
    except ImportError:
        print("  submodlib not importable: skipped")
        return
    S32 = S.astype(np.float32)
    t = time.perf_counter()
    fn = FacilityLocationFunction(n=n, mode="dense", sijs=S32, separate_rep=False)
    res = fn.maximize(budget=k, optimizer="LazyGreedy", show_progress=False)
    t_sml = time.perf_counter() - t
    theirs = [i for i, _ in res]
    print(f"  submodlib LazyGreedy (float32 kernel, its setup included): {t_sml:.2f}s (tunesift {t_sml / t_ours:.2f}x "
          f"as fast); picks identical up to pick {_first_diff(ours, theirs)}; objective {val(theirs):.6f}")
    from scipy import sparse as sps
    ip, rows, vals = knn_similarity(X, k=20, index="exact")
    cols = np.repeat(np.arange(n), np.diff(ip))
    M = sps.csr_matrix((vals, (rows, cols)), shape=(n, n))   # M[v, a] = s(v, a) for a among v's 20 NN
    # submodlib's sparse mode reads a k-NN kernel as symmetric (its picks match tunesift's on
    # max(M, M.T) exactly, not on M): give both that kernel
    K = M.maximum(M.T).tocsc()
    sp = (K.indptr, K.indices.astype(np.int64), K.data.astype(np.float32))
    t = time.perf_counter()
    ours = facility_location(sparse=sp, k=k)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    fn = FacilityLocationFunction(n=n, mode="sparse", sijs=K.tocsr(), num_neighbors=20)
    res = fn.maximize(budget=k, optimizer="LazyGreedy", show_progress=False)
    t_sml = time.perf_counter() - t
    theirs = [i for i, _ in res]
    print(f"sparse facility location, symmetrised 20-NN kernel, {n:,} points, {k:,} picks: tunesift {t_ours:.2f}s, "
          f"submodlib {t_sml:.2f}s (tunesift {t_sml / t_ours:.0f}x as fast); picks identical up to pick "
          f"{_first_diff(ours, theirs)}; objective {sparse_value(sp, ours):.4f} vs {sparse_value(sp, theirs):.4f}")


def gpu(args) -> None:
    import torch
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    Xs = embeddings(50_000, args.d, args.uniform, seed=1)
    a = kcenter_torch(Xs, 500, device=args.device)
    b = kcenter_naive(Xs, 500)
    print(f"agreement ({torch.cuda.get_device_name() if cuda else args.device}): 50,000 x {args.d}, 500 picks, GPU vs CPU plain greedy: "
          f"identical={list(a) == list(b)} (first difference at pick "
          f"{next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), None)})")
    X = embeddings(args.n, args.d, args.uniform)
    kcenter_torch(X, 10, device=args.device)   # warm-up (CUDA context, kernels)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t = time.perf_counter()
    kcenter_torch(X, args.k, device=args.device)
    sync()
    tk = time.perf_counter() - t
    print(f"GPU k-center: {args.k:,} picks from {args.n:,} x {args.d} in {tk:.2f}s ({tk / args.k * 1e3:.2f} ms/pick, "
          f"{X.nbytes * args.k / tk / 1e12:.2f} TB/s of data read), peak device memory "
          f"{torch.cuda.max_memory_allocated() / 2**30 if cuda else float('nan'):.2f} GiB")


if __name__ == "__main__":
    main()
