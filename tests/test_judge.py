"""The rating judges read the bare digit tokens, also with a SentencePiece-style tokenizer."""
import numpy as np
import pytest
import torch

from tunesift.methods import Context
from tunesift.methods._judging import RATING_PROMPTS, PairJudge, rating_text
from tunesift.models import RatingJudge, wrap_model
from tunesift.models.judge import rating_token_ids
from tunesift.signals import LikelihoodEngine

from .conftest import build_tiny
from .test_selectit import _sentencepiece_tokenizer


@pytest.fixture(scope="module")
def sp_lm():
    tok = _sentencepiece_tokenizer()
    return wrap_model(build_tiny("llama", tok, seed=5), tok, "tiny-sp-llama")


def _bare_digit_probs(lm, text):
    vocab = lm.tokenizer.get_vocab()
    with torch.no_grad():
        p = torch.softmax(lm.model(input_ids=torch.tensor([lm.tokenizer(text).input_ids])).logits[0, -1].double(), -1)
    return np.array([float(p[vocab[d]]) for d in "12345"])


def test_rating_token_ids_on_byte_level_and_sentencepiece(tiny_tokenizer, sp_lm):
    for tok in (tiny_tokenizer, sp_lm.tokenizer):
        assert rating_token_ids(tok) == [tok.get_vocab()[d] for d in "12345"]


def test_local_judges_on_a_sentencepiece_tokenizer(sp_lm):
    texts = [rating_text(RATING_PROMPTS[0], q, a) for q, a in
             (("What is the capital of France?", "Paris."), ("Translate to German: good morning.", "Guten Morgen."))]
    want = [_bare_digit_probs(sp_lm, t) for t in texts]
    res = RatingJudge("local", lm=sp_lm, engine=LikelihoodEngine(sp_lm, max_length=512)).distribution(texts)
    for row, P in zip(res.probs, want):
        np.testing.assert_allclose(row, P / P.sum(), rtol=1e-5)
    got = PairJudge()(Context(lm=sp_lm, use_cache=False, progress=False),
                      ["What is the capital of France?", "Translate to German: good morning."],
                      ["Paris.", "Guten Morgen."])
    np.testing.assert_allclose(got, [(P / P.sum()) @ np.arange(1, 6) for P in want], rtol=1e-5)
