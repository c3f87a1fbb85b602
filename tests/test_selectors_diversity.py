"""Every greedy against a naive implementation written here, on small random inputs."""

import numpy as np
import pytest

from tunesift.data import TunesiftError
from tunesift.selectors.kcenter import kcenter_greedy, kcenter_naive, kcenter_torch
from tunesift.selectors.submodular import (dpp_greedy, facility_location, facility_location_value, knn_similarity,
                                           logdet_diversity, similarity)


def naive_kcenter(X, k, first=0):
    """Written from the definition: full distance matrix, farthest point from the chosen set."""
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    picks = [first]
    while len(picks) < k:
        picks.append(int(np.argmax(D[:, picks].min(axis=1))))
    return picks


@pytest.mark.parametrize("seed", range(6))
def test_kcenter_pruned_matches_naive(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(300, 8)).astype(np.float32)
    if seed % 2:
        X[:100] *= 0.1       # a dense cluster: many groups get pruned
    k = 40
    fast = kcenter_greedy(X, k, first=seed, batch=8)   # a small batch exercises the lazy re-checks
    assert list(fast) == list(kcenter_naive(X, k, first=seed))
    ref = naive_kcenter(X.astype(np.float64), k, first=seed)
    # the same covering radius as the definition (float32 vs float64 may swap exact ties)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    assert D[:, fast].min(1).max() == pytest.approx(D[:, ref].min(1).max(), rel=1e-5)


@pytest.mark.parametrize("pool_size", [1, 7, 64])
def test_kcenter_small_pool_rebuilds_and_ties(pool_size):
    """A pool smaller than the frontier forces rebuilds; integer grid points make exact distance
    ties, which must go to the lowest index as in the plain greedy."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(500, 6)).astype(np.float32)
    assert list(kcenter_greedy(X, 60, batch=4, pool_size=pool_size)) == list(kcenter_naive(X, 60))
    G = np.stack(np.meshgrid(*[np.arange(4.0)] * 3), -1).reshape(-1, 3).astype(np.float32)
    assert list(kcenter_greedy(G, 30, batch=3, pool_size=pool_size)) == list(kcenter_naive(G, 30))


def test_kcenter_seed_set_and_duplicates():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 4)).astype(np.float32)
    picks = kcenter_greedy(X, 5, seeds=[3, 7])
    assert 3 not in picks and 7 not in picks and len(picks) == 5
    assert list(picks) == list(kcenter_naive(X, 5, seeds=[3, 7]))
    dup = np.repeat(X[:3], 10, axis=0)
    assert len(kcenter_greedy(dup, 10)) == 3     # stops when every point is covered exactly


@pytest.mark.parametrize("seed", range(3))
def test_kcenter_torch_matches_naive(seed):
    """The GPU path (run here on the CPU device) is the plain greedy: same picks, same gains."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 16)).astype(np.float32)
    picks, gains = kcenter_torch(X, 30, first=seed, device="cpu", chunk=64, return_gains=True)
    assert list(picks) == list(kcenter_naive(X, 30, first=seed))
    _, lazy_gains = kcenter_greedy(X, 30, first=seed, return_gains=True)
    np.testing.assert_allclose(gains[1:], lazy_gains[1:], rtol=1e-5)
    assert list(kcenter_torch(X, 5, seeds=[3, 7], device="cpu")) == list(kcenter_naive(X, 5, seeds=[3, 7]))
    assert len(kcenter_torch(np.repeat(X[:3], 10, axis=0), 10, device="cpu")) == 3


def test_bad_embeddings():
    X = np.ones((5, 3), np.float32)
    X[2, 1] = np.nan
    with pytest.raises(TunesiftError, match="NaN"):
        kcenter_greedy(X, 2)
    with pytest.raises(TunesiftError):
        kcenter_greedy(np.zeros((0, 3)), 2)


def naive_fl(S, k):
    picks = []
    for _ in range(k):
        gains = [facility_location_value(S, picks + [a]) - facility_location_value(S, picks) if a not in picks else -1
                 for a in range(S.shape[1])]
        picks.append(int(np.argmax(gains)))
    return picks


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("seed", range(3))
def test_facility_location_lazy_equals_naive(metric, seed):
    X = np.random.default_rng(seed).normal(size=(60, 5)).astype(np.float32)
    S = similarity(X, metric=metric)
    lazy = facility_location(S, 8)
    naive = naive_fl(S, 8)
    assert facility_location_value(S, lazy) == pytest.approx(facility_location_value(S, naive), rel=1e-6)


