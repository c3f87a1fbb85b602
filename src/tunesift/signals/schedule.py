"""Scheduling of the likelihood engine's passes: which renderings are tokenised when, and how the
prepared ones are packed into token-budget batches.

- Requests are tokenised in slices, longest text first, the next slice in a background thread while
  the current one is scored: on a GPU, tokenising a whole pass before its first batch left the
  device idle (H200, 135M model: ~0.55 s per 4,000 renderings, in a 6.1 s run of 18,450).
- Batches are packed longest first up to a token budget, and close early when padding would pass a
  bound (pure waste on a compute-bound CPU, and cheap to avoid on a GPU, where a real pool is dense
  in every length); renderings that open with the same template preamble are batched together so a
  batch's shared prefix (whose KV is computed once) is the whole preamble.
- An underfull batch whose rows the texts still to come could join waits for them, so slicing adds
  few part-filled batches.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np

from .batching import token_batches
from .results import EngineStats
from .tokenize import _Prepared

PREAMBLE_TOKENS = 16   # a rendering's opening that names its template preamble


def prepared_slices(requests: Sequence, caps: Sequence[int | None] | None,
                    prepare: Callable[[list, list | None], list[_Prepared]], chunk: int,
                    stats: EngineStats) -> Iterator[tuple[np.ndarray, list[_Prepared], int]]:
    """(request indices, their prepared renderings, the longest text still to come in characters)
    for slices of ``requests`` taken longest text first, ``chunk`` first and doubling up to 16x.
    Each slice after the first is tokenised in a background thread while the caller scores the one
    before: the Rust tokenizer releases the GIL, and a GPU-bound caller mostly waits on the device."""
    chars = np.fromiter((len(r.text) for r in requests), dtype=np.int64, count=len(requests))
    order = np.argsort(-chars, kind="stable")
    bounds, a, size = [], 0, chunk
    while a < len(order):
        bounds.append(order[a:a + size])
        a, size = a + size, min(2 * size, 16 * chunk)

    def run(idx: np.ndarray):
        t = time.perf_counter()
        p = prepare([requests[i] for i in idx], None if caps is None else [caps[i] for i in idx])
        return p, time.perf_counter() - t

    worker = ThreadPoolExecutor(1, thread_name_prefix="tunesift-tokenize") if len(bounds) > 1 else None
    try:
        nxt = None
        for k, idx in enumerate(bounds):
            t = time.perf_counter()
            p, secs = run(idx) if nxt is None else nxt.result()
            stats.prepare_wait_seconds += time.perf_counter() - t
            stats.prepare_seconds += secs
            nxt = worker.submit(run, bounds[k + 1]) if k + 1 < len(bounds) else None
            yield idx, p, int(chars[bounds[k + 1][0]]) if nxt is not None else 0
    finally:
        if worker is not None:
            worker.shutdown(wait=True, cancel_futures=True)   # at most one slice still tokenising


@dataclass(frozen=True)
class Packing:
    """How prepared renderings become batches: ``batch_tokens`` padded tokens and ``max_batch_size``
    rows at most, and padding within ``max_padding`` of a batch's longest row."""

    batch_tokens: int
    max_batch_size: int
    max_padding: float

    def batches(self, prep: Sequence[_Prepared | None], todo: list[int], by_preamble: bool) -> list[list[int]]:
        """``todo``'s renderings in batches, longest first; ``by_preamble``: those that open with a
        common template preamble are kept together (the kernels reuse a batch's shared prefix)."""
        lengths = {i: len(prep[i].ids) for i in todo}
        return token_batches(lengths, todo, self.batch_tokens, self.max_batch_size, self.max_padding,
                             preamble_groups(prep, todo) if by_preamble else None)

    def fillable(self, prep, b: list[int], longest_left: int) -> bool:
        """Under half full, and rows of up to ``longest_left`` tokens would still fit its padding bound."""
        L = len(prep[b[0]].ids)   # batches are longest first
        return (len(b) * L < self.batch_tokens // 2 and len(b) < self.max_batch_size // 2
                and (1 - self.max_padding) * L <= longest_left)

    def hold_back(self, prep, batches: list[list[int]], longest_left: int) -> tuple[list[list[int]], list[int]]:
        """(batches to run now, renderings that wait for the ``longest_left``-token rows to come)."""
        fill = [self.fillable(prep, b, longest_left) for b in batches]
        return [b for b, f in zip(batches, fill) if not f], [i for b, f in zip(batches, fill) if f for i in b]


def preamble_groups(prep: Sequence[_Prepared | None], todo: list[int]) -> dict[int, int]:
    """A group per rendering by its opening tokens (up to its first target); openings too rare to
    fill batches share the last group."""
    heads = {i: prep[i].ids[:min(PREAMBLE_TOKENS, int(prep[i].pos[0]))].tobytes() for i in todo}
    counts: dict[bytes, int] = {}
    for h in heads.values():
        counts[h] = counts.get(h, 0) + 1
    common = {h for h, c in counts.items() if c >= max(8, len(todo) // 50)}
    group = {h: j for j, h in enumerate(sorted(common))}
    return {i: group.get(h, len(group)) for i, h in heads.items()}
