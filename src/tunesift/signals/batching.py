"""The two steps every batched scorer shares: answer what the cache holds, then pack the rest
longest-first into token-budget batches (padded tokens = rows x longest row)."""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .cache import ShardCache


def cached_split(cache: ShardCache | None, n: int, key_of: Callable[[int], bytes], out: np.ndarray):
    """Fill ``out[i]`` from the cache where it holds request i; return (keys, indices still to compute)."""
    keys: list[bytes | None] = [None] * n
    if cache is None:
        return keys, list(range(n))
    cache.load()
    todo = []
    for i in range(n):
        keys[i] = key_of(i)
        hit = cache.get(keys[i])
        if hit is None:
            todo.append(i)
        else:
            out[i] = hit[0]
    return keys, todo


def token_batches(lengths: Sequence[int], todo: Sequence[int], batch_tokens: int) -> list[list[int]]:
    """Longest first; a batch closes when one more row would exceed ``batch_tokens`` padded tokens."""
    order = sorted(todo, key=lambda i: -lengths[i])
    batches, cur = [], []
    for i in order:
        if cur and (len(cur) + 1) * lengths[cur[0]] > batch_tokens:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches
