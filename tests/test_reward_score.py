"""reward-score: the reward model's logit per (instruction[+input], response), recomputed one pair at a
time with plain Hugging Face calls; top-k and threshold budgets; the offline rating-judge fallback."""
import json

import numpy as np
import pytest
import torch

import tunesift
from tunesift.data import read_dataset

from .conftest import save_tiny_reward_model


@pytest.fixture(scope="module")
def tiny_reward_dir(tiny_tokenizer, tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-rm-score")
    save_tiny_reward_model(tiny_tokenizer, d, seed=3)
    return d


def _question(rec):
    return rec["instruction"] + ("\n" + rec["input"] if rec["input"] else "")


def test_reward_score_is_the_reward_logit_and_top_k(tiny_reward_dir, alpaca_file, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    recs = json.loads(alpaca_file.read_text())
    tok = AutoTokenizer.from_pretrained(tiny_reward_dir)
    m = AutoModelForSequenceClassification.from_pretrained(tiny_reward_dir).eval()
    with torch.no_grad():
        want = [float(m(**tok(_question(r), r["output"], return_tensors="pt")).logits[0, 0]) for r in recs]
    sel = tunesift.select(alpaca_file, "reward-score", 3, reward_model=str(tiny_reward_dir), device="cpu",
                          cache_dir=str(tmp_path), progress=False)
    np.testing.assert_allclose(sel.table["score"], want, rtol=1e-5, atol=1e-6)
    assert set(sel.selected_indices) == set(np.argsort(-np.asarray(want), kind="stable")[:3])
    # a threshold budget keeps every example above it (MoDS's quality rule: reward > alpha)
    cut = float(np.median(want))
    thr = tunesift.select(alpaca_file, "reward-score", f">{cut}", reward_model=str(tiny_reward_dir),
                          device="cpu", cache_dir=str(tmp_path), progress=False)
    assert set(thr.selected_indices) == {i for i, w in enumerate(want) if w > cut}


def test_reward_score_offline_fallback_is_the_expected_rating(tiny_llama, alpaca_file):
    from tunesift.methods.selectit import RATING_PROMPTS, rating_text
    ds = read_dataset(alpaca_file)
    res = tunesift.score(ds, "reward-score", lm=tiny_llama, use_cache=False, progress=False)
    tok, model = tiny_llama.tokenizer, tiny_llama.model
    for i, e in enumerate(ds.examples):
        q = e.instruction + ("\n" + e.input if e.input else "")
        ids = torch.tensor([tok(rating_text(RATING_PROMPTS[0], q, e.response)).input_ids])
        with torch.no_grad():
            p = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
        P = np.array([float(p[tok.encode(d, add_special_tokens=False)[0]]) for d in "12345"])
        assert res.table["score"][i] == pytest.approx(float((P / P.sum()) @ np.arange(1, 6)), rel=1e-5)
    assert (res.table["judge"] == "rating").all()
