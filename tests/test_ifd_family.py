"""The IFD family against the authors' rules written out per example: Cherry LLM's truncation and
ties, Reflection-Tuning's capped direct passes, and the precision flag."""
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

import tunesift
from tunesift.methods.ifd import IFD
from tunesift.selectors import Budget

from .conftest import ALPACA
from .test_methods import cherry_prompt

TAG = "### Response:"


def part_loss(lm, text: str, target: str, max_length: int) -> float | None:
    """The authors' get_perplexity_and_embedding_part_text: truncate the whole text at max_length, mask
    the tokens of text[:rfind(target)], HF mean loss (None when no target token is left)."""
    tok, model = lm.tokenizer, lm.model
    ids = tok.encode(text, truncation=True, max_length=max_length)
    start = len(tok.encode(text[:text.rfind(target)]))
    if len(ids) - start <= 0:
        return None
    ids = torch.tensor([ids])
    labels = ids.clone()
    labels[0, :start] = -100
    with torch.no_grad():
        return model(input_ids=ids, labels=labels).loss.item()


def cherry_ifd(lm, rec: dict, max_length: int) -> float | None:
    """data_analysis.py --mod cherry + data_by_IFD.py for one example: None = skipped by Cherry."""
    tok = lm.tokenizer
    prompt = cherry_prompt(rec)
    prompt_len = len(tok.encode(prompt, truncation=True, max_length=max_length))
    if max_length - prompt_len <= 0:
        return None
    # Cherry hard-codes 4: the tag's Llama tokens with BOS (data_analysis_vic.py names it prompt_specific_len)
    tag_len = len(tok.encode(TAG))
    direct_max = max_length - prompt_len + tag_len
    direct = part_loss(lm, TAG + rec["output"], rec["output"], direct_max)
    cond = part_loss(lm, prompt + rec["output"], rec["output"], max_length)
    if direct is None or cond is None:
        return None
    n_direct = len(tok.encode(TAG + rec["output"], truncation=True, max_length=direct_max)) - len(tok.encode(TAG))
    if prompt_len + n_direct > max_length:     # data_by_IFD.py:100, which this truncation never trips
        return None
    return cond / direct


def test_ifd_long_examples_scored_on_the_prefix_that_fits_as_cherry(tiny_llama, alpaca_file, tmp_path):
    max_length = 90     # prompts are 62-150 tokens here: some responses cut, some whole, two with no room
    res = tunesift.score(alpaca_file, "ifd", lm=tiny_llama, cache_dir=tmp_path, progress=False, max_length=max_length)
    t = res.table
    assert t["truncated"].sum() >= 2 and (~t["truncated"] & (t["n_response_tokens"] > 0)).sum() >= 2
    for i, rec in enumerate(ALPACA):
        want = cherry_ifd(tiny_llama, rec, max_length)
        if want is None:
            assert not t.loc[i, "eligible"]
            continue
        assert t.loc[i, "ifd"] == pytest.approx(want, rel=1e-4), i
        assert t.loc[i, "eligible"] == (want <= 1), i     # Cherry keeps truncated examples
    old = tunesift.score(alpaca_file, "ifd", lm=tiny_llama, cache_dir=tmp_path, progress=False,
                         max_length=max_length, truncation="drop")
    assert not old.table.loc[old.table["truncated"], "eligible"].any()


def cherry_pick(ifd: list[float], k: int) -> list[int]:
    """data_by_IFD.py:117-122: sort (IFD, index) ascending, keep the last k, in index order."""
    return sorted(i for _, i in sorted((v, i) for i, v in enumerate(ifd))[-k:])


def test_ifd_ties_keep_the_later_example_as_cherry():
    ifd = [0.5, 0.8, 0.8, 0.3, 0.8, 0.9]
    table = pd.DataFrame({"score": ifd, "eligible": True})
    for k in (1, 2, 3, 4):
        got = IFD().select(table, Budget.parse(k), None)
        assert sorted(got.tolist()) == cherry_pick(ifd, k), k
    assert sorted(IFD(ties="first").select(table, Budget.parse(2), None).tolist()) == [1, 5]
    assert IFD().select(table, Budget.parse(3), None).tolist() == [5, 4, 2]     # rank order
    ineligible = table.assign(eligible=[True, True, True, True, False, True])
    assert sorted(IFD().select(ineligible, Budget.parse(2), None).tolist()) == [2, 5]


def test_superfiltering_ties_keep_the_earlier_example():
    """select_data.py:33: sorted(..., reverse=True) is stable, so the earlier of equal IFDs comes first."""
    from tunesift.methods.superfiltering import Superfiltering
    rows = [{"ifd_ppl": v, "i": i} for i, v in enumerate([0.5, 0.8, 0.8, 0.3, 0.8, 0.9])]
    want = [r["i"] for r in sorted(rows, key=lambda x: (1, x["ifd_ppl"]), reverse=True)[:2]]
    table = pd.DataFrame({"score": [r["ifd_ppl"] for r in rows], "eligible": True})
    assert Superfiltering().select(table, Budget.parse(2), None).tolist() == want


