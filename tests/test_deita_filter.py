"""DEITA's score-first filter against its official rule: conversation text, last-token embedding, > threshold."""
import json

import numpy as np
import pytest

import tunesift
from tunesift.data import read_dataset
from tunesift.methods.deita_filter import deita_conversation

# Unit vectors with exact dot products: 0.5 between the first and the second, a tie at DEITA's threshold.
VECS = {"alpha": [1, 0, 0, 0], "beta": [0.5, 0.5, 0.5, 0.5], "gamma": [0.5, 0.5, 0.5, 0.5],
        "delta": [0, 0, 0, 1], "eps": [0, -1, 0, 0]}
RECS = [{"instruction": f"task {k}", "input": "", "output": "ok", "q": q}
        for k, q in zip(VECS, [5.0, 4.0, 3.0, 2.0, 1.0])]


class FixedEmbedder:
    """Each text's vector by the task name it contains."""
    name = "fixed"

    def __init__(self):
        self.texts = []

    def encode(self, texts, desc=""):
        self.texts += list(texts)
        return np.array([next(VECS[k] for k in VECS if f"task {k}" in t) for t in texts], dtype=np.float64)


def official_filter(vecs, scores, k, threshold):
    """selection/filter/base.py with batch_size 1: best score first; drop a row whose cosine to any kept
    row is > threshold."""
    order = sorted(range(len(vecs)), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        a = np.asarray(vecs[i], float)
        close = False
        for j in kept:
            b = np.asarray(vecs[j], float)
            if a @ b / (np.linalg.norm(a) * np.linalg.norm(b)) > threshold:
                close = True
        if not close:
            kept.append(i)
        if len(kept) >= k:
            break
    return kept


def test_rejects_only_above_the_threshold(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(RECS))
    vecs = [VECS[k] for k in VECS]
    want = official_filter(vecs, [r["q"] for r in RECS], 4, 0.5)
    res = tunesift.select(p, "deita-filter", 4, embedder=FixedEmbedder(), use_cache=False, progress=False,
                          score="q", threshold=0.5)
    assert list(res.selected_indices) == want == [0, 1, 3, 4]   # beta's cosine 0.5 to alpha is not > 0.5
    old = tunesift.select(p, "deita-filter", 4, embedder=FixedEmbedder(), use_cache=False, progress=False,
                          score="q", threshold=0.5, at_threshold="reject")
    assert list(old.selected_indices) == [0, 3, 4]              # the old >= rule drops beta too


def test_embeds_the_conversation_in_deitas_vicuna_template(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(RECS[:2]))
    emb = FixedEmbedder()
    tunesift.select(p, "deita-filter", 2, embedder=emb, use_cache=False, progress=False, score="q")
    system = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
              "helpful, detailed, and polite answers to the user's questions.")
    assert emb.texts == [system + " USER: task alpha ASSISTANT: ok</s>", system + " USER: task beta ASSISTANT: ok</s>"]


def test_conversation_rendering_multi_turn_and_roles(tmp_path):
    p = tmp_path / "s.json"
    p.write_text(json.dumps([{"conversations": [
        {"from": "gpt", "value": "Welcome."}, {"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello"},
        {"from": "human", "value": "More?"}, {"from": "gpt", "value": "Sure."}]}]))
    e = read_dataset(p).examples[0]
    # a leading assistant turn is skipped, as DEITA's preprocess does; each turn keeps its separator
    assert deita_conversation(e).endswith(" USER: Hi ASSISTANT: Hello</s>USER: More? ASSISTANT: Sure.</s>")
    assert "Welcome." not in deita_conversation(e)


def _official_last_token(lm, text, max_length=2048):
    """clm_embedder.py per example: tokenise (special tokens included), last position's final hidden
    state, then the filter's L2 normalisation."""
    import torch
    ids = lm.tokenizer(text, truncation=True, max_length=max_length, return_tensors="pt").input_ids
    with torch.no_grad():
        h = lm.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1].double()
    return (h / h.norm()).numpy()


def test_lm_last_embedder_is_the_last_token_state(tiny_llama):
    from tunesift.signals.embeddings import LastTokenEmbedder
    texts = ["short", "a somewhat longer text about the quick brown fox", "mid length text"]
    got = LastTokenEmbedder(tiny_llama, batch_tokens=64, use_cache=False, progress=False).encode(texts)
    for t, g in zip(texts, got):
        np.testing.assert_allclose(g, _official_last_token(tiny_llama, t), atol=1e-5)


def test_deita_filter_with_lm_last(tiny_llama, alpaca_file, tmp_path):
    ds = read_dataset(alpaca_file)
    res = tunesift.select(ds, "deita-filter", 8, lm=tiny_llama, embedder="lm-last", cache_dir=str(tmp_path),
                          progress=False, score="ifd", threshold=0.2)
    vecs = [_official_last_token(tiny_llama, deita_conversation(e)) for e in ds.examples]
    q = res.table["quality"].to_numpy()
    elig = res.table["eligible"].to_numpy()
    pool = [i for i in range(len(ds)) if elig[i]]
    want = official_filter([vecs[i] for i in pool], [q[i] for i in pool], 8, 0.2)
    assert list(res.selected_indices) == [pool[i] for i in want]
    assert 0 < len(want) < len(pool)   # the threshold bites
