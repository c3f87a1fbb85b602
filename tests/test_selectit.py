"""SelectIT against its formulas computed here from plain per-text HF forwards."""
import json

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
    vocab = tok.get_vocab()
    return np.array([float(p[vocab[d]]) for d in "12345"])       # the bare digit tokens, as the code's 29896..


def _token_score(P, code=False):
    Pn = [p / sum(P) for p in P]
    if code:
        e = [np.exp(p) for p in Pn]
        Pn = [x / sum(e) for x in e]
    b = int(np.argmax(Pn))
    return (b + 1) * sum(Pn[b] - Pn[i] for i in range(5)) / 4


@pytest.mark.parametrize("normalization", ["paper", "official"])
def test_selectit_matches_formula(tiny_llama, alpaca_file, normalization):
    ds = read_dataset(alpaca_file)
    res = tunesift.score(ds, "selectit", lm=tiny_llama, use_cache=False, progress=False, k=3, alpha=0.2,
                         normalization=normalization)
    for i, e in enumerate(ds.examples):
        tok = [_token_score(_digit_probs(tiny_llama, rating_text(ln, instruction_text(e), e.response)),
                            normalization == "official") for ln in RATING_PROMPTS[:3]]
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


def _official_sentence_score(P_rows, alpha=0.2):
    """sentence_level.py as written: P/sum(P), exp, renormalise; argmax base; confidence sum; mean/(1+a*std)."""
    tok_scores = []
    for P in P_rows:
        first = [np.exp(p / sum(P)) for p in P]
        Pn = [x / sum(first) for x in first]
        base = int(np.argmax(Pn))
        conf = sum(Pn[base] - Pn[i] for i in range(5)) / (5 - 1)
        tok_scores.append((base + 1) * conf)
    return np.average(tok_scores) / (1 + alpha * np.std(tok_scores))


def _paper_sentence_score(P_rows, alpha=0.2):
    tok_scores = [_token_score(P, code=False) for P in P_rows]
    return np.mean(tok_scores) / (1 + alpha * np.std(tok_scores))


def test_default_is_the_official_second_softmax(tiny_llama, alpaca_file):
    """All three official scripts renormalise twice; the default must too (the paper's single
    normalisation gives different scores)."""
    ds = read_dataset(alpaca_file)
    res = tunesift.score(ds, "selectit", lm=tiny_llama, use_cache=False, progress=False, k=2)
    differs = 0
    for i, e in enumerate(ds.examples):
        P_rows = [_digit_probs(tiny_llama, rating_text(ln, instruction_text(e), e.response)) for ln in RATING_PROMPTS[:2]]
        assert res.table["score"][i] == pytest.approx(_official_sentence_score(P_rows), rel=1e-5, abs=1e-9)
        differs += res.table["score"][i] != pytest.approx(_paper_sentence_score(P_rows), rel=1e-3)
    assert differs == len(ds)


def _sentencepiece_tokenizer():
    """A LLaMA-like tokenizer: word-start marker (Metaspace) and digits split one by one, so "1" encodes
    as the two pieces "\u2581", "1"."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from .conftest import CORPUS
    tk = Tokenizer(models.BPE(unk_token="<unk>"))
    tk.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Metaspace(),
                                                pre_tokenizers.Digits(individual_digits=True)])
    tk.decoder = decoders.Metaspace()
    alphabet = sorted(set("".join(CORPUS) + "\u2581\n"))
    tk.train_from_iterator(CORPUS * 20, trainers.BpeTrainer(vocab_size=300, initial_alphabet=alphabet,
                                                            special_tokens=["<unk>", "<pad>", "<s>", "</s>"]))
    return PreTrainedTokenizerFast(tokenizer_object=tk, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>")


def test_sentencepiece_tokenizer_rates_with_the_bare_digit_tokens(alpaca_file):
    from tunesift.models import wrap_model
    from tunesift.models.judge import rating_token_ids

    from .conftest import build_tiny
    tok = _sentencepiece_tokenizer()
    vocab = tok.get_vocab()
    assert len(tok.encode("1", add_special_tokens=False)) == 2           # "\u2581" + "1": the old lookup raised
    assert tok("The answer is: \n1").input_ids[-1] == vocab["1"]       # what follows the prompt is the bare digit
    assert rating_token_ids(tok) == [vocab[d] for d in "12345"]
    lm = wrap_model(build_tiny("llama", tok, seed=3), tok, "tiny-sp-llama")
    ds = read_dataset(alpaca_file)
    res = tunesift.score(ds, "selectit", lm=lm, use_cache=False, progress=False, k=2)
    for i, e in enumerate(ds.examples):
        P_rows = [_digit_probs(lm, rating_text(ln, instruction_text(e), e.response)) for ln in RATING_PROMPTS[:2]]
        assert res.table["score"][i] == pytest.approx(_official_sentence_score(P_rows), rel=1e-5, abs=1e-9)


def test_long_prompt_keeps_the_rating_instruction(tiny_llama, tmp_path):
    """Over max_length, the middle (the example's content) goes: the first quarter of the tokens
    (the rating line) and the last three quarters (the answer cue) are kept."""
    recs = [{"instruction": "Give three tips for staying healthy.", "input": "",
             "output": " ".join(["Eat a balanced diet and exercise regularly."] * 80)},
            {"instruction": "What is the capital of France?", "input": "", "output": "Paris."}]
    src = tmp_path / "long.json"
    src.write_text(json.dumps(recs))
    ds = read_dataset(src)
    L = 400
    res = tunesift.score(ds, "selectit", lm=tiny_llama, use_cache=False, progress=False, k=1, max_length=L)
    tok, model = tiny_llama.tokenizer, tiny_llama.model
    vocab = tok.get_vocab()

    def official_on(ids):
        with torch.no_grad():
            p = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].double(), -1)
        return _official_sentence_score([np.array([float(p[vocab[d]]) for d in "12345"])])

    e = ds.examples[0]
    ids = tok(rating_text(RATING_PROMPTS[0], instruction_text(e), e.response)).input_ids
    assert len(ids) > L
    head = ids[:L // 4]
    line = tok(RATING_PROMPTS[0]).input_ids
    assert len(line) < L // 4 and head[:len(line) - 1] == line[:len(line) - 1]   # the rating instruction survives
    kept = head + ids[len(ids) - (L - L // 4):]
    assert res.table["score"][0] == pytest.approx(official_on(kept), rel=1e-5)
    assert res.table["score"][0] != pytest.approx(official_on(ids[-L:]), rel=1e-5)   # the old left cut
    assert bool(res.table["truncated"][0]) and not bool(res.table["truncated"][1])
