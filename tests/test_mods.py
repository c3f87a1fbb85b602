"""Reward models and MoDS's three stages on tiny models built from configs."""
import numpy as np
import pytest
import torch

import tunesift
from tunesift.data import read_dataset
from tunesift.methods._judging import question_text as _question
from tunesift.signals.reward import RewardModel


@pytest.fixture(scope="module")
def tiny_reward_dir(tiny_tokenizer, tmp_path_factory):
    from transformers import BertConfig, BertForSequenceClassification
    torch.manual_seed(1)
    m = BertForSequenceClassification(BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1,
                                                 num_attention_heads=2, intermediate_size=64, num_labels=1,
                                                 pad_token_id=tiny_tokenizer.pad_token_id))
    d = tmp_path_factory.mktemp("tiny-rm")
    m.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    return d


def test_reward_model_batched_equals_single(tiny_reward_dir, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    rm = RewardModel(str(tiny_reward_dir), device="cpu", cache_dir=str(tmp_path), progress=False)
    qs = ["What is 2+2?", "Name a colour that is also a fruit, please.", "Hi"]
    ans = ["4", "Orange, which is both a colour and a fruit.", "Hello! How can I help you today?"]
    got, trunc = rm.score(qs, ans)
    tok = AutoTokenizer.from_pretrained(tiny_reward_dir)
    m = AutoModelForSequenceClassification.from_pretrained(tiny_reward_dir).eval()
    with torch.no_grad():
        want = [float(m(**tok(q, a, return_tensors="pt")).logits[0, 0]) for q, a in zip(qs, ans)]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert not trunc.any()
    again, _ = RewardModel(str(tiny_reward_dir), device="cpu", cache_dir=str(tmp_path), progress=False).score(qs, ans)
    np.testing.assert_array_equal(again, got)


def test_mods_three_stages(tiny_llama, tiny_embedder, tiny_reward_dir, alpaca_file, tmp_path):
    ds = read_dataset(alpaca_file)
    sel = tunesift.select(ds, "mods", 4, lm=tiny_llama, embedder=tiny_embedder, use_cache=False, progress=False,
                          reward_model=str(tiny_reward_dir), alpha=-1e9, beta=1e9, epochs=1, max_new_tokens=4)
    t = sel.table
    assert len(sel.selected_indices) == 4
    seed = np.flatnonzero(t["stage"] == "seed")
    nec = np.flatnonzero(t["stage"] == "necessary")
    assert len(seed) == 1 and len(nec) == 3
    # necessary: the lowest answer rewards among the non-seed examples
    rest = t.drop(index=seed)
    assert set(nec) == set(rest["answer_reward"].nsmallest(3).index)
    # quality: the reward model's score of (instruction[+input], output), recomputed independently
    rm = RewardModel(str(tiny_reward_dir), device="cpu", use_cache=False, progress=False)
    q, _ = rm.score([_question(e) for e in ds.examples], [e.response for e in ds.examples])
    np.testing.assert_allclose(t["quality"], q, rtol=1e-5)


def test_mods_quality_filter_and_threshold_fill(tiny_llama, tiny_embedder, tiny_reward_dir, alpaca_file):
    ds = read_dataset(alpaca_file)
    res = tunesift.score(ds, "mods", lm=tiny_llama, embedder=tiny_embedder, use_cache=False, progress=False,
                         reward_model=str(tiny_reward_dir))
    med = float(np.median(res.table["quality"]))
    sel = tunesift.select(ds, "mods", 2, lm=tiny_llama, embedder=tiny_embedder, use_cache=False, progress=False,
                          reward_model=str(tiny_reward_dir), alpha=med, beta=-1e9, epochs=1, max_new_tokens=2)
    t = sel.table
    assert (~t["eligible"]).sum() == (t["quality"] <= med).sum() > 0
    assert set(sel.selected_indices) <= set(np.flatnonzero(t["eligible"]))
    assert (t["stage"] == "necessary").sum() == 0        # nothing answered below beta: the seeds only


def test_mods_without_reward_model_uses_the_lm_rating_judge(tiny_llama, tiny_embedder, alpaca_file):
    ds = read_dataset(alpaca_file)
    res = tunesift.score(ds, "mods", lm=tiny_llama, embedder=tiny_embedder, use_cache=False, progress=False)
    q = res.table["quality"]
    assert ((q >= 1) & (q <= 5)).all()


def test_winrate_against_references_with_a_reward_judge(tiny_llama, tiny_reward_dir, alpaca_file):
    from tunesift.evaluate import generate, parse_eval, run_eval
    from tunesift.evaluate.tasks import WinrateJudge
    from tunesift.models.templates import render_conversation
    judge = WinrateJudge(reward_model=str(tiny_reward_dir), device="cpu")
    ds = read_dataset(alpaca_file)
    from tunesift.evaluate.tasks import winrate
    got = winrate(tiny_llama, ds, judge, max_new_tokens=6)
    prompts = [(lambda r: r.text[:r.spans[0][0]])(render_conversation(e, "alpaca")) for e in ds.examples]
    answers = generate(tiny_llama, prompts, max_new_tokens=6)
    rm = RewardModel(str(tiny_reward_dir), device="cpu", use_cache=False, progress=False)
    mine, _ = rm.score([_question(e) for e in ds.examples], answers)
    ref, _ = rm.score([_question(e) for e in ds.examples], [e.response for e in ds.examples])
    want = ((mine > ref).sum() + 0.5 * (mine == ref).sum()) / len(ds)
    assert got["win_rate"] == pytest.approx(want) and got["n"] == len(ds)
    assert got["wins"] + got["ties"] + got["losses"] == len(ds)
    # through the named evaluation
    spec = parse_eval("alpaca_eval_winrate:3=" + str(alpaca_file), None)
    named = run_eval(spec, tiny_llama, judge=judge)
    assert named["n"] == 3 and 0 <= named["win_rate"] <= 1
