"""ROSE on a tiny model: the target feature is the gradient of each triple's DPO loss, computed here
with autograd from plain HF forwards (policy = the checkpoint, reference = the base model), and the
whole score recomputed from it on a replayed warm-up."""
import json

import numpy as np
import pytest
import torch

import tunesift
from tunesift.data import read_dataset
from tunesift.signals.gradients import trainable_linears
from tunesift.train import TrainConfig, finetune

from .test_gradients import loop_less_features
from .test_methods import _preference_set, cherry_prompt

KW = dict(epochs=2, lora_r=4, lora_alpha=8, lora_dropout=0.0, proj_dim=48, warmup_fraction=0.5, learning_rate=1e-2,
          batch_size=2, template="alpaca")


def logp(model, tok, prompt, response):
    """Summed log-probability of response + EOS after the Alpaca prompt (labels by the prompt's tokens)."""
    src = cherry_prompt({"instruction": prompt, "input": ""})
    ids = torch.tensor([tok(src + response + tok.eos_token)["input_ids"]])
    n = len(tok(src)["input_ids"])
    logits = model(input_ids=ids).logits[0, :-1].float()
    lp = torch.log_softmax(logits, -1).gather(1, ids[0, 1:, None])[:, 0]
    return lp[n - 1:].sum()


def test_rose_matches_dpo_gradients_computed_independently(tiny_llama, alpaca_file, tmp_path):
    prefs = _preference_set(tmp_path)
    res = tunesift.score(alpaca_file, "rose", lm=tiny_llama, use_cache=False, progress=False, target=str(prefs),
                         task_field="task", beta=0.1, **KW)
    t = res.table
    triples = [json.loads(l) for l in prefs.read_text().splitlines()]
    tasks = np.array([r["task"] for r in triples])
    ds = read_dataset(alpaca_file)
    with torch.no_grad():
        ref = [(logp(tiny_llama.model, tiny_llama.tokenizer, r["prompt"], r["chosen"]),
                logp(tiny_llama.model, tiny_llama.tokenizer, r["prompt"], r["rejected"])) for r in triples]
    per_ckpt = []

    def hook(snap):
        if snap.epoch == 0:
            return
        model, tok = snap.lm.model, snap.lm.tokenizer
        mods = trainable_linears(model)
        R, A = loop_less_features(snap, ds, 48)
        V = []
        for r, (rw, rl) in zip(triples, ref):
            model.zero_grad()
            with torch.enable_grad():
                z = 0.1 * ((logp(model, tok, r["prompt"], r["chosen"]) - logp(model, tok, r["prompt"], r["rejected"]))
                           - (rw - rl))
                (-torch.nn.functional.logsigmoid(z)).backward()
            V.append(torch.cat([x.weight.grad.reshape(-1) for _, x in mods]).double().numpy() @ R)
        model.zero_grad()
        V = np.stack(V)
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        C = A @ V.T
        per_ckpt.append(np.stack([C[:, tasks == k].mean(1) for k in sorted(set(tasks))], 1))

    warm = np.flatnonzero(t["warmup"]).tolist()
    tr = finetune(tiny_llama, ds.subset(warm),
                  TrainConfig(method="lora", template="alpaca", epochs=2, learning_rate=1e-2, batch_size=2,
                              loss_weighting="example",   # ROSE's warm-up: batch 1 per device, 4 devices
                              max_length=2048, lora_r=4, lora_alpha=8, lora_dropout=0.0,
                              lora_targets="q_proj,k_proj,v_proj,o_proj"), progress=False, on_epoch=hook)
    lr = np.array([np.mean([r["lr"] for r in tr.log if r["epoch"] == e]) for e in (1, 2)])
    S = (lr[0] * per_ckpt[0] + lr[1] * per_ckpt[1]) / lr.sum()
    np.testing.assert_allclose(t["score"], S.max(1), rtol=1e-3, atol=1e-4)
    np.testing.assert_allclose(t["rose_math"], S[:, 0], rtol=1e-3, atol=1e-4)


def test_preference_target_errors_name_the_line_and_field(tiny_llama, alpaca_file, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "a", "chosen": "b", "rejected": "c"}) + "\n"
                   + json.dumps({"prompt": "a", "chosen": "b"}) + "\n")
    with pytest.raises(tunesift.DataError, match=r"bad.jsonl, line 2, field 'rejected'"):
        tunesift.score(alpaca_file, "rose", lm=tiny_llama, use_cache=False, progress=False, target=str(bad), **KW)
    with pytest.raises(tunesift.TunesiftError, match="-p target=PATH"):
        tunesift.score(alpaca_file, "rose", lm=tiny_llama, use_cache=False, progress=False)
