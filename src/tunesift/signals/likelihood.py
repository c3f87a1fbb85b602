"""The batched likelihood engine: token-level NLL of target spans, for every likelihood method.

For a list of renderings (text + target character spans) it returns, per rendering, the summed and
mean NLL over target tokens, the number of target tokens scored and whether truncation cut any.

Why it is fast:
- requests are sorted by length and packed into token-budget batches (little padding), tokenised in
  slices that overlap scoring (``schedule``);
- the LM head runs only at target positions, no attention mask, ``torch.inference_mode`` (``kernels``);
- results are cached content-addressed on disk (``ShardCache``), so repeated or resumed runs cost
  nothing for finished work.

The engine orchestrates those parts: tokenisation of targets (``tokenize``), scheduling and packing
(``schedule``), cache look-up and flushing (``batching.look_up``, ``cache.CacheWriter``), where
batches run (``distributed``) and the forward kernels (``kernels.LMKernels``, which it extends); the
result types live in ``results``.
"""
from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np

from ..data.errors import TunesiftError
from ..models.loading import LoadedLM, cache_root
from ..models.progress import progress_bar
from ..models.templates import Rendered
from .batching import OTHER_SLICE, look_up
from .cache import CacheWriter, ShardCache
from .distributed import Recipe, Runner, parts_of, run_units, units_of
from .kernels import LMKernels
from .results import EngineStats, NLLResult
from .schedule import Packing, prepared_slices
from .tokenize import _encode, _Prepared, tokenize_prompts, tokenize_targets  # noqa: F401  (tokenize_targets, _encode: re-exported)

log = logging.getLogger("tunesift")
ENGINE_VERSION = "1"


