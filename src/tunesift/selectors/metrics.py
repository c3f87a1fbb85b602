"""Diversity of a selection next to its pool's: log-det, mean pairwise distance, coverage radius,
Vendi score.  Pairwise quantities use a fixed-seed sample of at most ``sample`` rows, so the cost is
bounded at any pool size; the coverage radius (largest distance from a pool point to its nearest
selected point) is exact, computed in chunks."""
from __future__ import annotations

import numpy as np

from .submodular import logdet_diversity


def _norm(X):
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)


def vendi_score(X: np.ndarray) -> float:
    """exp(entropy of the eigenvalues of K/n), K the cosine kernel (Friedman & Dieng, 2023)."""
    Xn = _norm(np.asarray(X, np.float64))
    # K/n and Xn^T Xn / n share their non-zero eigenvalues; the d x d form is cheaper for n > d
    M = (Xn.T @ Xn) / len(Xn) if len(Xn) > Xn.shape[1] else (Xn @ Xn.T) / len(Xn)
    w = np.clip(np.linalg.eigvalsh(M), 0, None)
    w = w[w > 1e-12]
    return float(np.exp(-(w * np.log(w)).sum()))


def diversity_report(X: np.ndarray, picks: np.ndarray, sample: int = 2000, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    X = np.asarray(X, np.float32)

    def stats(idx):
        idx = np.asarray(idx)
        if len(idx) > sample:
            idx = np.sort(rng.choice(idx, sample, replace=False))
        Y = X[idx]
        sq = (Y * Y).sum(1)
        D = np.sqrt(np.maximum(sq[:, None] - 2 * Y @ Y.T + sq[None, :], 0))
        n = len(idx)
        mean_pd = float(D.sum() / (n * (n - 1))) if n > 1 else 0.0
        return {"n": int(len(idx)), "logdet": logdet_diversity(Y) if n > 1 else 0.0,
                "mean_pairwise_distance": mean_pd, "vendi": vendi_score(Y)}

    picks = np.asarray(picks, dtype=np.int64)
    out = {"pool": stats(np.arange(len(X))), "selection": stats(picks) if len(picks) else {}}
    if len(picks):
        P = X[picks]
        psq = (P * P).sum(1)
        radius = 0.0
        for a in range(0, len(X), 16384):
            B = X[a:a + 16384]
            d2 = (B * B).sum(1)[:, None] - 2 * B @ P.T + psq[None, :]
            radius = max(radius, float(np.sqrt(max(d2.min(axis=1).max(), 0))))
        out["selection"]["coverage_radius"] = radius
        out["note"] = f"pairwise figures on a seeded sample of at most {sample} rows"
    return out
