"""G2IS: the gradient walk against a plain transcription of the paper's Algorithm 1, the PCA step
against an eigendecomposition of the covariance and against scikit-learn's PCA (the official code's),
and the method's features against LESS's geometry."""
import numpy as np
from sklearn.decomposition import PCA

from tunesift.data import read_dataset
from tunesift.methods import Context, get_method
from tunesift.selectors import Budget
from tunesift.selectors.graph_walk import component_budgets, gradient_walk, principal_directions

from .test_methods import _target_set


def naive_walk(F, comps, budgets, graph, delta, pool):
    chosen, out = set(), []
    for ci, (k, B) in enumerate(zip(comps, budgets)):
        if B == 0:
            continue
        sims = [float(F[i] @ k) for i in range(len(F))]
        ranked = sorted(range(len(F)), key=lambda i: (-sims[i], i))
        anchor = next((i for i in ranked[:pool] if i not in chosen), None)
        if anchor is None:
            anchor = next(i for i in ranked if i not in chosen)
        S = [anchor]
        chosen.add(anchor)
        while len(S) < B:
            g = F[S].sum(0)
            old = abs(g @ k) / np.linalg.norm(g)

            def fits(j):
                if j in chosen or any(F[s] @ F[j] < 0 for s in S):
                    return False
                h = g + F[j]
                return abs(h @ k) / np.linalg.norm(h) >= delta * old
            j = next((j for j in graph[S[-1]] if fits(j)), None)
            if j is None:
                j = next((j for j in ranked if fits(j)), None)
            if j is None:
                break
            S.append(j)
            chosen.add(j)
        out += [(s, ci) for s in S]
    return out


def test_walk_equals_the_algorithm_written_plainly():
    rng = np.random.default_rng(0)
    F = rng.normal(size=(120, 8)) + np.array([1.5] + [0] * 7)      # mostly one side: few conflicts
    F /= np.linalg.norm(F, axis=1, keepdims=True)
    comps, w = principal_directions(rng.normal(size=(10, 8)) + 0.5, keep=0.6)
    B = component_budgets(w, 20)
    assert B.sum() == 20 and len(comps) == len(w) > 1
    graph = np.argsort(-(F @ F.T), axis=1, kind="stable")[:, :10]
    for delta, pool in ((0.8, 1000), (0.95, 3)):
        picks, comp = gradient_walk(F, comps, B, graph, delta=delta, anchor_pool=pool)
        assert list(zip(picks.tolist(), comp.tolist())) == naive_walk(F, comps, B, graph, delta, pool)
        assert len(set(picks.tolist())) == len(picks)


def test_principal_directions_are_the_covariance_eigenvectors():
    rng = np.random.default_rng(1)
    V = rng.normal(size=(30, 6)) @ np.diag([5, 3, 2, 1, 0.5, 0.1])
    comps, w = principal_directions(V, keep=0.9)
    vals, vecs = np.linalg.eigh(np.cov(V.T))
    vals, vecs = vals[::-1], vecs[:, ::-1]
    ratio = vals / vals.sum()
    n = int(np.argmax(np.cumsum(ratio) > 0.9)) + 1           # fewest components whose share exceeds 0.9
    assert len(comps) == n
    np.testing.assert_allclose(np.abs(comps @ vecs[:, :n]), np.eye(n), atol=1e-8)
    np.testing.assert_allclose(w, ratio[:n] / ratio[:n].sum(), rtol=1e-8)
    assert principal_directions(V, keep=0.5, mode="count_ratio")[0].shape == (3, 6)   # int(6 x 0.5)


def test_principal_directions_are_sklearns_pca_signs_included():
    """The official code keeps scikit-learn's components as they come (gradient_walk.py:42-45, 49-52);
    their signs decide which examples the anchors and the fallback rank first."""
    rng = np.random.default_rng(2)
    V = rng.normal(size=(40, 12)) @ np.diag(np.linspace(4, 0.5, 12)) + 0.3
    for keep, mode, n_components in ((0.5, "variance", 0.5), (0.9, "variance", 0.9),
                                     (0.25, "count_ratio", int(12 * 0.25))):
        comps, w = principal_directions(V, keep=keep, mode=mode)
        ref = PCA(n_components=n_components).fit(V)          # as the code calls it: default solver
        np.testing.assert_allclose(comps, ref.components_, atol=1e-8)      # signed, not |.|
        np.testing.assert_allclose(w, ref.explained_variance_ratio_ / ref.explained_variance_ratio_.sum(),
                                   rtol=1e-8)
    # a bare SVD of the centred matrix (the old way) reverses some of these components
    comps, _ = principal_directions(V, keep=0.9)
    vt = np.linalg.svd(V - V.mean(0), full_matrices=False)[2][:len(comps)]
    assert (np.sign(np.einsum("ij,ij->i", vt, comps)) < 0).any()

    # the anchor is the example most aligned with the signed component
    F = rng.normal(size=(60, 12))
    F /= np.linalg.norm(F, axis=1, keepdims=True)
    ref = PCA(n_components=0.5).fit(V)
    B = np.zeros(len(ref.components_), dtype=np.int64)
    B[0] = 1
    graph = np.argsort(-(F @ F.T), axis=1, kind="stable")[:, :5]
    picks, _ = gradient_walk(F, principal_directions(V, keep=0.5)[0], B, graph)
    assert picks.tolist() == [int(np.argmax(F @ ref.components_[0]))]


def test_features_carry_less_geometry(tiny_llama, alpaca_file, tmp_path):
    kw = dict(target=str(_target_set(tmp_path)), epochs=2, lora_r=4, lora_alpha=8, proj_dim=32, warmup_fraction=0.5,
              learning_rate=1e-2, batch_size=2, template="alpaca")
    ds = read_dataset(alpaca_file)
    # both take LESS's official pipeline rules by default, so the warm-ups match
    bids = get_method("bids")(**kw)
    bids.score(ds, Context(lm=tiny_llama, use_cache=False, progress=False))
    g = get_method("g2is")(graph_k=4, **kw)
    t = g.score(ds, Context(lm=tiny_llama, use_cache=False, progress=False))
    np.testing.assert_allclose(np.linalg.norm(g.features_, axis=1), 1, rtol=1e-5)
    # dot products of the concatenated features = LESS's learning-rate-weighted cosines
    np.testing.assert_allclose(g.features_ @ g.val_features_.T, bids.attribution_, rtol=1e-4, atol=1e-6)
    less_rules = {k: getattr(get_method("less").Config(), k) for k in ("pool_turns", "target_eos", "loss_weighting")}
    assert {k: getattr(g.config, k) for k in less_rules} == less_rules
    picks = g.select(t, Budget.parse(3), None)
    assert 1 <= len(picks) <= 3 and (t.loc[picks, "g2is_component"] >= 0).all()
