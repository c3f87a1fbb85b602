"""Superfiltering.D's embedding against code_diversity_fla/do_fla.py: its text and its truncation length."""
import copy
import json

import numpy as np
import pytest

import tunesift

LONG = " ".join(["the quick brown fox jumps over the lazy dog"] * 16)   # ~370 tokens: past 256, within 512
RECS = [
    {"instruction": "Give three tips for staying healthy.", "input": "", "output": "Eat well, exercise, and sleep."},
    {"instruction": "Translate to German.", "input": "good morning", "output": "Guten Morgen."},
    {"instruction": "What is the capital of France?", "output": "The capital of France is Paris."},   # no input field
    {"instruction": "Repeat the text.", "output": LONG},
]


def official_text(r):
    """combine_sentences, emb_type whole."""
    head = r["instruction"] + "\n" + r["input"] + "\n" if "input" in r else r["instruction"] + "\n"
    return head + r["output"]


class Recorder:
    name = "recorder"

    def __init__(self):
        self.texts = []

    def encode(self, texts, desc=""):
        self.texts += list(texts)
        return np.eye(len(texts), 8, dtype=np.float32)


def test_embeds_the_code_text(tiny_gpt2, tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(RECS))
    emb = Recorder()
    res = tunesift.select(p, "superfiltering-d", 1, lm=tiny_gpt2, embedder=emb, use_cache=False, progress=False,
                          ifd_share=1.0)
    top = res.method.top_
    assert len(top) >= 2
    assert emb.texts == [official_text(RECS[i]) for i in top]


@pytest.fixture
def minilm_like(tiny_tokenizer, tmp_path):
    """A tiny BERT whose tokenizer, like all-MiniLM-L6-v2's, allows 512 tokens, behind the run's Embedder (256)."""
    import torch
    from transformers import BertConfig, BertModel
    from tunesift.signals.embeddings import Embedder
    tok = copy.deepcopy(tiny_tokenizer)
    tok.model_max_length = 512
    torch.manual_seed(0)
    enc = BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=512))
    return Embedder(encoder=enc, tokenizer=tok, device="cpu", progress=False, cache_dir=str(tmp_path / "emb"))


def _official_embedding(emb, text):
    """get_sentence_embeddings for one sentence: truncation=True with no max_length, mean pooling, L2."""
    import torch
    enc = emb.tokenizer([text], padding=True, truncation=True, return_tensors="pt")
    assert 256 < enc["input_ids"].shape[1] <= 512
    with torch.no_grad():
        h = emb.model(**enc)[0]
    m = enc["attention_mask"].unsqueeze(-1).float()
    v = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
    return torch.nn.functional.normalize(v, p=2, dim=1)[0].numpy()


def test_embeds_at_the_tokenizer_limit(tiny_gpt2, minilm_like, tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps(RECS))
    res = tunesift.select(p, "superfiltering-d", 1, lm=tiny_gpt2, embedder=minilm_like, use_cache=False,
                          progress=False, ifd_share=1.0)
    top = list(res.method.top_)
    if 3 not in top:
        pytest.skip("the long example is not under IFD 1 with this tiny model")
    got = res.method.embeddings_[top.index(3)]
    want = _official_embedding(minilm_like, official_text(RECS[3]))
    np.testing.assert_allclose(got, want, atol=1e-5)
    old = tunesift.select(p, "superfiltering-d", 1, lm=tiny_gpt2, embedder=minilm_like, use_cache=False,
                          progress=False, ifd_share=1.0, embed_length="run")
    assert not np.allclose(old.method.embeddings_[top.index(3)], want, atol=1e-5)   # cut at 256