VICUNA = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
          "detailed, and polite answers to the user's questions. USER: {instruction} ASSISTANT:")
VICUNA_INPUT = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives helpful, "
                "detailed, and polite answers to the user's questions. USER: {instruction}\nInput:\n{input} ASSISTANT:")


def whole_loss(lm, text: str, max_length: int) -> float:
    """The authors' get_perplexity_and_embedding_whole_text: truncate, HF mean loss over every token."""
    ids = torch.tensor([lm.tokenizer.encode(text, truncation=True, max_length=max_length)])
    with torch.no_grad():
        return lm.model(input_ids=ids, labels=ids).loss.item()


def reflection_ifd_rifd(lm, rec: dict, max_length: int):
    """Reflection-Tuning's selection_code/data_analysis.py + put_analysis_to_data.py for one example:
    (IFD, r-IFD) as PPL ratios, None where a pass has no target token left."""
    from tunesift.methods.rifd import REVERSE
    tok = lm.tokenizer
    x, y = rec["instruction"] + rec["input"], rec["output"]
    prompt = (VICUNA_INPUT if rec["input"] else VICUNA).format(**rec)
    reverse = VICUNA.format(instruction=REVERSE.format(response=y))
    prompt_len = len(tok.encode(prompt, truncation=True, max_length=max_length))
    reverse_len = len(tok.encode(reverse, truncation=True, max_length=max_length))
    out = []
    for p_len, target, whole, alone_text in ((prompt_len, y, prompt + y, y),
                                             (reverse_len, rec["instruction"], reverse + x, x)):
        if max_length - p_len <= 0:
            out.append(None)
            continue
        cond = part_loss(lm, whole, target, max_length)
        alone = whole_loss(lm, alone_text, max_length - p_len + 1)     # lines 173-174
        out.append(None if cond is None else math.exp(cond) / math.exp(alone))
    return out


@pytest.mark.parametrize("max_length", [130, 190])   # 130: responses cut; 190: instructions cut
def test_rifd_direct_passes_capped_as_reflection_tuning(tiny_llama, alpaca_file, tmp_path, max_length):
    res = tunesift.score(alpaca_file, "rifd", lm=tiny_llama, cache_dir=tmp_path, progress=False, max_length=max_length)
    t = res.table
    assert t["truncated"].sum() >= 2
    for i, rec in enumerate(ALPACA):
        ifd, rifd = reflection_ifd_rifd(tiny_llama, rec, max_length)
        if ifd is not None:
            assert t.loc[i, "ifd"] == pytest.approx(ifd, rel=1e-4), i
        if rifd is not None:
            assert t.loc[i, "rifd"] == pytest.approx(rifd, rel=1e-4), i
        if ifd is None or rifd is None:
            assert not t.loc[i, "eligible"]
        else:
            assert t.loc[i, "eligible"] == (ifd < 1 and rifd < 1), i


def test_near_threshold_flagged_in_half_precision_only(tiny_llama, tiny_tokenizer, alpaca_file, tmp_path, caplog):
    from tunesift.models import wrap_model
    from .conftest import build_tiny
    half = wrap_model(build_tiny("llama", tiny_tokenizer).to(torch.bfloat16), tiny_tokenizer, "tiny-llama-bf16")
    band = 0.02
    with caplog.at_level("WARNING", logger="tunesift"):
        t = tunesift.score(alpaca_file, "ifd", lm=half, cache_dir=tmp_path, progress=False, precision_band=band).table
    near = [abs(v - 1) <= band for v in t["ifd"]]
    assert sum(near) >= 1 and t["near_threshold"].tolist() == near
    assert t["eligible"].tolist() == (t["ifd"] <= 1).tolist()      # a flag, not a filter
    assert f"{sum(near)} example(s) within" in caplog.text
    r = tunesift.score(alpaca_file, "rifd", lm=half, cache_dir=tmp_path, progress=False, precision_band=band).table
    assert r["near_threshold"].tolist() == [abs(a - 1) <= band or abs(b - 1) <= band for a, b in zip(r["ifd"], r["rifd"])]
    fp32 = tunesift.score(alpaca_file, "ifd", lm=tiny_llama, cache_dir=tmp_path, progress=False, precision_band=band)
    assert not fp32.table["near_threshold"].any()


def test_ifd_turns_all_drops_truncated_responses(tiny_llama, alpaca_file, tmp_path):
    """Per-turn caps are undefined with turns=all, so a truncated example cannot be scored on one prefix."""
    t = tunesift.score(alpaca_file, "ifd", lm=tiny_llama, cache_dir=tmp_path, progress=False, max_length=90,
                       turns="all").table
    assert t["truncated"].sum() >= 2 and not t.loc[t["truncated"], "eligible"].any()
