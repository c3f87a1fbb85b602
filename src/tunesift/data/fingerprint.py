"""The one hashing scheme behind every cache key and fingerprint.

A key is BLAKE2b over its parts, each length-prefixed so that ("ab", "c") and ("a", "bc") differ.
A part is bytes as given, a string as UTF-8, a NumPy array as its dtype, shape and bytes, anything
else as sorted-key JSON (``str`` for what JSON cannot write).  ``digest`` gives the 20 raw bytes
(the score and embedding caches' row keys), ``fingerprint`` the hex (file names, manifests).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

DIGEST_SIZE = 20


def _bytes(part: Any) -> bytes:
    if isinstance(part, (bytes, bytearray, memoryview)):
        return bytes(part)
    if isinstance(part, str):
        return part.encode("utf-8")
    if isinstance(part, np.ndarray):
        a = np.ascontiguousarray(part)
        return f"{a.dtype.str}{a.shape}".encode() + a.tobytes()
    return json.dumps(part, sort_keys=True, default=str).encode("utf-8")


class Hasher:
    """The same key built part by part (model weights, file listings: too large to hold at once)."""

    def __init__(self, *parts: Any):
        self._h = hashlib.blake2b(digest_size=DIGEST_SIZE)
        self.update(*parts)

    def update(self, *parts: Any) -> "Hasher":
        for p in parts:
            b = _bytes(p)
            self._h.update(len(b).to_bytes(8, "little"))
            self._h.update(b)
        return self

    def digest(self) -> bytes:
        return self._h.digest()

    def hexdigest(self, length: int = 16) -> str:
        return self._h.hexdigest()[:length]


def digest(*parts: Any) -> bytes:
    return Hasher(*parts).digest()


def fingerprint(*parts: Any, length: int = 16) -> str:
    """Hex of ``digest(*parts)``, its first ``length`` characters (at most 40)."""
    return Hasher(*parts).hexdigest(length)
