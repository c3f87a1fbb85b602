"""The fine-tuning engine on tiny models built from configs: it learns, it trains only response
tokens, it is deterministic, and gradient accumulation gives an exact token mean."""
import json

import numpy as np
import pytest
import torch

from tunesift.data import read_dataset
from tunesift.models.templates import render_conversation
from tunesift.train import TrainConfig, finetune
from tunesift.train.finetune import _examples


def _nll(lm, data, template="alpaca"):
    """Mean response NLL written here from a plain HF forward, independent of the engine."""
    tok, model = lm.tokenizer, lm.model
    tot, n = 0.0, 0
    with torch.no_grad():
        for e in data.examples:
            r = render_conversation(e, template)
            enc = tok(r.text, return_offsets_mapping=True)
            ids = torch.tensor([enc["input_ids"]])
            start = r.spans[0][0]
            lab = ids.clone()
            for j, (s, t) in enumerate(enc["offset_mapping"]):
                if not (t > s and s >= start):
                    lab[0, j] = -100
            logits = model(input_ids=ids).logits[0, :-1]
            l = torch.nn.functional.cross_entropy(logits, lab[0, 1:], ignore_index=-100, reduction="sum")
            tot += float(l)
            n += int((lab[0, 1:] != -100).sum())
    return tot / n


@pytest.mark.parametrize("method", ["lora", "full"])
def test_training_lowers_response_loss(tiny_llama, alpaca_file, method):
    ds = read_dataset(alpaca_file)
    before = _nll(tiny_llama, ds)
    lr = 1e-2 if method == "lora" else 1e-3
    res = finetune(tiny_llama, ds, TrainConfig(method=method, template="alpaca", epochs=12, batch_size=4,
                                               learning_rate=lr, lora_dropout=0.0), progress=False)
    after = _nll(res.lm, ds)
    assert after < before - 0.5, (before, after)
    assert res.log[-1]["loss"] < res.log[0]["loss"]
    # the caller's model is untouched (a private copy was trained)
    assert _nll(tiny_llama, ds) == pytest.approx(before, rel=1e-6)
    assert res.lm.fingerprint != tiny_llama.fingerprint


def test_only_response_tokens_and_eos_are_trained(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file)
    _, items, skipped = _examples(tiny_llama, ds, TrainConfig(template="alpaca"))
    tok = tiny_llama.tokenizer
    for e, (ids, pos) in zip(ds.examples, items):
        assert ids[-1] == tok.eos_token_id and pos[-1] == len(ids) - 1
        trained = tok.decode(ids[pos[:-1]])
        assert trained.strip() == e.response.strip()
    assert skipped == {}


def test_accumulation_is_an_exact_token_mean(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file)
    kw = dict(template="alpaca", epochs=1, batch_size=len(ds), lora_dropout=0.0, warmup_ratio=0.0)
    one = finetune(tiny_llama, ds, TrainConfig(micro_batch_tokens=100_000, **kw), progress=False)
    many = finetune(tiny_llama, ds, TrainConfig(micro_batch_tokens=64, **kw), progress=False)
    assert one.log[0]["loss"] == pytest.approx(many.log[0]["loss"], rel=1e-5)
    assert one.log[0]["tokens"] == many.log[0]["tokens"]
    # and it is the plain mean NLL of the untrained model over the trained tokens (LoRA starts as the
    # identity), computed here from full logits one example at a time
    _, items, _ = _examples(tiny_llama, ds, TrainConfig(template="alpaca"))
    tot, n = 0.0, 0
    with torch.no_grad():
        for ids, pos in items:
            logits = tiny_llama.model(input_ids=torch.from_numpy(ids)[None]).logits[0]
            tot += float(torch.nn.functional.cross_entropy(logits[pos - 1], torch.from_numpy(ids[pos]), reduction="sum"))
            n += len(pos)
    assert one.log[0]["tokens"] == n
    assert one.log[0]["loss"] == pytest.approx(tot / n, rel=1e-5)


def test_head_at_targets_equals_full_logits(tiny_llama):
    """The loss that applies the LM head at labelled positions only is the full-logits loss."""
    from tunesift.models.heads import head_reproduces_logits
    from tunesift.train.finetune import _loss_sum
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, tiny_llama.model.config.vocab_size, (3, 20), generator=g)
    labels = torch.full_like(ids, -100)
    labels[0, 5:12], labels[1, 2:20], labels[2, 15:18] = ids[0, 5:12], ids[1, 2:20], ids[2, 15:18]
    assert head_reproduces_logits(tiny_llama.model, ids[:1])
    with torch.no_grad():
        fast, full = _loss_sum(tiny_llama.model, ids, labels, True), _loss_sum(tiny_llama.model, ids, labels, False)
    assert float(fast) == pytest.approx(float(full), rel=1e-5)


