"""Learning percentage (Mekala et al.): the per-epoch perplexities and LP(1) against the authors'
formula computed here from plain HF forwards, the scored tokens against the trained ones, and both
selection rules against independent implementations."""
import numpy as np
import pandas as pd
import pytest
import torch

import tunesift
from tunesift.data import read_dataset
from tunesift.methods.learning_percentage import LearningPercentage
from tunesift.selectors import Budget
from tunesift.train import TrainConfig, finetune
from tunesift.train.finetune import _examples

from .conftest import ALPACA
from .test_methods import cherry_prompt

LIGHT = dict(learning_rate=3e-3, batch_size=2)   # a tiny random model needs a real change per epoch


def authors_ppl(model, tok, rec) -> float:
    """dump_pplxs.py's rule: source = Alpaca prompt, target = output + EOS, labels masked by the
    source's own token count, per-sample exp(mean loss over the labelled tokens)."""
    src = cherry_prompt({"input": "", **rec})
    ids = torch.tensor([tok(src + rec["output"] + tok.eos_token)["input_ids"]])
    labels = ids.clone()
    labels[0, :len(tok(src)["input_ids"])] = -100
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, :-1]
    loss = torch.nn.functional.cross_entropy(logits.float(), labels[0, 1:], ignore_index=-100, reduction="none")
    keep = labels[0, 1:] != -100
    return float(torch.exp(loss[keep].mean()))


def test_lp_matches_the_formula_computed_independently(tiny_llama, tiny_embedder, alpaca_file):
    res = tunesift.score(alpaca_file, "learning-percentage", lm=tiny_llama, embedder=tiny_embedder,
                         use_cache=False, progress=False, **LIGHT)
    t = res.table
    # the same fine-tune (same seed and settings), the perplexities taken by the authors' rule
    ds = read_dataset(alpaca_file)
    want: list[list[float]] = []
    finetune(tiny_llama, ds, TrainConfig(method="full", template="alpaca", epochs=3.0, learning_rate=3e-3,
                                         batch_size=2, max_length=512, lr_schedule="cosine", warmup_ratio=0.03,
                                         loss_weighting="group", loss_group_size=4),
             progress=False, on_epoch=lambda snap: want.append([authors_ppl(snap.lm.model, snap.lm.tokenizer, r)
                                                               for r in ALPACA]))
    P = np.array(want)
    assert P.shape == (4, len(ALPACA))
    for i in range(4):
        np.testing.assert_allclose(t[f"ppl_{i}"], P[i], rtol=1e-4)
    assert (np.abs(P[0] - P[3]) > 0.05 * P[0]).all()   # training moved every example: LP is well defined
    lp = (P[0] - P[1]) / (P[0] - P[3])
    np.testing.assert_allclose(t["lp1"], lp, rtol=1e-3)
    np.testing.assert_allclose(t["score"], lp, rtol=1e-3)
    np.testing.assert_allclose(t["lp1_approx"], (P[0] - P[1]) / P[0], rtol=1e-3)
    # scored tokens are the trained tokens: response + EOS
    _, items, _ = _examples(tiny_llama, ds, TrainConfig(template="alpaca", max_length=512))
    assert list(t["n_tokens"]) == [len(pos) for _, pos in items]


def test_lp_approx_needs_one_epoch(tiny_llama, tiny_embedder, alpaca_file):
    t = tunesift.score(alpaca_file, "learning-percentage", lm=tiny_llama, embedder=tiny_embedder, use_cache=False,
                       progress=False, variant="lp_approx", **LIGHT).table
    assert "ppl_1" in t and "ppl_2" not in t
    np.testing.assert_allclose(t["score"], (t["ppl_0"] - t["ppl_1"]) / t["ppl_0"], rtol=1e-12)
    assert t["lp1"].isna().all()


def test_lp_is_zero_where_perplexity_did_not_move(tiny_llama, tiny_embedder, alpaca_file):
    # learning rate 0: P_0 = P_n everywhere, which the code maps to LP 0
    t = tunesift.score(alpaca_file, "learning-percentage", lm=tiny_llama, embedder=tiny_embedder, use_cache=False,
                       progress=False, epochs=1, learning_rate=0.0, batch_size=8).table
    np.testing.assert_allclose(t["ppl_0"], t["ppl_1"], rtol=1e-6)
    assert (t["score"] == 0).all()


def _table(seed=0, n=200, k=7):
    rng = np.random.default_rng(seed)
    t = pd.DataFrame({"score": np.round(rng.normal(size=n), 1),   # rounded: ties within clusters
                      "eligible": rng.random(n) > 0.1, "cluster": rng.integers(0, k, n)})
    t["reason"] = np.where(t["eligible"], "", "x")
    return t


def test_budget_selection_is_exact_and_lowest_per_cluster():
    t = _table()
    m = LearningPercentage()
    picks = m.select(t.copy(), Budget.parse("10%"), None)
    assert len(picks) == 20 and len(set(picks)) == 20 and t.loc[picks, "eligible"].all()
    ok = t[t["eligible"]]
    sizes = ok["cluster"].value_counts()
    for c, members in ok.groupby("cluster"):
        mine = [i for i in picks if t.loc[i, "cluster"] == c]
        assert abs(len(mine) - 20 * sizes[c] / len(ok)) < 1          # proportional, largest remainders
        order = sorted(members.index, key=lambda i: (members.loc[i, "score"], i))
        assert mine == order[:len(mine)]                             # lowest LP first, ties by index


def test_chunks_selection_is_the_codes_array_split():
    t = _table(seed=1)
    for budget in ("10%", "15%", "33%", 20):
        picks = LearningPercentage(selection="chunks").select(t.copy(), Budget.parse(budget), None)
        frac = 20 / len(t) if budget == 20 else float(budget[:-1]) / 100
        want = []
        for c in range(t["cluster"].max() + 1):
            m = t[(t["cluster"] == c) & t["eligible"]]
            ids = [i for _, i in sorted(zip(m["score"], m.index))]
            if ids:
                want.extend(np.array_split(ids, round(100 / (frac * 100)))[0].tolist())
        assert sorted(picks) == sorted(want), budget


def test_threshold_budget_is_refused(tiny_llama):
    with pytest.raises(tunesift.TunesiftError, match="count or a fraction"):
        LearningPercentage().select(_table(), Budget.parse(">=0.5"), None)


def test_selector_trains_with_the_hf_trainer_weighting(tiny_llama, tiny_embedder, alpaca_file, monkeypatch):
    """README: per_device_train_batch_size 4, gradient_accumulation_steps 8, HF Trainer: the step's
    loss is the mean over micro-batches of 4 of each one's token mean, 32 examples per step."""
    import tunesift.methods.learning_percentage as train   # the method calls the finetune it imported
    per_device, accumulation = 4, 8
    seen, real = [], train.finetune

    def spy(lm, data, cfg, **kw):
        seen.append(cfg)
        return real(lm, data, cfg, **kw)
    monkeypatch.setattr(train, "finetune", spy)
    tunesift.score(alpaca_file, "learning-percentage", lm=tiny_llama, embedder=tiny_embedder, use_cache=False,
                   progress=False, variant="lp_approx", learning_rate=1e-3)
    (cfg,) = seen
    assert cfg.batch_size == per_device * accumulation
    assert cfg.loss_weighting == "group" and cfg.loss_group_size == per_device
