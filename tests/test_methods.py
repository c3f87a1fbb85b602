"""Method formulas computed independently here (plain per-example forwards) and compared, plus one
conformance test over every registered method."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import tunesift
from tunesift.api import SCHEMA
from tunesift.methods import available_methods

from .conftest import ALPACA

CHERRY_NO_INPUT = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                   "the request.\n\n### Instruction:\n{instruction}\n\n### Response:")
CHERRY_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                "Write a response that appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n"
                "### Input:\n{input}\n\n### Response:")


def loss_of(lm, prefix: str, target: str) -> float:
    """Authors' style: tokenize the whole text, mask the tokens of the prefix, HF mean loss."""
    tok, model = lm.tokenizer, lm.model
    ids = torch.tensor([tok(prefix + target)["input_ids"]])
    start = len(tok(prefix)["input_ids"]) if prefix else 0
    labels = ids.clone()
    labels[0, :start] = -100
    with torch.no_grad():
        return model(input_ids=ids, labels=labels).loss.item()


def cherry_prompt(rec):
    return (CHERRY_INPUT if rec["input"] else CHERRY_NO_INPUT).format(**rec)


def test_ifd_matches_paper_formula(tiny_llama, alpaca_file, tmp_path):
    res = tunesift.score(alpaca_file, "ifd", lm=tiny_llama, cache_dir=tmp_path, progress=False)
    for i, rec in enumerate(ALPACA):
        cond = loss_of(tiny_llama, cherry_prompt(rec), rec["output"])
        direct = loss_of(tiny_llama, "### Response:", rec["output"])
        assert res.table.loc[i, "ifd"] == pytest.approx(cond / direct, rel=1e-4)
    ppl = tunesift.score(alpaca_file, "ifd", lm=tiny_llama, cache_dir=tmp_path, progress=False, variant="ppl_ratio")
    rec = ALPACA[1]
    want = math.exp(loss_of(tiny_llama, cherry_prompt(rec), rec["output"])) / math.exp(
        loss_of(tiny_llama, "### Response:", rec["output"]))
    assert ppl.table.loc[1, "ifd"] == pytest.approx(want, rel=1e-4)
    # the selection rule: eligible iff IFD <= 1 (long examples are kept: tests/test_ifd_family.py)
    t = res.table
    assert (t["eligible"] == (t["ifd"] <= 1)).all()


def test_superfiltering_matches_code_formula(tiny_gpt2, alpaca_file, tmp_path):
    res = tunesift.score(alpaca_file, "superfiltering", lm=tiny_gpt2, cache_dir=tmp_path, progress=False)
    for i, rec in enumerate(ALPACA):
        prompt = f"{rec['instruction']}\n{rec['input']}\n" if rec["input"] else f"{rec['instruction']}\n"
        cond = loss_of(tiny_gpt2, prompt, rec["output"])
        direct = loss_of(tiny_gpt2, "", rec["output"])   # bare response; no BOS: first token unscored
        assert res.table.loc[i, "ifd"] == pytest.approx(math.exp(cond) / math.exp(direct), rel=1e-4)
    t = res.table
    assert (t["eligible"] == (t["ifd"] < 1)).all()


def test_rifd_matches_code_formula(tiny_llama, alpaca_file, tmp_path):
    from tunesift.methods.rifd import REVERSE
    vic = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
           "detailed, and polite answers to the user's questions. USER: {instruction} ASSISTANT:")
    res = tunesift.score(alpaca_file, "rifd", lm=tiny_llama, cache_dir=tmp_path, progress=False)
    rec = ALPACA[6]   # has an input
    rev_prompt = vic.format(instruction=REVERSE.format(response=rec["output"]))
    x = rec["instruction"] + rec["input"]
    want = math.exp(loss_of(tiny_llama, rev_prompt, x)) / math.exp(loss_of(tiny_llama, "", x))
    assert res.table.loc[6, "rifd"] == pytest.approx(want, rel=1e-4)
    t = res.table
    assert (t["eligible"] == ((t["ifd"] < 1) & (t["rifd"] < 1))).all()


def test_grape_keeps_best_fitting_response_per_instruction(tiny_llama, tmp_path):
    recs = [{"instruction": "Name a color.", "input": "", "output": o} for o in ("Blue.", "The color blue.", "zzzz qqq")]
    recs += [{"instruction": "Count to three.", "input": "", "output": o} for o in ("1, 2, 3", "one two three")]
    p = tmp_path / "g.json"
    p.write_text(json.dumps(recs))
    res = tunesift.select(p, "grape", lm=tiny_llama, cache_dir=tmp_path, progress=False)
    t = res.table
    for g in (0, 1):
        rows = t[t["group"] == g]
        fits = [-loss_of(tiny_llama, cherry_prompt(recs[i]), recs[i]["output"]) for i in rows.index]
        assert rows.index[int(np.argmax(fits))] in set(res.selected_indices)
    assert len(res.selected_indices) == 2


def test_perplexity_bands(tiny_llama, alpaca_file, tmp_path):
    kw = dict(lm=tiny_llama, cache_dir=tmp_path, progress=False, template="alpaca")
    low = tunesift.select(alpaca_file, "perplexity", 2, **kw)
    high = tunesift.select(alpaca_file, "perplexity", 2, band="high", **kw)
    ppl = low.table["ppl"].to_numpy()
    assert set(low.selected_indices) == set(np.argsort(ppl)[:2])
    assert set(high.selected_indices) == set(np.argsort(-ppl)[:2])


