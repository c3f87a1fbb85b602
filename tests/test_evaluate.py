"""Evaluations against independent computations on a tiny model, and bad evaluation files."""
import json

import numpy as np
import pytest
import torch

from tunesift.data import DataError, TunesiftError, read_dataset
from tunesift.evaluate import (MCItem, generate, load_bbh, load_gsm8k, load_mmlu, load_references,
                               multiple_choice, parse_eval, response_nll)
from tunesift.evaluate.sets import _number

from .test_train import _nll


def _logprob(lm, prompt, option):
    tok, model = lm.tokenizer, lm.model
    enc = tok(prompt + option, return_offsets_mapping=True)
    ids = torch.tensor([enc["input_ids"]])
    with torch.no_grad():
        lp = torch.log_softmax(model(input_ids=ids).logits[0].float(), -1)
    tot = n = 0
    for j, (s, e) in enumerate(enc["offset_mapping"]):
        if e > s and s >= len(prompt) and j > 0:
            tot += float(lp[j - 1, ids[0, j]])
            n += 1
    return tot, n


def test_response_nll_matches_plain_forward(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file)
    got = response_nll(tiny_llama, ds, template="alpaca")
    assert got["nll"] == pytest.approx(_nll(tiny_llama, ds), rel=1e-5)
    assert got["n"] == len(ds)


def test_multiple_choice_matches_plain_loglik(tiny_llama):
    items = [MCItem("Q: 2+2?\nA:", [" 3", " 4", " five hundred"], 1),
             MCItem("The sky is", [" blue", " green"], 0, "x"),
             MCItem("Pick one:", [" (A)", " (B)", " (C)"], 2, "x")]
    res = multiple_choice(tiny_llama, items)
    acc = acc_norm = 0
    for it in items:
        lps = [_logprob(tiny_llama, it.prompt, o) for o in it.options]
        acc += int(np.argmax([s for s, _ in lps]) == it.answer)
        acc_norm += int(np.argmax([s / n for s, n in lps]) == it.answer)
    assert res["acc"] == pytest.approx(acc / 3) and res["acc_norm"] == pytest.approx(acc_norm / 3)


def test_generation_is_greedy_and_batched(tiny_llama):
    prompts = ["Hello there", "A much longer prompt about the quick brown fox", "x"]
    batched = generate(tiny_llama, prompts, max_new_tokens=6, batch_size=3)
    single = [generate(tiny_llama, [p], max_new_tokens=6, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_loaders_on_shared_data(shared_data):
    ev = shared_data / "eval"
    mmlu = load_mmlu(ev / "mmlu", limit=20, k_shot=2)
    assert len(mmlu) == 20 and all(len(m.options) == 4 and "Answer:" in m.prompt for m in mmlu)
    assert mmlu[0].prompt.count("Answer:") == 3          # two shots + the question
    bbh = load_bbh(ev / "bbh")
    assert len({b.group for b in bbh}) >= 15 and "word_sorting" not in {b.group for b in bbh}
    gsm = load_gsm8k(ev / "gsm8k" / "test.jsonl", limit=5)
    assert all(g.answer.lstrip("-").isdigit() for g in gsm)
    assert len(load_references(ev / "mt_bench")) > 0 and len(load_references(ev / "alpaca_eval" / "alpaca_eval.json", 10)) == 10


def test_bad_eval_files_name_file_and_line(tmp_path):
    d = tmp_path / "mmlu"
    d.mkdir()
    (d / "x_test.csv").write_text("question,choice0,choice1,choice2,choice3,answer\nq,a,b,c,d,1\nq2,a,b,c,d,7\n")
    with pytest.raises(DataError, match=r"x_test.csv.*line 3.*answer"):
        load_mmlu(d)
    g = tmp_path / "gsm.jsonl"
    g.write_text(json.dumps({"question": "q", "answer": "#### 4"}) + "\n" + json.dumps({"question": "q", "answer": "4"}) + "\n")
    with pytest.raises(DataError, match=r"gsm.jsonl.*line 2.*answer"):
        load_gsm8k(g)
    g.write_text('{"question": "q", "answer": "#### 4"}\n{bad json\n')
    with pytest.raises(DataError, match="line 2"):
        load_gsm8k(g)
    with pytest.raises(TunesiftError, match="unknown evaluation"):
        parse_eval("nonsense", tmp_path)
    with pytest.raises(TunesiftError, match="does not exist"):
        parse_eval("mmlu", tmp_path / "nowhere")
    spec = parse_eval("heldout_nll:5=" + str(g), None)
    assert spec.limit == 5 and spec.name == "heldout_nll"


@pytest.mark.parametrize("text,num", [("so 1,234 dollars.", "1234"), ("-3 and then 18", "18"), ("5.0", "5"),
                                      ("none", None)])
def test_number_parsing(text, num):
    assert _number(text) == num


def test_named_generation_evals_run(tiny_llama, shared_data):
    from tunesift.evaluate import tasks
    from tunesift.evaluate.ifeval import load_ifeval
    ev = shared_data / "eval"
    spec = parse_eval("ifeval:2", ev)
    r = tasks.ifeval(tiny_llama, load_ifeval(spec.path, spec.limit), max_new_tokens=12)
    assert r["n"] == 2 and 0 <= r["prompt_strict"] <= 1
    g = tasks.gsm8k(tiny_llama, load_gsm8k(parse_eval("gsm8k:2", ev).path, limit=2), max_new_tokens=12)
    assert g["n"] == 2 and g["exact_match"] in (0.0, 0.5, 1.0)


def test_single_token_options_take_one_forward_per_question(tiny_llama):
    from tunesift.evaluate.tasks import _single_token_options
    tok = tiny_llama.tokenizer
    prompt = "Question: pick one.\nAnswer:"
    base = tok(prompt).input_ids
    opts = [o for o in (" the", " a", " of", " to", " and", " is", " A", " B", " fox", " dog")
            if tok(prompt + o).input_ids[:-1] == base][:4]      # single tokens in the tiny vocabulary
    assert len(opts) == 4, opts
    items = [MCItem(prompt.replace("one", f"one ({i})"), opts, i % 4) for i in range(6)]
    assert _single_token_options(tiny_llama, items) is not None
    res = multiple_choice(tiny_llama, items)
    want = sum(int(np.argmax([_logprob(tiny_llama, it.prompt, o)[0] for o in it.options]) == it.answer)
               for it in items)
    assert res["acc"] == pytest.approx(want / len(items)) and res["n"] == 6


def test_mmlu_text_style_scores_the_option_texts(shared_data):
    letters = load_mmlu(shared_data / "eval" / "mmlu", limit=3)
    text = load_mmlu(shared_data / "eval" / "mmlu", limit=3, style="text")
    assert [i.prompt for i in letters] == [i.prompt for i in text]
    assert letters[0].options == [" A", " B", " C", " D"] and text[0].options[0].strip() in text[0].prompt
    assert parse_eval("mmlu_text:5", shared_data / "eval").path.name == "mmlu"
