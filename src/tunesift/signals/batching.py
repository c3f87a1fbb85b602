"""The two steps every batched scorer shares: answer what the cache holds, then pack the rest
longest-first into token-budget batches (padded tokens = rows x longest row)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .cache import ShardCache
from .distributed import Runner


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
        hit = cache.get(keys[i])
        if hit is not None:
            out[i] = hit[0]
        elif runner is not None and not runner.owns(keys[i]):
            out[i] = np.nan
        else:
            todo.append(i)
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
