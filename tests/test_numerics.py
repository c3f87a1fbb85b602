"""Library numerics where tunesift once hand-wrote them: one k-means (scikit-learn's) for the
cluster methods and the IVF index's cells."""
import numpy as np
from sklearn.cluster import KMeans

from tunesift.selectors.cluster import kmeans
from tunesift.selectors.neighbors import knn_graph


def test_kmeans_is_scikit_learns():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(c, 0.3, size=(40, 5)) for c in (-2, 0, 2)]).astype(np.float32)
    labels, C = kmeans(X, 3, seed=7)
    ref = KMeans(n_clusters=3, n_init=1, random_state=7).fit(X)    # scikit-learn's defaults otherwise
    assert (labels == ref.labels_).all()
    np.testing.assert_allclose(C, ref.cluster_centers_, rtol=1e-5)
    # the three blobs are found (each label covers one blob)
    assert len({tuple(np.unique(labels[i:i + 40])) for i in (0, 40, 80)}) == 3
    # more clusters than points: every point its own cluster, no error
    assert len(kmeans(X[:4], 10)[1]) == 4


def test_ivf_cells_from_the_shared_kmeans():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(3000, 16)).astype(np.float32)
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    exact, _ = knn_graph(X, k=10, index="exact")
    ivf, _ = knn_graph(X, k=10, index="ivf", n_lists=20, n_probe=8, seed=0)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, ivf)])
    assert recall > 0.65          # 0.74 measured (random 16-d points: the hard case for cells)
    again, _ = knn_graph(X, k=10, index="ivf", n_lists=20, n_probe=8, seed=0)
    assert (again == ivf).all()          # deterministic per seed


def test_faiss_index_probing_every_cell_is_exact():
    import pytest
    pytest.importorskip("faiss")
    rng = np.random.default_rng(2)
    X = rng.normal(size=(800, 12)).astype(np.float32)
    for metric in ("cosine", "euclidean"):
        exact, ev = knn_graph(X, k=5, metric=metric, index="exact")
        got, gv = knn_graph(X, k=5, metric=metric, index="faiss", n_lists=8, n_probe=8)
        assert (got[:, 0] == np.arange(800)).all()
        np.testing.assert_allclose(np.sort(gv, 1), np.sort(ev, 1), atol=1e-5)   # the same neighbours' similarities