class LikelihoodEngine(LMKernels):
    """Batched, cached conditional-NLL scorer over one causal LM.

    Parameters are fixed at construction (scikit-learn style); ``nll`` is the only verb.
    """

    def __init__(self, lm: LoadedLM, max_length: int = 1024, batch_tokens: int = 16384, max_batch_size: int | None = None,
                 cache_dir: str | None = None, use_cache: bool = True, progress: bool = True,
                 flush_every: int = 256, flush_seconds: float = 30.0, head_chunk: int = 1024,
                 max_padding: float = 0.1, share_prefix: bool | None = None, min_shared_prefix: int = 4,
                 compile_body: bool | str = False, prepare_chunk: int = 1024, runner: Runner | None = None,
                 unit_batches: int = 4):
        if max_length < 2:
            raise TunesiftError("max_length must be at least 2")
        super().__init__(lm, head_chunk, share_prefix, min_shared_prefix, compile_body)
        self.max_length = max_length
        # Where batches run (None: here) and how a worker builds this engine: same arguments, no cache.
        self.runner, self.unit_batches = runner, unit_batches
        self._worker_kwargs = (("max_length", max_length), ("batch_tokens", batch_tokens),
                               ("max_batch_size", max_batch_size), ("head_chunk", head_chunk),
                               ("max_padding", max_padding), ("share_prefix", share_prefix),
                               ("min_shared_prefix", min_shared_prefix), ("compile_body", compile_body),
                               ("use_cache", False), ("progress", False))
        batch_tokens = max(batch_tokens, max_length)
        # rows per batch: bounded so per-row overhead stays small; scales with the token budget (GPU)
        self.packing = Packing(batch_tokens, max_batch_size or max(256, batch_tokens // 64), max_padding)
        self.progress = progress
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        # Requests are tokenised in slices of this many first, doubling up to 16x (see ``schedule``).
        self.prepare_chunk = max(1, prepare_chunk)
        self.cache = None
        if use_cache:
            ns = f"likelihood/{lm.fingerprint.replace('/', '_')}-{lm.dtype}-v{ENGINE_VERSION}"
            self.cache = ShardCache(cache_root(cache_dir), ns, ("sum_nll", "n_tokens"))
        self._nexttok_cache: ShardCache | None = None
        self.stats = EngineStats()
        tok = lm.tokenizer
        if not getattr(tok, "is_fast", False):
            raise TunesiftError("the likelihood engine needs a fast (Rust) tokenizer for token offsets; "
                                f"{type(tok).__name__} is not one")

    # ------------------------------------------------------------ tokenisation
    def prepare(self, requests: Sequence[Rendered], max_target_tokens: Sequence[int | None] | None = None) -> list[_Prepared]:
        return tokenize_targets(self.lm.tokenizer, requests, self.max_length, max_target_tokens)

    # ------------------------------------------------------------ scoring
    def nll(self, requests: Sequence[Rendered], max_target_tokens: Sequence[int | None] | None = None,
            desc: str = "scoring") -> NLLResult:

        t0 = time.perf_counter()
        n = len(requests)
        result = NLLResult(np.zeros(n, dtype=np.float64), np.zeros(n, dtype=np.int64),
                           np.zeros(n, dtype=np.int64), np.zeros(n, dtype=bool))
        # A pass holds token ids (and keys) only for work still to do: a 10M-row pass never holds
        # every row's.
        prep: list[_Prepared | None] = [None] * n
        keys: list[bytes | None] = [None] * n
        if self.cache is not None:
            self.cache.load()
        bar = progress_bar(total=n, desc=desc, unit="ex", disable=not self.progress, dynamic_ncols=True, leave=False)
        pool: list[int] = []      # prepared, not in the cache, not yet scored
        ratios: list[float] = []  # tokens per character of the texts prepared so far
        try:
            for idx, part, chars_left in prepared_slices(requests, max_target_tokens, self.prepare,
                                                         self.prepare_chunk, self.stats):
                skipped = 0   # nothing to score, cached, or another slice's
                for i, p in zip(idx.tolist(), part):
                    result.n_tokens[i], result.n_target[i], result.truncated[i] = len(p.pos), p.n_target, p.truncated
                    if len(requests[i].text) >= 32 and len(ratios) < 65536:   # a sample is enough
                        ratios.append(len(p.ids) / len(requests[i].text))
                    if len(p.pos) == 0:
                        skipped += 1
                        continue
                    key = None
                    if self.cache is not None:
                        key = ShardCache.key(p.ids.astype(np.int64).tobytes(), p.pos.astype(np.int64).tobytes())
                    if self._answered(look_up(self.cache, key, self.runner), result.sum_nll, i):
                        skipped += 1
                        continue
                    prep[i], keys[i] = p, key
                    pool.append(i)
                self.stats.requests += len(part)
                bar.update(skipped)
                batches, pool = self.packing.batches(prep, pool, self.share_prefix), []
                if chars_left:
                    # Texts still to come are shorter (in characters) than these: an underfull batch
                    # of rows they could join waits for them.
                    r = float(np.quantile(ratios, 0.99)) if ratios else 1.0
                    batches, pool = self.packing.hold_back(prep, batches, min(self.max_length, int(chars_left * r) + 8))
                if batches:
                    self._run(prep, batches, keys, result.sum_nll, bar)
                    for b in batches:   # scored and cached
                        for i in b:
                            prep[i] = keys[i] = None
        finally:
            bar.close()
        self.stats.seconds += time.perf_counter() - t0
        return result

    def _answered(self, hit, out: np.ndarray, i: int) -> bool:
        """Answer request i from ``look_up``'s ``hit`` (counted); False when it is still to compute."""
        if hit is None:
            return False
        if hit is OTHER_SLICE:
            out[i] = np.nan   # another slice's: --shard computes its own only
            self.stats.other_slice += 1
        else:
            out[i] = hit[0]
            self.stats.cached += 1
        return True

    def _record(self, b: list[int], sums: list[float], prep, keys, sum_nll, bar, writer: CacheWriter) -> int:
        """Store (and cache) one batch's NLL sums and count it; returns the tokens it fed."""
        for i, v in zip(b, sums):
            sum_nll[i] = v
            writer.put(keys[i], (float(v), int(len(prep[i].pos))))
        ntok = sum(len(prep[i].ids) for i in b)
        self.stats.tokens += ntok
        self.stats.padded_tokens += len(b) * max(len(prep[i].ids) for i in b)
        self.stats.target_tokens += sum(len(prep[i].pos) for i in b)
        self.stats.computed += len(b)
        self.stats.batches += 1
        bar.update(len(b))
        return ntok

    def _run(self, prep, batches, keys, sum_nll, bar) -> None:
        if self.runner is not None and self.runner.remote:
            return self._run_remote(prep, batches, keys, sum_nll, bar)
        writer = CacheWriter(self.cache, self.flush_every, self.flush_seconds)
        t_start, tokens_done = time.perf_counter(), 0

        def finish(b, sums) -> None:
            nonlocal tokens_done
            tokens_done += self._record(b, sums.cpu().tolist(), prep, keys, sum_nll, bar, writer)
            bar.set_postfix(tok_s=f"{tokens_done / max(time.perf_counter() - t_start, 1e-9):,.0f}", refresh=False)
            writer.tick()

        try:
            with self.inference():
                # Results are read one batch late: on a GPU, reading them waits for the device, so
                # the next batch is queued first and the host's work overlaps the device's.
                pending = None
                for b in batches:
                    sums = self._forward([prep[i] for i in b])
                    if pending is not None:
                        finish(*pending)
                    pending = (b, sums)
                if pending is not None:
                    finish(*pending)
        finally:
            self.release()
            writer.flush()   # keep whatever finished, even when interrupted

    # ------------------------------------------------------------ workers
    def recipe(self) -> Recipe:
        """How a worker builds this engine (same arguments, no cache, no bar)."""
        src = self.runner.lm_source(self.lm)
        return Recipe(LikelihoodEngine, self._worker_kwargs, src,
                      key=f"likelihood/{self.lm.fingerprint}/{self.lm.dtype}/{self._worker_kwargs}")

    def run_unit(self, unit):
        """A worker's share: ("nll", batches of (ids, positions)) -> per-batch NLL sums, or
        ("nexttok", candidates, batches of ids) -> per-batch log-probabilities."""
        import torch
        out = []
        with self.inference():
            if unit[0] == "nll":
                for b in unit[1]:
                    out.append(self._forward([_Prepared(ids, pos, len(pos), False) for ids, pos in b]).cpu().numpy())
            else:
                cand = torch.from_numpy(np.asarray(unit[1], dtype=np.int64)).to(next(self.lm.model.parameters()).device)
                for b in unit[2]:
                    out.append(self._nexttok_batch([_Prepared(ids, np.array([len(ids)]), 1, False) for ids in b], cand))
        return out

    def _units(self, batches: list[list[int]], lens) -> list[list[list[int]]]:
        return units_of(batches, lens, self.unit_batches * self.packing.batch_tokens, parts_of(self.runner))

    def _run_remote(self, prep, batches, keys, sum_nll, bar) -> None:
        """``_run`` on the runner's workers: units of a few batches, results written (and cached)
        here as they arrive."""
        units = self._units(batches, {i: len(prep[i].ids) for b in batches for i in b})
        payload = [("nll", [[(prep[i].ids, prep[i].pos) for i in b] for b in unit]) for unit in units]
        writer = CacheWriter(self.cache, self.flush_every, self.flush_seconds)

        def done(u: int, sums: list) -> None:
            for b, v in zip(units[u], sums):
                self._record(b, v.tolist(), prep, keys, sum_nll, bar, writer)
            writer.tick()

        try:
            run_units(self.runner, self.recipe, self, payload, done)
        finally:
            writer.flush()

    # ------------------------------------------------------------ next-token distributions
    def next_token_logprobs(self, texts: Sequence[str], candidates: Sequence[int], add_special_tokens: bool = True,
                            desc: str = "rating") -> tuple[np.ndarray, np.ndarray]:
        """Log-probabilities (full-vocabulary softmax) of each ``candidates`` token as the next token
        after each text: judges that read a rating from one forward pass, with no generation.

        Same batching as ``nll`` (length-sorted token budgets, right padding, no mask, head at one
        position per row) and the same cache.  Texts longer than ``max_length`` lose their middle: the
        first quarter of ``max_length`` (a rating prompt's instruction, the BOS) and the rest from the end
        (the question it ends with) are kept, and the text is flagged.
        Returns (logprobs [N, K], truncated [N])."""
        cand = np.asarray(list(candidates), dtype=np.int64)
        prep, trunc = tokenize_prompts(self.lm.tokenizer, texts, self.max_length, add_special_tokens)
        out = np.zeros((len(texts), len(cand)), dtype=np.float64)
        keys: list[bytes | None] = [None] * len(prep)
        cache = None
        if self.cache is not None:
            if self._nexttok_cache is None:   # one per engine: its shards are read once, not per call
                self._nexttok_cache = ShardCache(self.cache.dir.parent, self.cache.dir.name + "-nexttok", ("logprobs",))
            cache = self._nexttok_cache
            cache.load()
        todo = []
        for i, p in enumerate(prep):
            if cache is not None:
                keys[i] = ShardCache.key(p.ids.tobytes(), cand.tobytes())
            if not self._answered(look_up(cache, keys[i], self.runner), out, i):
                todo.append(i)
        self.stats.requests += len(prep)
        if not todo:
            return out, trunc
        batches = self.packing.batches(prep, todo, self.share_prefix)
        lens = {i: len(prep[i].ids) for i in todo}
        units = self._units(batches, lens)
        writer = CacheWriter(cache)   # flushed once, at the end
        t0 = time.perf_counter()

        def done(u: int, lps: list) -> None:
            for b, lp in zip(units[u], lps):
                for r, i in enumerate(b):
                    out[i] = lp[r]
                    writer.put(keys[i], (lp[r],))
                self.stats.computed += len(b)
                self.stats.batches += 1
                self.stats.tokens += sum(lens[i] for i in b)
                self.stats.padded_tokens += len(b) * max(lens[i] for i in b)

        try:
            run_units(self.runner, self.recipe, self,
                      [("nexttok", cand, [[prep[i].ids for i in b] for b in unit]) for unit in units], done)
        finally:
            writer.flush()
            self.stats.seconds += time.perf_counter() - t0
        return out, trunc
