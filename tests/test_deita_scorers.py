"""deita-scorers against DEITA's rule recomputed here one prompt at a time with plain forwards:
E[score] = sum_k k softmax(logits of "1".."6") after DEITA's prompts; DEITA = sum_t complexity_t x quality_t."""
import json

import numpy as np
import pytest
import torch

import tunesift
from tunesift.data import read_dataset

# DEITA's prompts, typed out again from llama_scorer.py (not imported: the test checks the module's copy)
COMPLEXITY = ("You are a helpful assistant. Please identify the complexity score of the following user query. \n"
              "##Query: {q}  \n##Complexity: ")
QUALITY = ("You are a helpful assistant. Please identify the quality score of the Response corresponding to the "
           "Question. \n #Question#:\n{q}\n#Response#:\n{a} \n##Quality: ")


def _expected(lm, text):
    tok, model = lm.tokenizer, lm.model
    ids = torch.tensor([tok(text).input_ids])
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0, -1].double()
    six = torch.stack([logits[tok.encode(d, add_special_tokens=False)[0]] for d in "123456"])
    p = torch.softmax(six, -1).numpy()
    return float(sum((k + 1) * p[k] for k in range(6)))


def test_deita_scores_match_the_formula(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file)
    res = tunesift.score(ds, "deita-scorers", lm=tiny_llama, use_cache=False, progress=False)
    t = res.table
    for i, rec in enumerate(json.loads(alpaca_file.read_text())):
        q = rec["instruction"] + ("\n" + rec["input"] if rec["input"] else "")
        c = _expected(tiny_llama, COMPLEXITY.format(q=q))
        qu = _expected(tiny_llama, QUALITY.format(q=q, a=rec["output"]))
        assert t["complexity"][i] == pytest.approx(c, rel=1e-6)
        assert t["quality"][i] == pytest.approx(qu, rel=1e-6)
        assert t["score"][i] == pytest.approx(c * qu, rel=1e-6)
    assert t["complexity"].between(1, 6).all() and not t["truncated"].any()
    sel = tunesift.select(ds, "deita-scorers", 3, lm=tiny_llama, use_cache=False, progress=False, score="quality")
    assert set(sel.selected_indices) == set(np.argsort(-t["quality"].to_numpy(), kind="stable")[:3])


def test_multi_turn_sums_products_over_turns(tiny_llama, tmp_path):
    conv = [{"from": "human", "value": "What is 2 + 3?"}, {"from": "gpt", "value": "5"},
            {"from": "human", "value": "And times 2?"}, {"from": "gpt", "value": "10"}]
    p = tmp_path / "chat.json"
    p.write_text(json.dumps([{"conversations": conv}]))
    res = tunesift.score(p, "deita-scorers", lm=tiny_llama, use_cache=False, progress=False)
    want = sum(_expected(tiny_llama, COMPLEXITY.format(q=q)) * _expected(tiny_llama, QUALITY.format(q=q, a=a))
               for q, a in [("What is 2 + 3?", "5"), ("And times 2?", "10")])
    assert res.table["score"][0] == pytest.approx(want, rel=1e-6)
    assert res.table["turns_scored"][0] == 2
    last = tunesift.score(p, "deita-scorers", lm=tiny_llama, use_cache=False, progress=False, score_turns="last")
    assert last.table["score"][0] == pytest.approx(
        _expected(tiny_llama, COMPLEXITY.format(q="And times 2?")) * _expected(tiny_llama, QUALITY.format(q="And times 2?", a="10")),
        rel=1e-6)


def test_separate_scorer_path_and_deita_filter_consumes_it(tiny_llama, tiny_model_dir, tiny_embedder, alpaca_file):
    ds = read_dataset(alpaca_file)
    own = tunesift.score(ds, "deita-scorers", lm=tiny_llama, use_cache=False, progress=False)
    # tiny_model_dir holds tiny_llama's weights: a scorer loaded by path gives the same scores
    by_path = tunesift.score(ds, "deita-scorers", lm=tiny_llama, use_cache=False, progress=False, device="cpu",
                             dtype="float32", scorer=str(tiny_model_dir))
    np.testing.assert_allclose(by_path.table["score"], own.table["score"], rtol=1e-5)
    filt = tunesift.select(ds, "deita-filter", 3, lm=tiny_llama, embedder=tiny_embedder, use_cache=False,
                           progress=False, score="deita-scorers")
    assert filt.table.loc[filt.selected_indices[0], "quality"] == pytest.approx(1.0)   # the best DEITA score first
    assert filt.selected_indices[0] == int(np.argmax(own.table["score"].to_numpy()))
