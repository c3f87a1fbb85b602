"""Tokenisation of targets: token ids and the positions of target tokens in each rendering, the one
rule that scoring (the likelihood engine, gradients) and training share; and of rating prompts,
scored at their next token."""
from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import Sequence

import numpy as np

from ..models.templates import Rendered


@dataclass
class _Prepared:
    ids: np.ndarray          # token ids up to and including the last scored target
    pos: np.ndarray          # positions of scored target tokens (each >= 1)
    n_target: int
    truncated: bool


def tokenize_targets(tokenizer, requests: Sequence[Rendered], max_length: int,
                     max_target_tokens: Sequence[int | None] | None = None) -> list[_Prepared]:
    """Token ids and target positions of each rendering: the one rule shared by scoring and training.

    A target token is one that starts inside a target span (special tokens, s == e, never count).
    A token straddling the span's start (':"' in '### Response:"Hi"') stays context: the same tokens
    the authors' scripts label by counting the prefix's own tokens.  Ids are cut after the last
    target kept within ``max_length``; ``truncated`` says whether targets were lost."""
    out: list[_Prepared | None] = [None] * len(requests)
    for flag in (True, False):
        idx = [i for i, r in enumerate(requests) if r.add_special_tokens == flag]
        if not idx:
            continue
        ids_list, offs_list = _encode(tokenizer, [requests[i].text for i in idx], flag)
        lens = np.fromiter((len(x) for x in ids_list), dtype=np.int64, count=len(idx))
        starts = np.concatenate([[0], np.cumsum(lens)])
        flat_ids = np.fromiter(chain.from_iterable(ids_list), dtype=np.int64, count=int(starts[-1]))
        flat_offs = np.fromiter(chain.from_iterable(chain.from_iterable(offs_list)), dtype=np.int64,
                                count=2 * int(starts[-1])).reshape(-1, 2)
        s, e = flat_offs[:, 0], flat_offs[:, 1]
        # target mask for all texts at once; requests with several spans add theirs in a loop
        owner = np.repeat(np.arange(len(idx)), lens)
        first = np.array([requests[i].spans[0] if requests[i].spans else (0, 0) for i in idx],
                         dtype=np.int64).reshape(-1, 2)
        mask = (e > s) & (s >= first[owner, 0]) & (s < first[owner, 1])
        for j, i in enumerate(idx):
            if len(requests[i].spans) > 1:
                a0, a1 = starts[j], starts[j + 1]
                for a, b in requests[i].spans[1:]:
                    mask[a0:a1] |= (e[a0:a1] > s[a0:a1]) & (s[a0:a1] >= a) & (s[a0:a1] < b)
        mask[starts[:-1][lens > 0]] = False     # position 0 of each text has no prediction
        hits = np.flatnonzero(mask)
        cuts = np.searchsorted(hits, starts)
        for j, i in enumerate(idx):
            pos = hits[cuts[j]:cuts[j + 1]] - starts[j]
            n_target = len(pos)
            cap = max_target_tokens[i] if max_target_tokens is not None else None
            if cap is not None:
                pos, n_target = pos[:cap], min(n_target, cap)
            kept = pos[pos < max_length]
            end = int(kept[-1]) + 1 if len(kept) else 0
            out[i] = _Prepared(flat_ids[starts[j]:starts[j] + end], kept, n_target, len(kept) < n_target)
    return out  # type: ignore[return-value]


def tokenize_prompts(tokenizer, texts: Sequence[str], max_length: int,
                     add_special_tokens: bool = True) -> tuple[list[_Prepared], np.ndarray]:
    """Token ids of each text, scored at its one next-token position (after the last token), and
    whether it was cut.  A text longer than ``max_length`` loses its middle: the first quarter of
    ``max_length`` (a rating prompt's instruction, the BOS) and the rest from the end (the question
    it ends with) are kept."""
    enc = tokenizer(list(texts), add_special_tokens=add_special_tokens, return_attention_mask=False)
    prep, trunc = [], np.zeros(len(texts), dtype=bool)
    for i, ids in enumerate(enc["input_ids"]):
        ids = np.asarray(ids, dtype=np.int64)
        if len(ids) > max_length:
            head = max_length // 4
            ids, trunc[i] = np.concatenate([ids[:head], ids[len(ids) - max_length + head:]]), True
        prep.append(_Prepared(ids, np.array([len(ids)]), 1, bool(trunc[i])))
    return prep, trunc

def _encode(tokenizer, texts: list[str], add_special_tokens: bool):
    """(ids, offsets) lists per text.  For a plain fast tokenizer, straight from the Rust backend: the
    Python wrapper's per-text conversion to dicts of lists took half the host time of scoring
    (0.49 of 0.97 s per 4,000 Alpaca renderings).  Anything the wrapper would change (truncation or
    padding left set on the backend, special-token splitting, a subclass's own encoding) takes the
    wrapper's path, whose output is the same by construction."""
    backend = getattr(tokenizer, "_tokenizer", None)
    try:
        from transformers import PreTrainedTokenizerFast
        plain = (backend is not None and type(tokenizer)._encode_plus is PreTrainedTokenizerFast._encode_plus
                 and backend.truncation is None and backend.padding is None
                 and bool(getattr(backend, "encode_special_tokens", False))
                 == bool(getattr(tokenizer, "split_special_tokens", False)))
    except Exception:  # noqa: BLE001 - an unfamiliar tokenizer: the wrapper
        plain = False
    if plain:
        encs = backend.encode_batch(texts, add_special_tokens=add_special_tokens)
        return [x.ids for x in encs], [x.offsets for x in encs]
    enc = tokenizer(texts, add_special_tokens=add_special_tokens, return_offsets_mapping=True,
                    return_attention_mask=False)
    return enc["input_ids"], enc["offset_mapping"]
