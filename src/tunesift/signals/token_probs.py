"""Teacher-forced probability of every ground-truth response token, per (prompt, response) pair.

The likelihood engine returns summed NLL per rendering; a rule that is not a function of that sum
(DELIFT's ||1 - p||_2 / sqrt(T)) needs each token's probability.  Layout follows DELIFT's
``get_icl_utility_kernel_no_vllm.py`` (tokenize_and_pad): prompt and response are tokenised apart
without special tokens and joined as prompt + [EOS] + response + [EOS]; the response tokens and the
final EOS are the targets.  Batches are packed longest-first by padded tokens (``token_batches``).
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..models.heads import body_and_head, head_logits, head_reproduces_logits
from ..models.loading import LoadedLM
from ..models.progress import progress_bar
from .batching import cached_split, pad_id_of, right_padded, token_batches
from .cache import CacheWriter, ShardCache


def pair_ids(tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int):
    """(ids, first target position) per pair, cut at ``max_length`` tokens."""
    eos = tokenizer.eos_token_id
    cache: dict[str, list[int]] = {}

    def enc(s: str) -> list[int]:
        if s not in cache:
            cache[s] = tokenizer(s, add_special_tokens=False)["input_ids"]
        return cache[s]

    out = []
    for p, r in zip(prompts, responses):
        a = enc(p) + [eos]
        ids = np.asarray((a + enc(r) + [eos])[:max_length], dtype=np.int64)
        out.append((ids, len(a)))
    return out


def ground_truth_probs(lm: LoadedLM, prompts: Sequence[str], responses: Sequence[str], max_length: int = 2048,
                       batch_tokens: int = 16384, stats: dict | None = None) -> list[np.ndarray]:
    """p(y_t | prompt, y_<t) for each target token of each pair (empty when all were cut)."""
    import torch

    items = pair_ids(lm.tokenizer, prompts, responses, max_length)
    lengths = [len(ids) for ids, _ in items]
    out: list[np.ndarray] = [np.zeros(0)] * len(items)
    todo = [i for i, (ids, start) in enumerate(items) if len(ids) > start]
    model = lm.model
    dev = next(model.parameters()).device
    pad = pad_id_of(lm.tokenizer)
    t0, n_pass = time.perf_counter(), 0
    body, head, cap = body_and_head(model)
    fast = None
    with torch.no_grad():
        for b in token_batches(lengths, todo, max(batch_tokens, max_length)):
            # right padding only follows real tokens under the causal mask: no attention mask needed
            ids = torch.from_numpy(right_padded([items[i][0] for i in b], pad)).to(dev)
            if fast is None:
                fast = head is not None and head_reproduces_logits(model, ids[:1, :64])
            rows = torch.from_numpy(np.repeat(np.arange(len(b)), [len(items[i][0]) - items[i][1] for i in b])).to(dev)
            cols = torch.from_numpy(np.concatenate([np.arange(items[i][1], len(items[i][0])) for i in b])).to(dev)
            # the vocabulary-wide head only where a target is predicted (the costliest layer per position)
            if fast:
                logits = head_logits(head, body(input_ids=ids, use_cache=False)[0][rows, cols - 1], cap)
            else:
                logits = model(input_ids=ids, use_cache=False).logits[rows, cols - 1].float()
            p = torch.log_softmax(logits, -1).gather(-1, ids[rows, cols, None])[:, 0].exp().double().cpu().numpy()
            cuts = np.cumsum([len(items[i][0]) - items[i][1] for i in b])[:-1]
            for i, part in zip(b, np.split(p, cuts)):
                out[i] = part
            n_pass += len(b)
    if stats is not None:
        stats["passes"] = stats.get("passes", 0) + n_pass
        stats["seconds"] = stats.get("seconds", 0.0) + time.perf_counter() - t0
    return out


def prob_distance(p: np.ndarray) -> float:
    """DELIFT's d: ||p - 1||_2 / sqrt(T) over the T target tokens (0 when none, as the code does)."""
    return float(np.linalg.norm(p - 1.0) / np.sqrt(len(p))) if len(p) else 0.0


def ground_truth_distances(lm: LoadedLM, prompts: Sequence[str], responses: Sequence[str], max_length: int = 2048,
                           batch_tokens: int = 16384, cache: ShardCache | None = None, stats: dict | None = None,
                           progress: bool = False, chunk: int = 2048) -> np.ndarray:
    """``prob_distance`` of each pair, cached per (model, max_length, prompt, response).  DELIFT's n^2
    passes take hours on a large pool: the work goes in chunks of ``chunk`` pairs (length-sorted within
    each), each chunk's distances reach the cache as it ends, and a killed run resumes there."""
    n = len(prompts)
    out = np.full(n, np.nan)
    keys, todo = cached_split(cache, n, lambda i: ShardCache.key("gt-distance", lm.fingerprint, max_length,
                                                                  prompts[i], responses[i]), out)
    writer = CacheWriter(cache, every=chunk, seconds=120.0)
    bar = progress_bar(total=len(todo), desc="teacher-forced pairs", unit="pair", disable=not progress)
    try:
        for s in range(0, len(todo), chunk):
            part = todo[s:s + chunk]
            probs = ground_truth_probs(lm, [prompts[i] for i in part], [responses[i] for i in part], max_length,
                                       batch_tokens, stats)
            for i, pr in zip(part, probs):
                out[i] = prob_distance(pr)
                if np.isfinite(out[i]):     # an overflowed pass is recomputed next time, not kept
                    writer.put(keys[i], (out[i],))
            writer.tick()
            bar.update(len(part))
    finally:
        bar.close()
        writer.flush()
    return out
