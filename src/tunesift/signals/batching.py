"""The two steps every batched scorer shares: answer what the cache holds, then pack the rest
longest-first into token-budget batches (padded tokens = rows x longest row); and the padding and
gathering helpers around them."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

from .cache import CacheWriter, ShardCache
from .distributed import Runner, run_units


# ``look_up``'s answer for a request that another ``--shard`` slice computes: its result is NaN here.
OTHER_SLICE = ("other slice",)


def look_up(cache: ShardCache | None, key: bytes | None, runner: Runner | None = None):
    """What the cache holds for ``key``; ``OTHER_SLICE`` where it holds nothing and ``runner``'s slice
    does not own the key; None where it is this process's to compute (always, without a cache)."""
    if cache is None or key is None:
        return None
    hit = cache.get(key)
    if hit is None and runner is not None and not runner.owns(key):
        return OTHER_SLICE
    return hit


def cached_split(cache: ShardCache | None, n: int, key_of: Callable[[int], bytes], out: np.ndarray,
                 runner: Runner | None = None):
    """Fill ``out[i]`` from the cache where it holds request i; return (keys, indices still to compute).
    Under ``--shard``, requests of other slices are set to NaN and not computed."""
    keys: list[bytes | None] = [None] * n
    if cache is None:
        return keys, list(range(n))
    cache.load()
    todo = []
    for i in range(n):
        keys[i] = key_of(i)
        hit = look_up(cache, keys[i], runner)
        if hit is None:
            todo.append(i)
        else:
            out[i] = np.nan if hit is OTHER_SLICE else hit[0]
    return keys, todo


def token_batches(lengths, todo: Sequence[int], batch_tokens: int, max_batch_size: int | None = None,
                  max_padding: float = 1.0, groups: Mapping[int, int] | None = None) -> list[list[int]]:
    """Longest first; a batch closes when one more row would exceed ``batch_tokens`` padded tokens,
    when it holds ``max_batch_size`` rows, or when the next row is so much shorter than the batch's
    longest that padding would exceed ``max_padding`` of it.  ``groups`` (request -> group) keeps
    each group's requests in batches of their own, groups in order; ``lengths`` is indexed by request."""
    grp = groups.get if groups is not None else (lambda i, d=0: d)
    order = sorted(todo, key=lambda i: (grp(i, 0), -lengths[i]))
    batches, cur = [], []
    for i in order:
        if cur:
            L, first = lengths[i], lengths[cur[0]]
            if ((len(cur) + 1) * first > batch_tokens or (max_batch_size is not None and len(cur) >= max_batch_size)
                    or L < (1 - max_padding) * first or grp(i, 0) != grp(cur[0], 0)):
                batches.append(cur)
                cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    return batches


def run_and_store(runner: Runner | None, recipe: Callable, local, units: list[list[list[int]]], payload: list,
                  out, keys: Sequence[bytes | None], writer: CacheWriter, bar,
                  value: Callable[[object], tuple] = lambda v: (v,)) -> None:
    """Run ``payload`` (one entry per unit of ``units``: batches of request indices) where ``runner``
    says; each batch's rows go into ``out`` and, as ``value(row)`` under ``keys``, into the cache as
    they arrive.  The bar is closed and the cache flushed at the end, also when interrupted."""
    def done(u: int, results: list) -> None:
        for b, v in zip(units[u], results):
            for r, i in enumerate(b):
                out[i] = v[r]
                writer.put(keys[i], value(v[r]))
            bar.update(len(b))
        writer.tick()

    try:
        run_units(runner, recipe, local, payload, done)
    finally:
        bar.close()
        writer.flush()


def pad_id_of(tokenizer) -> int:
    """The id right padding uses: the pad token, else EOS, else 0 (under causal attention a pad placed
    after a sequence never reaches its real tokens, so any id serves)."""
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    return tokenizer.eos_token_id or 0


def right_padded(seqs: Sequence[np.ndarray], pad_id: int) -> np.ndarray:
    """[rows, longest] int64 token ids, each row right-padded with ``pad_id``."""
    ids = np.full((len(seqs), max(len(x) for x in seqs)), pad_id, dtype=np.int64)
    for r, x in enumerate(seqs):
        ids[r, :len(x)] = x
    return ids


def gathered(n: int, width: int, where: str | os.PathLike | None = None, dtype=np.float32,
             limit_bytes: int = 2 << 30) -> np.ndarray:
    """A zeroed [n, width] array for per-example vectors gathered on the driver.  Above
    ``limit_bytes`` it is memory-mapped from an unlinked file in ``where`` (the cache root; a temp
    directory without one), so a 10M-row pool's embeddings need not fit in RAM."""
    if n * width * np.dtype(dtype).itemsize <= limit_bytes:
        return np.zeros((n, width), dtype=dtype)
    d = Path(where) if where is not None else Path(tempfile.gettempdir())
    d.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="gathered-", suffix=".npy", dir=d)
    os.close(fd)
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=(n, width))
    os.unlink(path)   # the mapping stays valid; the file goes when the array does
    return arr
