"""IterSelectTune: rounds of judged labels, the classifier, and the final score's formula."""
import numpy as np

import tunesift
from tunesift.methods.iterselecttune import IterSelectTune, fit_logistic, predict_logistic


def test_logistic_regression_separates_and_matches_a_known_fit():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    y = (X[:, 0] - 0.5 * X[:, 1] + 0.2 > 0).astype(float)
    w = fit_logistic(X, y, l2=1e-3)
    assert ((predict_logistic(w, X) > 0.5) == y).mean() > 0.97
    # the regularised optimum: gradient zero
    A = np.hstack([X, np.ones((200, 1))])
    p = predict_logistic(w, X)
    reg = 1e-3 * w.copy()
    reg[-1] = 0
    np.testing.assert_allclose(A.T @ (p - y) + reg, 0, atol=1e-6)


def test_spread_is_round_robin_by_priority():
    clusters = np.array([0, 0, 0, 1, 1, 2])
    prio = np.array([0.1, 0.9, 0.5, 0.3, 0.8, 0.2])
    out = IterSelectTune._spread(np.arange(6), clusters, prio, 5)
    assert list(out) == [1, 4, 5, 2, 3]


def test_iterselecttune_score_is_the_weighted_sum(tiny_llama, tiny_embedder, alpaca_file, monkeypatch):
    """A random tiny judge scores every answer alike, so no example would be labelled hard and the
    classifier and the similarity-to-hard term would go untested: a deterministic stand-in judge
    (the judge itself is tested with PairJudge) gives both labels."""
    monkeypatch.setattr(IterSelectTune, "_judge_scores",
                        lambda self, ctx, questions, answers: np.array([len(a) % 5 for a in answers], float))
    res = tunesift.select(alpaca_file, "iterselecttune", lm=tiny_llama, embedder=tiny_embedder, use_cache=False,
                          progress=False, rounds=2, batch=3, n_clusters=2, max_new_tokens=4, alpha=0.3)
    t = res.table
    assert (t["label"] >= 0).sum() == 6 and set(t["round"]) <= {0, 1, 2}
    assert set(t["label"][t["label"] >= 0]) == {0, 1}           # both classes: the classifier was fit
    np.testing.assert_allclose(t["score"], 0.3 * t["p_hard"] + 0.7 * t["sim_hard"])
    X = tiny_embedder.encode([e.instruction + ("\n" + e.input if e.input else "") for e in res.dataset.examples])
    hard = np.flatnonzero(t["label"] == 1)
    np.testing.assert_allclose(t["sim_hard"], (X @ X[hard].T).max(1), rtol=1e-5)
    lab = np.flatnonzero(t["label"] >= 0)
    w = fit_logistic(X[lab].astype(np.float64), t["label"].to_numpy()[lab].astype(float), 1.0)
    np.testing.assert_allclose(t["p_hard"], predict_logistic(w, X), rtol=1e-4)
    assert len(res.selected_indices) == round(0.2 * len(t))
