"""Content-addressed shard cache for per-request signals.

A result is keyed by exactly what was computed (the token ids fed to the model and the target
positions, hashed) inside a namespace for the model weights, dtype and engine version.  So a killed
run resumes without recomputing any flushed result, and a changed parameter recomputes only the
requests whose tokens it changes (a new template re-scores the conditioned pass but reuses the
direct pass).  Shards are written atomically; a torn shard from a crash is ignored on load.
"""
from __future__ import annotations

import logging
import os
import time
import uuid
from pathlib import Path

import numpy as np

from ..data.fingerprint import digest

log = logging.getLogger("tunesift")


class ShardCache:
    def __init__(self, root: str | os.PathLike, namespace: str, fields: tuple[str, ...]):
        self.dir = Path(root) / namespace
        self.fields = fields
        self._mem: dict[bytes, tuple] = {}
        self._pending: list[tuple[bytes, tuple]] = []
        self._loaded = False

    key = staticmethod(digest)   # 20 bytes: the rows' keys (``flush`` stores them as uint8 rows)

    def load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if not self.dir.exists():
            return
        for f in sorted(self.dir.glob("shard-*.npz")):
            try:
                with np.load(f) as z:
                    keys = z["keys"]
                    cols = [z[c] for c in self.fields]
            except Exception as e:  # a shard torn by a crash: its results are recomputed
                log.warning("ignoring unreadable cache shard %s (%s)", f, e)
                continue
            for i in range(len(keys)):   # scalars come back as Python numbers, vectors as arrays
                self._mem[keys[i].tobytes()] = tuple(c[i] if c.ndim > 1 else c[i].item() for c in cols)

    def get(self, key: bytes):
        return self._mem.get(key)

    def __len__(self) -> int:
        return len(self._mem)

    def put(self, key: bytes, values: tuple) -> None:
        self._mem[key] = values
        self._pending.append((key, values))

    @property
    def pending(self) -> int:
        return len(self._pending)

    def flush(self) -> None:
        if not self._pending:
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        # uint8 rows, not an "S20" array: NumPy strips trailing NUL bytes from S-strings.
        keys = np.frombuffer(b"".join(k for k, _ in self._pending), dtype=np.uint8).reshape(-1, 20)
        arrays = {c: np.stack([np.asarray(v[i]) for _, v in self._pending]) for i, c in enumerate(self.fields)}
        name = f"shard-{uuid.uuid4().hex}.npz"
        tmp = self.dir / f".{name}.tmp"
        with open(tmp, "wb") as f:
            np.savez(f, keys=keys, **arrays)
        os.replace(tmp, self.dir / name)
        self._pending.clear()


class CacheWriter:
    """Results into a ``ShardCache`` (or nowhere, when there is none) as they arrive: ``tick`` flushes
    once ``every`` results are pending or ``seconds`` have passed since the last flush (either None:
    no such bound), ``flush`` writes the rest.  Callers flush in a ``finally``, so an interrupted run
    keeps what finished."""

    def __init__(self, cache: ShardCache | None, every: int | None = None, seconds: float | None = None):
        self.cache, self.every, self.seconds = cache, every, seconds
        self._last = time.perf_counter()

    def put(self, key: bytes | None, values: tuple) -> None:
        if self.cache is not None and key is not None:   # no key: a result that is not cached
            self.cache.put(key, values)

    def tick(self) -> None:
        if self.cache is not None and ((self.every is not None and self.cache.pending >= self.every) or (
                self.seconds is not None and time.perf_counter() - self._last > self.seconds)):
            self.flush()

    def flush(self) -> None:
        if self.cache is not None:
            self.cache.flush()
        self._last = time.perf_counter()
