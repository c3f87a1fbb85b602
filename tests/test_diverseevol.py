"""DiverseEvol's rounds against an independent replay: the same fine-tunes, embeddings taken the
authors' way (one example at a time, output_hidden_states[-1] averaged over every token), and a
plain k-center greedy over the full distance matrix, as the code's KCenterSampling.query does."""
import numpy as np
import pytest
import torch

import tunesift
from tunesift.data import read_dataset
from tunesift.methods.diverseevol import whiten
from tunesift.train import TrainConfig, finetune

from .test_methods import cherry_prompt


def authors_embedding(model, tok, rec) -> np.ndarray:
    text = cherry_prompt({"input": "", **rec}) + rec["output"] + tok.eos_token
    ids = torch.tensor([tok(text, truncation=True, max_length=512)["input_ids"]])
    with torch.no_grad():
        h = model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0]
    return h.mean(0).double().numpy()


def plain_kcenter(X, labelled, n):
    D = np.sqrt(np.maximum((X * X).sum(1)[:, None] + (X * X).sum(1)[None] - 2 * X @ X.T, 0))
    lab = list(labelled)
    for _ in range(n):
        mind = D[:, lab].min(1)
        mind[lab] = -1
        lab.append(int(mind.argmax()))
    return lab[len(labelled):]


def test_rounds_match_an_independent_replay(tiny_llama, alpaca_file):
    kw = dict(rounds=2, epochs=2, learning_rate=3e-3, batch_size=2)
    res = tunesift.select(alpaca_file, "diverseevol", 6, lm=tiny_llama, use_cache=False, progress=False, **kw)
    t = res.table
    assert len(res.selected_indices) == 6 and sorted(t["round"].value_counts().items()) == [(-1, 2), (0, 2), (1, 2), (2, 2)]
    assert np.isinf(t.loc[t["round"] == 0, "score"]).all() and np.isfinite(t.loc[t["round"] > 0, "score"]).all()
    ds = read_dataset(alpaca_file)
    raws = [e.raw for e in ds.examples]
    labelled = list(res.selected_indices[:2])                   # round 0: the seeded random draw
    assert sorted(labelled) == sorted(np.flatnonzero(t["round"] == 0))
    cfg = TrainConfig(method="full", template="alpaca", epochs=2, learning_rate=3e-3, batch_size=2, max_length=512,
                      lr_schedule="cosine", warmup_ratio=0.03, loss_weighting="group", loss_group_size=4)
    for r in (1, 2):
        m = finetune(tiny_llama, ds.subset(labelled), cfg, progress=False).lm
        X = np.stack([authors_embedding(m.model, m.tokenizer, rec) for rec in raws])
        new = plain_kcenter(X, labelled, 2)
        assert new == list(res.selected_indices[2 * r:2 * r + 2]), r
        assert sorted(new) == sorted(np.flatnonzero(t["round"] == r))
        D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
        np.testing.assert_allclose(t.loc[new, "score"], [D[i, labelled + new[:j]].min() for j, i in enumerate(new)],
                                   rtol=1e-3)
        labelled += new


def test_budget_split_over_rounds(tiny_llama, alpaca_file):
    res = tunesift.select(alpaca_file, "diverseevol", 7, lm=tiny_llama, use_cache=False, progress=False,
                          rounds=3, epochs=1)
    # 7 // (3 + 1) = 1 per k-center round; round 0 takes the other 4 (one example is left out)
    assert list(res.table["round"].value_counts().sort_index()) == [1, 4, 1, 1, 1]


def test_whitening_is_the_codes_transform():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 6)) @ rng.normal(size=(6, 6))
    Y = whiten(X.astype(np.float32), 6)
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1, rtol=1e-5)
    Z = whiten(X.astype(np.float32), 3)
    assert Z.shape == (200, 3)
    # before the row normalisation the whitened data has identity covariance
    mu = X.mean(0)
    u, s, _ = np.linalg.svd(np.cov((X - mu).T))
    W = (X - mu) @ (u / np.sqrt(s))
    np.testing.assert_allclose(np.cov(W.T), np.eye(6), atol=1e-8)
    np.testing.assert_allclose(Y, W / np.linalg.norm(W, axis=1, keepdims=True), rtol=1e-4, atol=1e-5)


def test_threshold_budget_is_refused(tiny_llama, alpaca_file):
    with pytest.raises(tunesift.TunesiftError, match="count or a fraction"):
        tunesift.select(alpaca_file, "diverseevol", ">=1", lm=tiny_llama, use_cache=False, progress=False)


def test_rounds_train_with_the_official_step(tiny_llama, alpaca_file, monkeypatch):
    """The code's effective batch: README's 4 GPUs (torch.distributed.run --nproc_per_node=4) x the
    config's per_device_train_batch_size 4 x gradient_accumulation_steps 4; the HF Trainer's loss is
    each device micro-batch's token mean, averaged over micro-batches."""
    import tunesift.methods.diverseevol as train   # the method calls the finetune it imported
    gpus, per_device, accumulation = 4, 4, 4
    seen = []
    real = train.finetune

    def spy(lm, data, cfg, **kw):
        seen.append(cfg)
        return real(lm, data, cfg, **kw)
    monkeypatch.setattr(train, "finetune", spy)
    tunesift.select(alpaca_file, "diverseevol", 4, lm=tiny_llama, use_cache=False, progress=False, rounds=1, epochs=1)
    assert seen and all(c.batch_size == gpus * per_device * accumulation for c in seen)
    assert all(c.loss_weighting == "group" and c.loss_group_size == per_device for c in seen)
