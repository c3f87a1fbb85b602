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