def test_same_seed_same_run_and_outputs(tiny_llama, alpaca_file, tmp_path):
    ds = read_dataset(alpaca_file)
    cfg = dict(template="alpaca", epochs=2, batch_size=3, learning_rate=1e-3)
    a = finetune(tiny_llama, ds, TrainConfig(seed=1, **cfg), output_dir=tmp_path / "a", progress=False)
    b = finetune(tiny_llama, ds, TrainConfig(seed=1, **cfg), progress=False)
    c = finetune(tiny_llama, ds, TrainConfig(seed=2, **cfg), progress=False)
    assert [r["loss"] for r in a.log] == [r["loss"] for r in b.log]
    assert [r["loss"] for r in a.log] != [r["loss"] for r in c.log]
    assert (tmp_path / "a" / "adapter" / "adapter_config.json").exists()
    log = json.loads((tmp_path / "a" / "training_log.json").read_text())
    assert len(log["steps"]) == len(a.log) and log["summary"]["examples"] == len(ds)
    assert (tmp_path / "a" / "loss.svg").read_text().startswith("<svg")


def test_packing_and_truncation(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file)
    res = finetune(tiny_llama, ds, TrainConfig(template="alpaca", packing=True, max_length=128, epochs=1), progress=False)
    assert res.log and np.isfinite(res.log[0]["loss"])
    short = finetune(tiny_llama, ds, TrainConfig(template="alpaca", max_length=80), progress=False)
    assert short.skipped["no_target_within_max_length"] == 2 and short.skipped["truncated_response_kept"] >= 1
    assert short.examples == len(ds) - 2     # counted, not silently dropped


def test_micro_batches_never_exceed_a_step():
    """A big token budget must not pack more examples into one micro-batch than a step holds."""
    from tunesift.train.finetune import _micro_batches
    items = [(np.zeros(n, np.int64), np.arange(1, n)) for n in [5, 9, 7, 3, 8, 6, 4, 5, 9, 2]]
    cfg = TrainConfig(batch_size=3, micro_batch_tokens=10_000)
    mbs = _micro_batches(items, cfg, np.random.default_rng(0))
    assert max(len(m) for m in mbs) == 3 and sorted(i for m in mbs for i in m) == list(range(10))
    cfg = TrainConfig(batch_size=16, micro_batch_tokens=20)    # the token budget still binds first
    assert all(len(m) * max(len(items[i][0]) for i in m) <= 20 for m in _micro_batches(items, cfg, np.random.default_rng(0)))


def test_on_epoch_sees_each_epoch_and_changes_nothing(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file)
    cfg = TrainConfig(method="full", template="alpaca", epochs=2.5, batch_size=3, learning_rate=1e-3)
    seen = []

    def hook(snap):
        assert not snap.lm.model.training and snap.optimizer is not None
        seen.append((snap.epoch, _nll(snap.lm, ds), snap.mean_lr))

    with_hook = finetune(tiny_llama, ds, cfg, progress=False, on_epoch=hook)
    plain = finetune(tiny_llama, ds, cfg, progress=False)
    assert [e for e, _, _ in seen] == [0, 1, 2]            # before training, then each whole epoch only
    assert seen[0][1] == pytest.approx(_nll(tiny_llama, ds), rel=1e-6)
    assert seen[2][1] < seen[1][1] < seen[0][1]
    assert [r["loss"] for r in with_hook.log] == [r["loss"] for r in plain.log]
    # each epoch's mean learning rate, from the step log
    assert seen[0][2] is None
    for e in (1, 2):
        assert seen[e][2] == pytest.approx(np.mean([r["lr"] for r in plain.log if r["epoch"] == e]))


