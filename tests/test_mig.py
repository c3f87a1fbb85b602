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