def test_sparse_fl_equals_dense_on_the_same_knn_kernel():
    X = np.random.default_rng(1).normal(size=(80, 6)).astype(np.float32)
    indptr, rows, vals = knn_similarity(X, k=10)
    dense = np.zeros((80, 80), np.float32)
    for a in range(80):
        dense[rows[indptr[a]:indptr[a + 1]], a] = vals[indptr[a]:indptr[a + 1]]
    assert (np.count_nonzero(dense, axis=1) <= 10).all()
    sp = facility_location(sparse=(indptr, rows, vals), k=12)
    de = facility_location(dense, 12)
    assert facility_location_value(dense, sp) == pytest.approx(facility_location_value(dense, de), rel=1e-6)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_knn_graph_exact_and_ivf(metric):
    """The exact graph against a brute-force written here; the IVF index finds most of the same
    neighbours on clustered data and reports their true similarities."""
    from tunesift.selectors.neighbors import knn_graph

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(30, 16))
    X = (centres[rng.integers(0, 30, 3000)] + 0.3 * rng.normal(size=(3000, 16))).astype(np.float32)
    X64 = X.astype(np.float64)
    if metric == "cosine":
        Xn = X64 / np.linalg.norm(X64, axis=1, keepdims=True)
        S = Xn @ Xn.T
    else:
        sq = (X64 ** 2).sum(1)
        S = np.exp(-np.sqrt(np.maximum(sq[:, None] - 2 * X64 @ X64.T + sq[None], 0)) / 16)
    truth = np.argsort(-S, axis=1, kind="stable")[:, :10]
    nbr, val = knn_graph(X, 10, metric=metric, index="exact", chunk=700)
    assert np.mean([len(set(a) & set(b)) for a, b in zip(nbr, truth)]) / 10 > 0.999
    np.testing.assert_allclose(val, np.take_along_axis(S, nbr, 1), rtol=1e-4, atol=1e-5)
    nbr, val = knn_graph(X, 10, metric=metric, index="ivf", n_lists=40, n_probe=4)
    assert (nbr[:, 0] == np.arange(3000)).mean() > 0.99           # itself first
    assert np.mean([len(set(a) & set(b)) for a, b in zip(nbr, truth)]) / 10 > 0.95
    np.testing.assert_allclose(val, np.take_along_axis(S, nbr, 1), rtol=1e-4, atol=1e-5)
    again, _ = knn_graph(X, 10, metric=metric, index="ivf", n_lists=40, n_probe=4)
    assert (again == nbr).all()                                   # deterministic per seed
    with pytest.raises(TunesiftError):
        knn_graph(X, 10, index="hnsw")


def naive_dpp(L, k):
    picks = []
    for _ in range(k):
        best, val = None, -np.inf
        for a in range(len(L)):
            if a in picks:
                continue
            idx = picks + [a]
            s, v = np.linalg.slogdet(L[np.ix_(idx, idx)])
            if s > 0 and v > val + 1e-12:
                best, val = a, v
        picks.append(best)
    return picks


@pytest.mark.parametrize("seed", range(3))
def test_dpp_greedy_equals_naive_logdet_greedy(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 12)).astype(np.float32)
    q = rng.uniform(0.5, 2.0, size=40)
    Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
    L = (q[:, None] * (Xn @ Xn.T) * q[None, :]).astype(np.float64)
    fast = dpp_greedy(X, 8, quality=q)
    naive = naive_dpp(L, 8)
    ld = lambda p: np.linalg.slogdet(L[np.ix_(p, p)])[1]
    assert ld(list(fast)) == pytest.approx(ld(naive), rel=1e-6)
    assert logdet_diversity(X[fast]) > logdet_diversity(X[:8]) - 5   # sanity: a real number


def test_knn_handles_k_larger_than_pool():
    X = np.eye(3, dtype=np.float32)
    indptr, rows, vals = knn_similarity(X, k=20)
    assert indptr[-1] == 9


def test_diversity_report_and_vendi():
    from tunesift.selectors.metrics import diversity_report, vendi_score
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 16)).astype(np.float32)
    assert vendi_score(np.repeat(X[:1], 10, axis=0)) == pytest.approx(1.0, abs=1e-6)   # all identical: 1
    E = np.eye(8, dtype=np.float32)
    assert vendi_score(E) == pytest.approx(8.0, rel=1e-6)                             # orthogonal: n
    picks = kcenter_greedy(X, 20)
    rep = diversity_report(X, picks)
    D = np.sqrt(((X[:, None] - X[None, picks]) ** 2).sum(-1))
    assert rep["selection"]["coverage_radius"] == pytest.approx(D.min(1).max(), rel=1e-4)
    assert rep["selection"]["mean_pairwise_distance"] > rep["pool"]["mean_pairwise_distance"]


def _greedy(f, n, k):
    picks = []
    for _ in range(k):
        best = max((a for a in range(n) if a not in picks), key=lambda a: (f(picks + [a]) - f(picks), -a))
        picks.append(best)
    return picks


def test_flmi_and_flcg_match_their_definitions():
    from tunesift.selectors.submodular import flcg, flmi
    rng = np.random.default_rng(3)
    X = rng.normal(size=(40, 6))
    Q = rng.normal(size=(7, 6))
    P = rng.normal(size=(5, 6))
    S = np.maximum(similarity(X), 0)
    Sq = np.maximum(similarity(Q, X), 0)       # |Q| x N
    Sp = np.maximum(similarity(X, P), 0)       # N x |P|

    def mi(A, eta=0.5):
        if not A:
            return 0.0
        return Sq[:, A].max(axis=1).sum() + eta * Sq[:, A].max(axis=0).sum()

    def cg(A, nu=0.8):
        m = S[:, A].max(axis=1) if A else np.zeros(len(S))
        return np.maximum(m - nu * Sp.max(axis=1), 0).sum()

    assert list(flmi(Sq, 6, eta=0.5)) == _greedy(mi, 40, 6)
    assert list(flcg(S, Sp, 6, nu=0.8)) == _greedy(cg, 40, 6)