def test_lr_schedules_are_the_trainers(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file)
    res = finetune(tiny_llama, ds, TrainConfig(template="alpaca", epochs=4, batch_size=1, learning_rate=1e-3,
                                               warmup_ratio=0.25, lr_schedule="cosine"), progress=False)
    lrs = [r["lr"] for r in res.log]
    total, warm = len(lrs), int(0.25 * len(lrs))
    # the Hugging Face Trainer's schedule (transformers.get_scheduler): warm-up from 0, step s at s / warm
    assert lrs[:warm] == pytest.approx([1e-3 * s / warm for s in range(warm)])
    assert lrs[warm:] == pytest.approx([1e-3 * 0.5 * (1 + np.cos(np.pi * (s - warm) / (total - warm)))
                                        for s in range(warm, total)])
    lin = finetune(tiny_llama, ds, TrainConfig(template="alpaca", epochs=2, batch_size=1, learning_rate=1e-3,
                                               warmup_ratio=0.25), progress=False)
    lrs = [r["lr"] for r in lin.log]
    total, warm = len(lrs), int(0.25 * len(lrs))
    assert lrs == pytest.approx([1e-3 * s / warm if s < warm else 1e-3 * (total - s) / (total - warm)
                                 for s in range(total)])
    with pytest.raises(Exception, match="lr_schedule"):
        TrainConfig(lr_schedule="step").validate()


def _first_moment_after_one_step(lm, ds, **kw):
    """The AdamW first moment after the only step, read in the epoch-1 hook: (1 - beta1) x the step's
    gradient (no clipping at this max_grad_norm)."""
    got = {}

    def hook(snap):
        if snap.epoch == 1:
            got["m"] = torch.cat([snap.optimizer.state[p]["exp_avg"].reshape(-1)
                                  for p in snap.lm.model.parameters() if p in snap.optimizer.state])
    finetune(lm, ds, TrainConfig(method="full", template="alpaca", epochs=1, batch_size=len(ds), max_grad_norm=1e9,
                                 warmup_ratio=0.0, micro_batch_tokens=64, **kw), progress=False, on_epoch=hook)
    return got["m"] / 0.1


def _hf_trainer_gradient(lm, ds, groups):
    """What the official recipes' HF Trainer (transformers < 4.46) computes for one optimiser step:
    each device micro-batch (a group of examples) gives the model's own mean loss over its labelled
    tokens; the step's gradient is the mean of those over micro-batches (accumulation and devices)."""
    import copy
    model = copy.deepcopy(lm.model).float().train()
    _, items, _ = _examples(lm, ds, TrainConfig(template="alpaca"))
    for grp in groups:
        L = max(len(items[i][0]) for i in grp)
        ids = torch.full((len(grp), L), 0, dtype=torch.long)
        labels = torch.full((len(grp), L), -100, dtype=torch.long)
        for r, i in enumerate(grp):
            a, p = items[i]
            ids[r, :len(a)] = torch.from_numpy(a)
            labels[r, p] = torch.from_numpy(a[p])
        (model(input_ids=ids, labels=labels).loss / len(groups)).backward()
    return torch.cat([p.grad.reshape(-1) for p in model.parameters()])


def test_example_weighting_is_the_official_per_example_mean(tiny_llama, alpaca_file):
    # LESS's warm-up: per-device batch 1 x 32 accumulation, i.e. the mean of per-example means
    ds = read_dataset(alpaca_file)
    got = _first_moment_after_one_step(tiny_llama, ds, loss_weighting="example")
    want = _hf_trainer_gradient(tiny_llama, ds, [[i] for i in range(len(ds))])
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-6 * float(want.abs().max()))
    # the token-weighted step (the engine's default) is a different gradient
    token = _first_moment_after_one_step(tiny_llama, ds)
    assert float((token - want).abs().max()) > 0.05 * float(want.abs().max())
    torch.testing.assert_close(token, _hf_trainer_gradient(tiny_llama, ds, [list(range(len(ds)))]),
                               rtol=1e-3, atol=1e-6 * float(want.abs().max()))


def test_group_weighting_is_a_mean_of_group_token_means():
    from tunesift.train.finetune import step_weights
    sizes = [1, 2, 4, 8, 16]            # every group has its own token count
    w = step_weights(sizes, TrainConfig(loss_weighting="group", loss_group_size=2), np.random.default_rng(0))
    # groups of 2, 2 and 1 examples: within a group one weight, 1 / (groups x the group's tokens)
    groups = {}
    for i, x in enumerate(w):
        groups.setdefault(round(1 / x, 6), []).append(i)
    assert sorted(len(g) for g in groups.values()) == [1, 2, 2]
    for inv, g in groups.items():
        assert inv == pytest.approx(3 * sum(sizes[i] for i in g))
    ex = step_weights(sizes, TrainConfig(loss_weighting="example"), np.random.default_rng(0))
    np.testing.assert_allclose(ex, [1 / (5 * s) for s in sizes])
    np.testing.assert_allclose(step_weights(sizes, TrainConfig(), np.random.default_rng(0)), 1 / sum(sizes))
