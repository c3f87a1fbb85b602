"""RECOST (reconstruction): entropies with and without retrieved knowledge, rank sum, window sampling."""

import numpy as np
import pytest
import torch

import tunesift
from tunesift.data import read_dataset
from tunesift.methods.recost import window_sample
from tunesift.models.templates import render_conversation

from .test_methods import _corpus


def _mean_nll(lm, text, start):
    tok, m = lm.tokenizer, lm.model
    enc = tok(text, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]])
    lab = ids.clone()
    for j, (s, e) in enumerate(enc["offset_mapping"]):
        if not (e > s and s >= start):
            lab[0, j] = -100
    with torch.no_grad():
        return float(m(input_ids=ids, labels=lab).loss)


def test_recost_entropies_match_plain_forward(tiny_llama, tiny_embedder, alpaca_file, tmp_path):
    corpus = _corpus(tmp_path)
    res = tunesift.score(alpaca_file, "recost", lm=tiny_llama, embedder=tiny_embedder, use_cache=False,
                         progress=False, corpus=str(corpus), k=2)
    t = res.table
    ds = read_dataset(alpaca_file)
    items = {e.id: f"{e.instruction}\n{e.response}" for e in read_dataset(corpus).examples}
    for i, e in enumerate(ds.examples[:3]):
        r = render_conversation(e, "alpaca")
        assert t["entropy"][i] == pytest.approx(_mean_nll(tiny_llama, r.text, r.spans[0][0]), rel=1e-5)
        prefix = "".join(f"Reference {j + 1}:\n{items[n]}\n\n" for j, n in enumerate(t["neighbours"][i].split(",")))
        want = _mean_nll(tiny_llama, prefix + r.text, len(prefix) + r.spans[0][0])
        assert t["entropy_with_knowledge"][i] == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(t["relative"], t["entropy"] - t["entropy_with_knowledge"])
    rh = t["entropy"].rank(ascending=False, method="first")
    rr = t["relative"].rank(ascending=False, method="first")
    np.testing.assert_allclose(t["score"], -(rh + rr))


def test_window_sampling_follows_cluster_quotas():
    labels = np.array([0] * 8 + [1] * 2)           # pool: 80% cluster 0, 20% cluster 1
    order = np.arange(10)                          # cluster-1 items ranked last
    picks = window_sample(order, labels, 5, window=10)
    assert list(labels[picks]).count(1) == 1 and len(picks) == 5   # quota 1 of 5, reached within the window
    assert list(picks[:4]) == [0, 1, 2, 3]         # best-ranked first where quotas allow
    # a small window walks on when its clusters are full
    picks = window_sample(order, labels, 5, window=2)
    assert len(picks) == 5
