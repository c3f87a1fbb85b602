"""--embedder PATH pools as the encoder's sentence-transformers config says (CLS here), not always mean."""
import json

import numpy as np
import pytest
import torch

from tunesift.signals.embeddings import Embedder
from tunesift.signals.pooling import parse_pooling, pooling_config

TEXTS = ["a short one", "a somewhat longer text that pads the first one in its batch", "x"]


def _save_encoder(d, tok, pooling: dict | None):
    from transformers import BertConfig, BertModel
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=len(tok), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=512)).save_pretrained(d)
    tok.save_pretrained(d)
    if pooling is not None:
        (d / "1_Pooling").mkdir()
        (d / "1_Pooling" / "config.json").write_text(json.dumps({"word_embedding_dimension": 32, **pooling}))
        (d / "modules.json").write_text(json.dumps([
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"}]))
    return d


def _by_hand(d, tok, rule):
    """Each text alone (no padding): the first token's state, or the mean over its tokens; then L2."""
    from transformers import AutoModel
    m = AutoModel.from_pretrained(d).eval()
    out = []
    for t in TEXTS:
        with torch.no_grad():
            h = m(**tok([t], return_tensors="pt")).last_hidden_state[0]
        v = h[0] if rule == "cls" else h.mean(0)
        out.append((v / v.norm()).numpy())
    return np.stack(out)


CLS = {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False, "pooling_mode_max_tokens": False,
       "pooling_mode_mean_sqrt_len_tokens": False}


def test_cls_config_is_read_and_applied(tmp_path, tiny_tokenizer):
    d = _save_encoder(tmp_path / "cls-enc", tiny_tokenizer, CLS)
    assert pooling_config(d) == ("cls",)
    got = Embedder(str(d), device="cpu", progress=False, use_cache=False).encode(TEXTS)
    np.testing.assert_allclose(got, _by_hand(d, tiny_tokenizer, "cls"), atol=1e-5)
    # what the old rule (always mean) gave is something else
    assert not np.allclose(got, _by_hand(d, tiny_tokenizer, "mean"), atol=1e-3)


def test_no_config_means_mean_and_explicit_pooling_overrides(tmp_path, tiny_tokenizer):
    d = _save_encoder(tmp_path / "plain-enc", tiny_tokenizer, None)
    assert pooling_config(d) is None
    got = Embedder(str(d), device="cpu", progress=False, use_cache=False).encode(TEXTS)
    np.testing.assert_allclose(got, _by_hand(d, tiny_tokenizer, "mean"), atol=1e-5)
    forced = Embedder(str(d), device="cpu", progress=False, use_cache=False, pooling="cls").encode(TEXTS)
    np.testing.assert_allclose(forced, _by_hand(d, tiny_tokenizer, "cls"), atol=1e-5)


def test_config_flags_follow_sentence_transformers_defaults(tmp_path):
    (tmp_path / "1_Pooling").mkdir()
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert pooling_config(tmp_path) == ("cls", "mean")     # mean defaults on when the key is absent
    (tmp_path / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode": "lasttoken"}))
    assert pooling_config(tmp_path) == ("lasttoken",)
    assert parse_pooling("mean+cls") == ("cls", "mean")
    with pytest.raises(Exception, match="pooling"):
        parse_pooling("first")


def test_concatenated_pooling_is_refused_clearly(tmp_path, tiny_tokenizer):
    d = _save_encoder(tmp_path / "cat-enc", tiny_tokenizer, {"pooling_mode_cls_token": True})   # + mean by default
    with pytest.raises(Exception, match="concatenated"):
        Embedder(str(d), device="cpu", progress=False, use_cache=False)


@pytest.mark.parametrize("mode", ["max", "mean_sqrt_len", "weightedmean", "lasttoken"])
def test_every_mode_matches_its_rule_per_example(tmp_path, tiny_tokenizer, mode):
    """Padded batch vs each text alone, by sentence-transformers' rule for the mode (Pooling.forward)."""
    from transformers import AutoModel
    d = _save_encoder(tmp_path / "enc", tiny_tokenizer, None)
    got = Embedder(str(d), device="cpu", progress=False, use_cache=False, pooling=mode, normalize=False).encode(TEXTS)
    m = AutoModel.from_pretrained(d).eval()
    for t, row in zip(TEXTS, got):
        with torch.no_grad():
            h = m(**tiny_tokenizer([t], return_tensors="pt")).last_hidden_state[0]
        n = h.shape[0]
        want = {"max": lambda: h.max(0).values,
                "mean_sqrt_len": lambda: h.sum(0) / n ** 0.5,
                "weightedmean": lambda: (h * torch.arange(1, n + 1)[:, None]).sum(0) / (n * (n + 1) / 2),
                "lasttoken": lambda: h[-1]}[mode]()
        np.testing.assert_allclose(row, want.numpy(), atol=1e-5)
