"""QDIT against the paper's objective: alpha * q(a) + (1 - alpha) * gain of d, d = coverage / |V|."""
import json

import numpy as np

import tunesift

rng = np.random.default_rng(3)
VECS = rng.normal(size=(12, 6))
RECS = [{"instruction": f"task {i}", "input": "", "output": "ok", "q": float(v)}
        for i, v in enumerate(rng.uniform(0, 10, 12))]


class FixedEmbedder:
    name = "fixed"

    def encode(self, texts, desc=""):
        return np.array([VECS[int(t.split()[1])] for t in texts])


def paper_greedy(q, k, alpha, scale):
    """Plain greedy: for every candidate, the objective with it minus without it."""
    n = len(VECS)
    unit = VECS / np.linalg.norm(VECS, axis=1, keepdims=True)

    def d(A):
        if not A:
            return 0.0
        return sum(max(0.0, max(float(unit[v] @ unit[a]) for a in A)) for v in range(n)) / scale

    picks = []
    for _ in range(k):
        best, arg = -np.inf, None
        for a in range(n):
            if a in picks:
                continue
            g = alpha * q[a] + (1 - alpha) * (d(picks + [a]) - d(picks))
            if g > best + 1e-12:
                best, arg = g, a
        picks.append(arg)
    return picks


def test_qdit_normalises_coverage_by_the_pool(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(RECS))
    kw = dict(embedder=FixedEmbedder(), use_cache=False, progress=False, quality="q", field="instruction")
    res = tunesift.select(p, "qdit", 4, alpha=0.5, **kw)
    q = res.table["quality"].to_numpy()
    want = paper_greedy(q, 4, 0.5, scale=len(VECS))
    assert list(res.selected_indices) == want
    old = tunesift.select(p, "qdit", 4, alpha=0.5, diversity_scale="sum", **kw)
    assert list(old.selected_indices) == paper_greedy(q, 4, 0.5, scale=1.0)
    assert list(old.selected_indices) != want     # the unnormalised sum lets coverage dominate at alpha 0.5
