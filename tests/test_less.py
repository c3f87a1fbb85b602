"""LESS on a tiny model, its score recomputed here from the authors' pieces: per-example gradients
from a plain loop (one backward each; the target's loss over its answer alone, no EOS, as
get_validation_dataset.tokenize), the Adam feature written out, the same Rademacher matrix, a
warm-up whose step loss is the mean of per-example means (per-device batch 1 x accumulation),
checkpoint weights from the training log's learning rates, mean cosine per subtask, max over them."""
import numpy as np
import pytest

import tunesift
from tunesift.data import read_dataset
from tunesift.train import TrainConfig, finetune

from .test_gradients import loop_gradients, loop_less_features
from .test_methods import _target_set

KW = dict(epochs=2, lora_r=4, lora_alpha=8, lora_dropout=0.0, proj_dim=48, warmup_fraction=0.5, learning_rate=1e-2,
          batch_size=2, template="alpaca")


def unit(X):
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("subtask_score", ["code", "paper"])
def test_less_matches_the_formula_computed_independently(tiny_llama, alpaca_file, tmp_path, subtask_score):
    target = _target_set(tmp_path)
    res = tunesift.score(alpaca_file, "less", lm=tiny_llama, use_cache=False, progress=False, target=str(target),
                         task_field="task", subtask_score=subtask_score, **KW)
    t = res.table
    ds, tg = read_dataset(alpaca_file), read_dataset(target)
    tasks = np.array([e.raw["task"] for e in tg.examples])
    warm = np.flatnonzero(t["warmup"])
    assert len(warm) == 4
    per_ckpt = []

    def hook(snap):
        if snap.epoch == 0:
            return
        R, A = loop_less_features(snap, ds, 48)
        V = loop_gradients(snap.lm, tg, eos=False).double().numpy() @ R
        if subtask_score == "code":
            C = A @ unit(V).T
            per_ckpt.append(np.stack([C[:, tasks == k].mean(1) for k in sorted(set(tasks))], 1))
        else:
            per_ckpt.append(np.stack([A @ unit(V[tasks == k].mean(0, keepdims=True))[0] for k in sorted(set(tasks))], 1))

    tr = finetune(tiny_llama, ds.subset(warm.tolist()),
                  TrainConfig(method="lora", template="alpaca", epochs=2, learning_rate=1e-2, batch_size=2,
                              max_length=2048, lr_schedule="linear", warmup_ratio=0.03, lora_r=4, lora_alpha=8,
                              lora_dropout=0.0, lora_targets="q_proj,k_proj,v_proj,o_proj", loss_weighting="example"),
                  progress=False, on_epoch=hook)
    lr = np.array([np.mean([r["lr"] for r in tr.log if r["epoch"] == e]) for e in (1, 2)])
    S = (lr[0] * per_ckpt[0] + lr[1] * per_ckpt[1]) / lr.sum()
    np.testing.assert_allclose(t["score"], S.max(1), rtol=1e-3, atol=1e-4)
    assert list(t["best_task"]) == [sorted(set(tasks))[k] for k in S.argmax(1)]
    np.testing.assert_allclose(t["less_math"], S[:, sorted(set(tasks)).index("math")], rtol=1e-3, atol=1e-4)


def test_less_needs_a_target(tiny_llama, alpaca_file, tmp_path):
    with pytest.raises(tunesift.TunesiftError, match="-p target=PATH"):
        tunesift.score(alpaca_file, "less", lm=tiny_llama, use_cache=False, progress=False)
    with pytest.raises(tunesift.TunesiftError, match="no field 'subject'"):
        tunesift.score(alpaca_file, "less", lm=tiny_llama, use_cache=False, progress=False,
                       target=str(_target_set(tmp_path)), task_field="subject", **KW)


def test_a_subtask_without_usable_examples_scores_nothing(tiny_llama, alpaca_file, tmp_path):
    import json
    target = tmp_path / "t.jsonl"
    rows = [{"instruction": "What is 2 + 3?", "input": "", "output": "5", "task": "math"},
            {"instruction": "word " * 600, "input": "", "output": "ok", "task": "long"}]   # cut before its response
    target.write_text("\n".join(json.dumps(r) for r in rows))
    t = tunesift.score(alpaca_file, "less", lm=tiny_llama, use_cache=False, progress=False, target=str(target),
                       task_field="task", max_length=400, **KW).table
    assert t["less_long"].isna().all() and (t.loc[t["eligible"], "best_task"] == "math").all()
    np.testing.assert_allclose(t.loc[t["eligible"], "score"], t.loc[t["eligible"], "less_math"])


def test_pool_side_labels_every_assistant_turn_and_the_target_no_eos(tiny_llama, tmp_path):
    """The official encoders written out: concat_messages masks only user text (every assistant
    message and its EOS carry loss); the validation tokenize labels the answer tokens only."""
    import json
    from types import SimpleNamespace
    from tunesift.methods._influence import renderings
    from tunesift.methods.less import LESSConfig
    from tunesift.signals.likelihood import tokenize_targets
    p = tmp_path / "chat.jsonl"
    p.write_text(json.dumps({"messages": [{"role": "user", "content": "Name a color."},
                                          {"role": "assistant", "content": "Blue."},
                                          {"role": "user", "content": "Another one."},
                                          {"role": "assistant", "content": "Red."}]}))
    ds, tok = read_dataset(p), tiny_llama.tokenizer
    ctx = SimpleNamespace(causal_lm=lambda: tiny_llama, turns="last")
    c = LESSConfig()
    pool = renderings(ds, ctx, "alpaca", c.pool_turns)
    labelled = tokenize_targets(tok, pool, 512)[0]
    assert tok.decode(labelled.ids[labelled.pos]).replace(" ", "") == "Blue.Red." + tok.eos_token
    tgt = renderings(ds, ctx, "alpaca", c.pool_turns, eos=c.target_eos)
    t = tokenize_targets(tok, tgt, 512)[0]
    assert tok.eos_token_id not in t.ids[t.pos].tolist()
    # the previous defaults: the run's --turns (last) and an EOS in the target loss
    old = tokenize_targets(tok, renderings(ds, ctx, "alpaca", "last"), 512)[0]
    assert tok.decode(old.ids[old.pos]).replace(" ", "") == "Red." + tok.eos_token


def test_less_bids_and_g2is_share_one_warm_up_through_the_cache(tiny_llama, alpaca_file, tmp_path, monkeypatch):
    import tunesift.methods._influence as influence_module
    target = _target_set(tmp_path)
    kw = dict(target=str(target), task_field="task", **KW)
    cache = str(tmp_path / "cache")
    fresh = {m: tunesift.score(alpaca_file, m, lm=tiny_llama, use_cache=False, progress=False, **kw).table
             for m in ("less", "bids", "g2is")}
    first = tunesift.score(alpaca_file, "less", lm=tiny_llama, cache_dir=cache, progress=False, **kw).table
    np.testing.assert_allclose(first["score"], fresh["less"]["score"], rtol=1e-6)
    stored = list((tmp_path / "cache").rglob("done.json"))
    assert len(stored) == 1 and len(list(stored[0].parent.glob("checkpoint*.npz"))) == KW["epochs"]

    def no_training(*a, **k):
        raise AssertionError("the warm-up ran again")
    monkeypatch.setattr(influence_module, "finetune", no_training)
    for m in ("less", "bids", "g2is"):   # from the stored features: same scores, no warm-up
        t = tunesift.score(alpaca_file, m, lm=tiny_llama, cache_dir=cache, progress=False, **kw).table
        np.testing.assert_allclose(t["score"].fillna(-9), fresh[m]["score"].fillna(-9), rtol=1e-6)
        assert t["warmup"].tolist() == fresh[m]["warmup"].tolist()
    # a damaged store is computed again, not an error
    ck = next(stored[0].parent.glob("checkpoint*.npz"))
    ck.write_bytes(b"not a zip")
    with pytest.raises(AssertionError, match="warm-up ran again"):
        tunesift.score(alpaca_file, "less", lm=tiny_llama, cache_dir=cache, progress=False, **kw)
    assert not stored[0].exists()
    # another seed is another warm-up: it trains
    with pytest.raises(AssertionError, match="warm-up ran again"):
        tunesift.score(alpaca_file, "less", lm=tiny_llama, cache_dir=cache, progress=False, seed=1, **kw)
