"""An OpenAI-compatible HTTP client for judges and rewriters (vLLM, TGI, llama.cpp servers, hosted APIs).

- Concurrency: a thread pool of ``concurrency`` requests in flight.
- Faults: connection errors, timeouts, 5xx and 429 are retried with exponential backoff and jitter
  (``Retry-After`` honoured), up to ``max_retries``; then the request fails with its last error.
- Secrets: the API key is read from the environment variable named by ``api_key_env`` only; it is
  never written to the cache, logs or manifests.
- Cache: every answered request is stored on disk under a hash of (endpoint, request body), one
  small JSON file each, written atomically.  An interrupted run asks nothing twice: a rerun reads
  what was answered and sends only the rest.  Only the standard library is used.
"""
from __future__ import annotations

import http.client
import json
import logging
import os
import random
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..data.errors import TunesiftError
from ..data.fingerprint import fingerprint
from .loading import cache_root
from .progress import progress_bar

log = logging.getLogger("tunesift")
RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class APIError(TunesiftError):
    pass


@dataclass
class ClientStats:
    requests: int = 0       # HTTP requests sent (retries included)
    cached: int = 0         # answers read from the cache
    answered: int = 0       # answers received from the server
    retries: int = 0
    failed: int = 0
    seconds: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)


class OpenAIClient:
    def __init__(self, base_url: str, model: str, api_key_env: str | None = "OPENAI_API_KEY", concurrency: int = 8,
                 timeout: float = 120.0, max_retries: int = 6, backoff: float = 0.5, max_backoff: float = 30.0,
                 cache_dir: str | None = None, use_cache: bool = True):
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key_env = api_key_env
        self.concurrency, self.timeout = concurrency, timeout
        self.max_retries, self.backoff, self.max_backoff = max_retries, backoff, max_backoff
        self.cache = Path(cache_root(cache_dir)) / "api" if use_cache else None
        self.stats = ClientStats()

    # ------------------------------------------------------------ public verbs
    def chat(self, conversations: Sequence[list[dict]], progress: bool = False, **params: Any) -> list[dict]:
        """One chat completion per conversation; returns the response JSON of each (in order)."""
        bodies = [{"model": self.model, "messages": list(c), **params} for c in conversations]
        return self._many("/chat/completions", bodies, progress)

    def complete(self, prompts: Sequence[str], progress: bool = False, **params: Any) -> list[dict]:
        bodies = [{"model": self.model, "prompt": p, **params} for p in prompts]
        return self._many("/completions", bodies, progress)

    @staticmethod
    def text(resp: dict) -> str:
        ch = resp["choices"][0]
        return ch["message"]["content"] if "message" in ch else ch["text"]

    # ------------------------------------------------------------ machinery
    def _key(self, path: str, body: dict) -> str:
        return fingerprint(self.base_url, path, body, length=64)

    def _cached(self, key: str) -> dict | None:
        if self.cache is None:
            return None
        f = self.cache / key[:2] / f"{key}.json"
        try:
            return json.loads(f.read_text())
        except (OSError, json.JSONDecodeError):   # absent, or torn by a crash: ask again
            return None

    def _store(self, key: str, resp: dict) -> None:
        if self.cache is None:
            return
        d = self.cache / key[:2]
        d.mkdir(parents=True, exist_ok=True)
        tmp = d / f".{key}.{os.getpid()}.{threading.get_ident()}.tmp"
        tmp.write_text(json.dumps(resp))
        os.replace(tmp, d / f"{key}.json")

    def _many(self, path: str, bodies: list[dict], progress: bool) -> list[dict]:
        t0 = time.perf_counter()
        out: list[dict | None] = [None] * len(bodies)
        keys = [self._key(path, b) for b in bodies]
        todo = []
        for i, k in enumerate(keys):
            hit = self._cached(k)
            if hit is not None:
                out[i] = hit
                self.stats.add(cached=1)
            else:
                todo.append(i)
        bar = progress_bar(total=len(todo), desc="API", unit="req", disable=not progress, leave=False)
        errors: list[tuple[int, Exception]] = []

        def one(i: int) -> None:
            try:
                resp = self._post(path, bodies[i])
            except Exception as e:  # noqa: BLE001 - collected and raised together below
                errors.append((i, e))
                self.stats.add(failed=1)
                return
            self._store(keys[i], resp)
            out[i] = resp
            self.stats.add(answered=1)
            bar.update(1)

        try:
            with ThreadPoolExecutor(max_workers=max(1, self.concurrency)) as pool:
                list(pool.map(one, todo))
        finally:
            bar.close()
            self.stats.seconds += time.perf_counter() - t0
        if errors:
            i, e = errors[0]
            raise APIError(f"{len(errors)} of {len(todo)} requests to {self.base_url}{path} failed after "
                           f"{self.max_retries} retries (answered ones are cached; rerun to resume); first: "
                           f"request {i}: {e}")
        return out  # type: ignore[return-value]

    def _post(self, path: str, body: dict) -> dict:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        last: Exception | None = None
        for attempt in range(self.max_retries + 1):
            if attempt:
                self.stats.add(retries=1)
            self.stats.add(requests=1)
            req = urllib.request.Request(self.base_url + path, data=data, headers=headers, method="POST")
            wait = None
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as r:
                    return json.loads(r.read())
            except urllib.error.HTTPError as e:
                detail = e.read()[:300].decode("utf-8", "replace")
                if e.code not in RETRY_STATUS:
                    raise APIError(f"HTTP {e.code} from {self.base_url}{path}: {detail}") from None
                last = APIError(f"HTTP {e.code}: {detail}")
                ra = e.headers.get("Retry-After") if e.headers else None
                wait = float(ra) if ra and ra.replace(".", "", 1).isdigit() else None
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError, http.client.HTTPException) as e:
                last = e          # refused, reset, timed out, or cut mid-body (IncompleteRead): retry
            except json.JSONDecodeError as e:
                last = APIError(f"malformed JSON from the server: {e}")
            if attempt < self.max_retries:
                delay = wait if wait is not None else min(self.max_backoff, self.backoff * 2 ** attempt)
                time.sleep(delay * (1 + 0.25 * random.random()))
        raise APIError(f"{type(last).__name__}: {last}")
