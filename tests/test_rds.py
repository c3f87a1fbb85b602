"""RDS+ against the official rule recomputed here: one example per forward pass, hidden_states[-1]
weighted by position (t / sum s), cosine to each target example, and the round-robin pop loop of
get_top_influences.py written out with lists."""
import json

import numpy as np
import pytest
import torch

import tunesift
from tunesift.data import read_dataset

TARGET = [("What is 2 + 3?", "5"), ("Translate to German: thank you.", "Danke."), ("Name a fruit.", "An apple.")]


@pytest.fixture
def target_file(tmp_path):
    p = tmp_path / "target.jsonl"
    p.write_text("\n".join(json.dumps({"instruction": q, "input": "", "output": a}) for q, a in TARGET))
    return p


def _tulu(user, answer, eos):
    return ("<|user|>\n" + user.strip() + "\n" + "<|assistant|>\n" + answer.strip() + eos + "\n").strip()


def _vec(lm, text, pooling="weighted_mean"):
    ids = torch.tensor([lm.tokenizer(text).input_ids])
    with torch.no_grad():
        h = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].double()
    L = h.shape[0]
    if pooling == "weighted_mean":
        w = torch.arange(1, L + 1, dtype=torch.float64)
        v = (h * (w / w.sum())[:, None]).sum(0)
    else:
        v = h.mean(0)
    return (v / v.norm()).numpy()


def _official_round_robin(S, k):
    lists = {j: sorted(((i, S[i, j]) for i in range(S.shape[0])), key=lambda x: x[1], reverse=True)
             for j in range(S.shape[1])}
    saved = []
    while len(saved) < k:
        for j in lists:
            inst, _ = lists[j].pop(0)
            saved.append(inst)
            saved = list(dict.fromkeys(saved))
    return saved[:k]


@pytest.mark.parametrize("pooling", ["weighted_mean", "mean"])
def test_rds_matches_official_rule(tiny_llama, alpaca_file, target_file, tmp_path, pooling):
    recs = json.loads(alpaca_file.read_text())
    eos = tiny_llama.tokenizer.eos_token
    P = np.stack([_vec(tiny_llama, _tulu(r["instruction"] + ("\n" + r["input"] if r["input"] else ""), r["output"], eos),
                       pooling) for r in recs])
    T = np.stack([_vec(tiny_llama, _tulu(q, a, eos), pooling) for q, a in TARGET])
    S = P @ T.T
    sel = tunesift.select(alpaca_file, "rds", 5, lm=tiny_llama, cache_dir=str(tmp_path / "c"), progress=False,
                          target=str(target_file), pooling=pooling)
    np.testing.assert_allclose(sel.table["score"], S.max(axis=1), rtol=1e-4, atol=1e-5)
    assert list(sel.selected_indices) == _official_round_robin(S, 5)
    # the other aggregations: top-k by the best or the mean cosine
    for agg, s in (("max", S.max(axis=1)), ("mean", S.mean(axis=1))):
        got = tunesift.select(alpaca_file, "rds", 3, lm=tiny_llama, cache_dir=str(tmp_path / "c"), progress=False,
                              target=str(target_file), pooling=pooling, aggregation=agg)
        assert list(got.selected_indices) == list(np.argsort(-s, kind="stable")[:3])


def test_round_robin_differs_from_top_k_and_is_cached(tiny_llama, alpaca_file, target_file, tmp_path):
    from tunesift.methods.rds import round_robin
    S = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.1, 0.25]])
    assert list(round_robin(S, 2)) == [0, 2]            # top-k by max would take 0 and 1
    assert list(round_robin(S, 3)) == [0, 2, 1]
    ds = read_dataset(alpaca_file)
    a = tunesift.score(ds, "rds", lm=tiny_llama, cache_dir=str(tmp_path), progress=False, target=str(target_file))
    b = tunesift.score(ds, "rds", lm=tiny_llama, cache_dir=str(tmp_path), progress=False, target=str(target_file))
    np.testing.assert_array_equal(a.table["score"], b.table["score"])
    assert b.method.similarity_.shape == (len(ds), len(TARGET))