def test_random_is_seeded(alpaca_file):
    a = tunesift.select(alpaca_file, "random", 3, seed=1, progress=False).selected_indices
    b = tunesift.select(alpaca_file, "random", 3, seed=1, progress=False).selected_indices
    c = tunesift.select(alpaca_file, "random", 3, seed=2, progress=False).selected_indices
    assert list(a) == list(b) and len(a) == 3 and set(a) != set(c)


# Methods that train or generate inside selection: the same code paths, smaller settings.
LIGHT = {"mods": lambda tmp: dict(epochs=1, max_new_tokens=8),
         "learning-percentage": lambda tmp: dict(epochs=2),
         "diverseevol": lambda tmp: dict(rounds=2, epochs=1),
         "lead": lambda tmp: dict(lora_targets="all-linear", warmup_fraction=0.5, learning_rate=1e-2, batch_size=2),
         "less": lambda tmp: dict(target=str(_target_set(tmp)), epochs=2, lora_r=4, lora_alpha=8, proj_dim=32,
                                  warmup_fraction=0.5, learning_rate=1e-2, batch_size=2),
         "g2is": lambda tmp: dict(target=str(_target_set(tmp)), epochs=2, lora_r=4, lora_alpha=8, proj_dim=32,
                                  warmup_fraction=0.5, learning_rate=1e-2, batch_size=2, graph_k=3),
         "rose": lambda tmp: dict(target=str(_preference_set(tmp)), task_field="task", epochs=2, lora_r=4,
                                  lora_alpha=8, proj_dim=32, warmup_fraction=0.5, learning_rate=1e-2, batch_size=2),
         "bids": lambda tmp: dict(target=str(_target_set(tmp)), task_field="task", epochs=2, lora_r=4, lora_alpha=8,
                                  proj_dim=32, warmup_fraction=0.5, learning_rate=1e-2, batch_size=2),
         "instruction-mining": lambda tmp: dict(rule="file", rule_file=str(_rule(tmp))),
         "recost": lambda tmp: dict(corpus=str(_corpus(tmp)), window=4, n_clusters=2),
         "iterselecttune": lambda tmp: dict(rounds=2, batch=3, n_clusters=2, max_new_tokens=4),
         "mig": lambda tmp: dict(labels_field="keywords"),
         "rds": lambda tmp: dict(target=str(_target_set(tmp)))}


def _target_set(tmp):
    p = tmp / "target.jsonl"
    p.write_text("\n".join(json.dumps({"instruction": q, "input": "", "output": a, "task": t}) for q, a, t in [
        ("What is 2 + 3?", "5", "math"), ("What is 4 times 2?", "8", "math"),
        ("Translate to German: thank you.", "Danke.", "language"), ("Name the capital of Italy.", "Rome.", "facts")]))
    return p


def _preference_set(tmp):
    p = tmp / "prefs.jsonl"
    p.write_text("\n".join(json.dumps({"prompt": q, "chosen": a, "rejected": b, "task": t}) for q, a, b, t in [
        ("What is 2 + 3?", "5", "6", "math"), ("Say hello politely.", "Hello, nice to meet you.", "What.", "tone"),
        ("What is 4 times 2?", "8", "It is 10.", "math")]))
    return p


def _corpus(tmp):
    p = tmp / "corpus.jsonl"
    p.write_text("\n".join(json.dumps({"instruction": f"Fact {i}", "input": "", "output": t}) for i, t in enumerate(
        ["Paris is the capital of France.", "Five follows four.", "Foxes are quick.", "Guten Morgen means good morning."])))
    return p


def _rule(tmp):
    p = tmp / "rule.json"
    p.write_text(json.dumps({"intercept": 1.0, "coef": {"ppl": 0.01, "output_len": -0.001, "knn6": 0.1,
                                                        "reward": -0.05, "mtld": -0.002}}))
    return p


@pytest.mark.parametrize("name", sorted(available_methods()))
def test_conformance_every_method(name, tiny_llama, tiny_embedder, alpaca_file, tmp_path):
    """One fixed schema, deterministic selection, budget respected, outputs written for every method."""
    cls = available_methods()[name]
    kw = dict(lm=tiny_llama, embedder=tiny_embedder, cache_dir=tmp_path / "cache", progress=False)
    if "template" in cls.describe()["parameters"] and cls.describe()["parameters"]["template"] in ("auto", "chat"):
        kw["template"] = "alpaca"   # the tiny tokenizer has no chat template
    budget = 3 if name != "superfiltering-d" else 1   # its pool is the top 20% by IFD: 1 of 8 here
    kw.update(LIGHT[name](tmp_path) if name in LIGHT else {})
    res = tunesift.select(alpaca_file, name, budget, output=tmp_path / "sel.jsonl", **kw)
    t = res.table
    assert list(t.columns[: len(SCHEMA)]) == list(SCHEMA)
    assert len(t) == len(ALPACA) and t["eligible"].dtype == bool
    assert (t.loc[~t["eligible"], "reason"] != "").all() and (t.loc[t["eligible"], "reason"] == "").all()
    assert t.loc[res.selected_indices, "score"].notna().all()
    assert len(res.selected_indices) <= 3 and t.loc[res.selected_indices, "eligible"].all()
    again = tunesift.select(alpaca_file, name, budget, **kw)
    assert list(again.selected_indices) == list(res.selected_indices)
    written = [json.loads(l) for l in (tmp_path / "sel.jsonl").read_text().splitlines()]
    assert written == [ALPACA[i] for i in sorted(res.selected_indices)]
    scores = pd.read_parquet(tmp_path / "sel.scores.parquet")
    assert scores["selected"].sum() == len(res.selected_indices)
    man = json.loads((tmp_path / "sel.manifest.json").read_text())
    assert man["method"] == name and man["counts"]["selected"] == len(res.selected_indices)
    assert man["data"]["fingerprint"] == res.dataset.fingerprint
