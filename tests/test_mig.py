"""MIG against its definition: label graph, propagation, concave information, linearised greedy."""
import json

import numpy as np
import pytest

import tunesift
from tunesift.data import TunesiftError

TAGGED = [
    {"instruction": "Write a poem about the sea.", "input": "", "output": "Waves...", "tags": ["poetry", "sea"], "q": 3.0},
    {"instruction": "Sum 2 and 3.", "input": "", "output": "5", "tags": ["math", "arithmetic"], "q": 1.0},
    {"instruction": "A haiku on rain.", "input": "", "output": "Rain...", "tags": ["poetry", "weather"], "q": 2.5},
    {"instruction": "Multiply 4 by 6.", "input": "", "output": "24", "tags": ["math"], "q": 2.0},
    {"instruction": "Describe a storm.", "input": "", "output": "Dark...", "tags": ["weather", "description"], "q": 1.5},
    {"instruction": "Translate hello.", "input": "", "output": "Hallo", "tags": ["translation"], "q": 0.5},
]


def test_mig_matches_definition(tiny_embedder, tmp_path):
    p = tmp_path / "tagged.json"
    p.write_text(json.dumps(TAGGED))
    res = tunesift.select(p, "mig", 3, embedder=tiny_embedder, use_cache=False, progress=False, quality="q",
                          sim_threshold=0.5)
    vocab = sorted({t for r in TAGGED for t in r["tags"]})
    E = tiny_embedder.encode(vocab).astype(np.float64)
    W = E @ E.T
    W[W < 0.5] = 0
    P = W / W.sum(0)                      # prop_weight 1: diagonal and off-diagonal alike
    V = np.zeros((len(TAGGED), len(vocab)))
    for i, r in enumerate(TAGGED):
        for t in r["tags"]:
            V[i, vocab.index(t)] = r["q"]
    U = V @ P
    X, picks, gains = np.zeros(len(vocab)), [], []
    for _ in range(3):
        g = 0.8 * (X + 1e-6) ** (0.8 - 1)
        gain = U @ g
        gain[picks] = -np.inf
        i = int(np.argmax(gain))
        picks.append(i)
        gains.append(gain[i])
        X += U[i]
    assert list(res.selected_indices) == picks
    np.testing.assert_allclose(res.table.loc[picks, "score"], gains, rtol=1e-6)


def test_mig_needs_labels_or_the_keyword_stand_in(tiny_embedder, alpaca_file):
    with pytest.raises(TunesiftError, match="field 'tags'"):
        tunesift.select(alpaca_file, "mig", 2, embedder=tiny_embedder, use_cache=False, progress=False)
    res = tunesift.select(alpaca_file, "mig", 2, embedder=tiny_embedder, use_cache=False, progress=False,
                          labels_field="keywords")
    assert len(res.selected_indices) == 2


def _official_mig(tags_per_example, scores, E_of, k, threshold):
    """mig/data.py, label.py and sampler.py written out: whitelist-filtered labels, thresholded cosine
    graph, column-normalised propagation, linearised greedy with phi = pow."""
    vocab = sorted({t for ts in tags_per_example for t in ts})
    E = np.asarray(E_of(vocab), np.float64)
    W = E @ E.T
    W = np.where(W >= threshold, W, 0.0)
    P = W / W.sum(0)
    V = np.zeros((len(tags_per_example), len(vocab)))
    for i, ts in enumerate(tags_per_example):
        for t in ts:
            V[i, vocab.index(t)] = scores[i]
    U = V @ P
    X, picks = np.zeros(len(vocab)), []
    for _ in range(k):
        gain = U @ (0.8 * (X + 1e-6) ** (0.8 - 1))
        gain[picks] = -np.inf
        picks.append(int(np.argmax(gain)))
        X += U[picks[-1]]
    return picks


@pytest.mark.parametrize("spec", ["file", "comma"])
def test_mig_keeps_only_valid_tags(tiny_embedder, tmp_path, spec):
    p = tmp_path / "tagged.json"
    p.write_text(json.dumps(TAGGED))
    valid = ["poetry", "math", "weather", "translation"]
    if spec == "file":
        (tmp_path / "valid.json").write_text(json.dumps(valid))
        arg = str(tmp_path / "valid.json")
    else:
        arg = ",".join(valid)
    res = tunesift.select(p, "mig", 3, embedder=tiny_embedder, use_cache=False, progress=False, quality="q",
                          sim_threshold=0.5, valid_tags=arg)
    kept = [[t for t in r["tags"] if t in valid] for r in TAGGED]        # data.py:53
    want = _official_mig(kept, [r["q"] for r in TAGGED], tiny_embedder.encode, 3, 0.5)
    assert list(res.selected_indices) == want
    unfiltered = tunesift.select(p, "mig", 3, embedder=tiny_embedder, use_cache=False, progress=False, quality="q",
                                 sim_threshold=0.5)
    assert list(unfiltered.selected_indices) != want     # the whitelist changes the picks here


def test_mig_label_embedder_lm_last(tiny_embedder, tiny_llama, tmp_path):
    import torch
    p = tmp_path / "tagged.json"
    p.write_text(json.dumps(TAGGED))
    res = tunesift.select(p, "mig", 3, lm=tiny_llama, embedder=tiny_embedder, use_cache=False, progress=False,
                          quality="q", sim_threshold=0.3, label_embedder="lm-last")

    def last_token(labels):
        out = []
        for t in labels:
            ids = tiny_llama.tokenizer(t, return_tensors="pt").input_ids
            with torch.no_grad():
                h = tiny_llama.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0, -1].double()
            out.append((h / h.norm()).numpy())
        return out

    want = _official_mig([r["tags"] for r in TAGGED], [r["q"] for r in TAGGED], last_token, 3, 0.3)
    assert list(res.selected_indices) == want
