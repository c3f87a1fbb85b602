"""Reward models and MoDS's three stages on tiny models built from configs."""
import numpy as np
import pytest
import torch

import tunesift
from tunesift.data import read_dataset
from tunesift.methods._judging import question_text as _question
from tunesift.signals.reward import RewardModel

from .conftest import save_tiny_reward_model


@pytest.fixture(scope="module")
def tiny_reward_dir(tiny_tokenizer, tmp_path_factory):
    d = tmp_path_factory.mktemp("tiny-rm")
    save_tiny_reward_model(tiny_tokenizer, d, seed=1)
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


def test_mods_seed_model_trains_with_the_official_recipe(tiny_llama, tiny_embedder, tiny_reward_dir, alpaca_file,
                                                         monkeypatch):
    """train/run.sh: 4 GPUs x 8 per device x 16 accumulation = 512 per step for the paper's 1,000
    seeds, full fine-tuning, lr 2e-5 cosine, 3 epochs; HF Trainer groups of 8.  Scaled: the same share
    of the seed set per step, so ceil(512 / 1000 x seeds) per step and the official 6 updates."""
    import math
    import tunesift.methods.mods as train   # the method calls the finetune it imported
    from tunesift.methods.mods import seed_batch_size
    seen, real = [], train.finetune

    def spy(lm, data, cfg, **kw):
        seen.append((len(data), cfg))
        return real(lm, data, cfg, **kw)
    monkeypatch.setattr(train, "finetune", spy)
    tunesift.select(read_dataset(alpaca_file), "mods", 8, lm=tiny_llama, embedder=tiny_embedder, use_cache=False,
                    progress=False, reward_model=str(tiny_reward_dir), alpha=-1e9, beta=1e9, seed_fraction=0.5,
                    max_new_tokens=2)
    (n_seed, cfg), = seen
    gpus, per_device, accumulation, paper_seeds = 4, 8, 16, 1000
    assert (cfg.method, cfg.learning_rate, cfg.lr_schedule, cfg.epochs) == ("full", 2e-5, "cosine", 3.0)
    assert cfg.loss_weighting == "group" and cfg.loss_group_size == per_device
    assert cfg.batch_size == math.ceil(gpus * per_device * accumulation * n_seed / paper_seeds) == 3
    # steps per epoch as the official run's: 1,000 seeds / 512 per step -> 2
    for n in (4, 50, 1000):
        assert math.ceil(n / seed_batch_size(n, None)) == math.ceil(paper_seeds / (gpus * per_device * accumulation))
    assert seed_batch_size(5000, None) == 512 and seed_batch_size(100, 16) == 16


def test_mods_reward_reads_the_whole_pair(tiny_llama, tiny_embedder, tiny_tokenizer, tmp_path):
    """quality-evaluation.py: tokenizer(question, answer) with no truncation, then the model's logit."""
    import json
    from transformers import AutoModelForSequenceClassification, AutoTokenizer, BertConfig, BertForSequenceClassification
    torch.manual_seed(2)
    d = tmp_path / "rm"
    rm = BertForSequenceClassification(BertConfig(vocab_size=len(tiny_tokenizer), hidden_size=32, num_hidden_layers=1,
                                                  num_attention_heads=2, intermediate_size=64, num_labels=1,
                                                  max_position_embeddings=2048, pad_token_id=tiny_tokenizer.pad_token_id))
    with torch.no_grad():
        rm.classifier.weight.mul_(1000)      # rewards of order 1, not 1e-3
    rm.save_pretrained(d)
    tiny_tokenizer.save_pretrained(d)
    rows = [{"instruction": "Summarise the text.", "input": "the quick brown fox " * 100 + "def add(a, b): 0123 " * 50,
             "output": "A fox."},
            {"instruction": "Name a color.", "input": "", "output": "Blue. " * 200},
            {"instruction": "What is 2 + 3?", "input": "", "output": "5"}]
    p = tmp_path / "long.json"
    p.write_text(json.dumps(rows))
    t = tunesift.score(p, "mods", lm=tiny_llama, embedder=tiny_embedder, use_cache=False, progress=False,
                       reward_model=str(d)).table
    tok, m = AutoTokenizer.from_pretrained(d), AutoModelForSequenceClassification.from_pretrained(d).eval()
    want = []
    for r in rows:
        q = r["instruction"] + ("\n" + r["input"] if r["input"] else "")
        enc = tok(q, r["output"], return_tensors="pt")
        with torch.no_grad():
            want.append(float(m(**enc).logits[0, 0]))
    assert len(tok(rows[0]["instruction"] + "\n" + rows[0]["input"], rows[0]["output"])["input_ids"]) > 512
    np.testing.assert_allclose(t["quality"], want, rtol=2e-5)
    cut = tunesift.score(p, "mods", lm=tiny_llama, embedder=tiny_embedder, use_cache=False, progress=False,
                         reward_model=str(d), reward_max_length=512).table
    assert abs(cut["quality"][0] - want[0]) > 1e-3 * abs(want[0]) and cut["quality"][2] == pytest.approx(want[2], rel=2e-5)
