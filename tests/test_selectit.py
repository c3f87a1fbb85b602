"""SelectIT against its formulas computed here from plain per-text HF forwards."""
import numpy as np
import pytest
import torch

import tunesift
from tunesift.data import read_dataset
from tunesift.methods.selectit import RATING_PROMPTS, instruction_text, rating_text


def _digit_probs(lm, text):
    tok, model = lm.tokenizer, lm.model
    ids = torch.tensor([tok(text).input_ids])
    with torch.no_grad():
        p = torch.softmax(model(input_ids=ids).logits[0, -1].double(), -1)
    return np.array([float(p[tok.encode(d, add_special_tokens=False)[0]]) for d in "12345"])


def _token_score(P, code=False):
    Pn = [p / sum(P) for p in P]
    if code:
        e = [np.exp(p) for p in Pn]
        Pn = [x / sum(e) for x in e]
    b = int(np.argmax(Pn))
    return (b + 1) * sum(Pn[b] - Pn[i] for i in range(5)) / 4


@pytest.mark.parametrize("normalization", ["paper", "token_level_code"])
def test_selectit_matches_formula(tiny_llama, alpaca_file, normalization):
    ds = read_dataset(alpaca_file)
    res = tunesift.score(ds, "selectit", lm=tiny_llama, use_cache=False, progress=False, k=3, alpha=0.2,
                         normalization=normalization)
    for i, e in enumerate(ds.examples):
        tok = [_token_score(_digit_probs(tiny_llama, rating_text(ln, instruction_text(e), e.response)),
                            normalization != "paper") for ln in RATING_PROMPTS[:3]]
        want = np.mean(tok) / (1 + 0.2 * np.std(tok))
        assert res.table["score"][i] == pytest.approx(want, rel=1e-5, abs=1e-9)


def test_selectit_selects_top_20_percent_and_model_level(tiny_llama, tiny_model_dir, alpaca_file, tmp_path):
    ds = read_dataset(alpaca_file)
    sel = tunesift.select(ds, "selectit", lm=tiny_llama, use_cache=False, progress=False, k=2)
    assert len(sel.selected_indices) == round(0.2 * len(ds))
    s = sel.table["score"].to_numpy()
    assert s[sel.selected_indices].min() >= np.delete(s, sel.selected_indices).max()
    # model level: the same model twice (tiny_model_dir holds tiny_llama's weights) -> the same scores
    two = tunesift.score(ds, "selectit", lm=tiny_llama, use_cache=False, progress=False, k=2, models=str(tiny_model_dir))
    np.testing.assert_allclose(two.table["score"], sel.table["score"], rtol=1e-6)
    np.testing.assert_allclose(two.table["sentence_score_m1"], two.table["sentence_score_m0"], rtol=1e-6)


def test_rating_passes_are_cached(tiny_llama, alpaca_file, tmp_path):
    ds = read_dataset(alpaca_file)
    a = tunesift.score(ds, "selectit", lm=tiny_llama, cache_dir=str(tmp_path), progress=False, k=2)
    b = tunesift.score(ds, "selectit", lm=tiny_llama, cache_dir=str(tmp_path), progress=False, k=2)
    st = b.context.engine_stats()
    assert sum(v["cached"] for v in st.values()) == 2 * len(ds) and sum(v["computed"] for v in st.values()) == 0
    np.testing.assert_array_equal(a.table["score"], b.table["score"])
