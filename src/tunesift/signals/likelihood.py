"""The batched likelihood engine: token-level NLL of target spans, for every likelihood method.

For a list of renderings (text + target character spans) it returns, per rendering, the summed and
mean NLL over target tokens, the number of target tokens scored and whether truncation cut any.

Why it is fast:
- requests are sorted by length and packed into token-budget batches (little padding);
- the LM head runs only at target positions (the decoder body runs once over the batch; the
  vocabulary projection, the biggest matmul of a small model, is skipped for prompt tokens);
- tokens after the last target are never fed; ``use_cache=False``; ``torch.inference_mode``;
- results are cached content-addressed on disk (``ShardCache``), so repeated or resumed runs cost
  nothing for finished work.

Tokenisation of targets lives in ``tokenize`` (shared with training and gradients), the result
types in ``results``; this module keeps the engine: scheduling, caching and the forward kernels.
"""
from __future__ import annotations

import logging
import time
from typing import Sequence

import numpy as np

from ..data.errors import TunesiftError
from ..models.heads import HeadNLL, body_and_head, compiled, head_logits, head_reproduces_logits
from ..models.inplace import inplace_mlps
from ..models.loading import LoadedLM, cache_root
from ..models.templates import Rendered
from .batching import pad_id_of, right_padded
from .cache import ShardCache
from .distributed import Recipe, Runner, parts_of, run_units, units_of
from .progress import progress_bar
from .results import EngineStats, NLLResult
from .tokenize import _encode, _Prepared, tokenize_targets  # noqa: F401  (tokenize_targets, _encode: re-exported)

log = logging.getLogger("tunesift")
ENGINE_VERSION = "1"


def _attention_backends(lm: LoadedLM):
    """On CUDA, keep SDPA off the cuDNN backend, which sets up a graph for every new (batch, length)
    shape, and length-sorted batches are nearly all new shapes.  Measured on an H200 (135M model):
    a batch took ~145 ms while the GPU was busy ~14 ms of it; off cuDNN the run went from 930 to
    1,519 examples/s.  Flash / efficient kernels need no per-shape set-up."""
    import contextlib
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:      # torch < 2.3: no cuDNN backend either
        return contextlib.nullcontext()
    if not str(lm.device).startswith("cuda"):
        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def _to_device(a: np.ndarray, dev):
    """A host array on ``dev``; to a GPU from pinned memory without blocking, so that queuing a batch
    does not wait for the batches already running (a pageable copy would)."""
    import torch
    t = torch.from_numpy(a)
    return t.pin_memory().to(dev, non_blocking=True) if dev.type == "cuda" else t


class LikelihoodEngine:
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
        self.lm = lm
        self.max_length = max_length
        # Where batches run (None: here) and how a worker builds this engine: same arguments, no cache.
        self.runner, self.unit_batches = runner, unit_batches
        self._worker_kwargs = (("max_length", max_length), ("batch_tokens", batch_tokens),
                               ("max_batch_size", max_batch_size), ("head_chunk", head_chunk),
                               ("max_padding", max_padding), ("share_prefix", share_prefix),
                               ("min_shared_prefix", min_shared_prefix), ("compile_body", compile_body),
                               ("use_cache", False), ("progress", False))
        self.batch_tokens = max(batch_tokens, max_length)
        # rows per batch: bounded so per-row overhead stays small; scales with the token budget (GPU)
        self.max_batch_size = max_batch_size or max(256, self.batch_tokens // 64)
        self.max_padding = max_padding
        # Preamble-KV reuse pays on a compute-bound CPU (fewer tokens); on a GPU the cached-KV
        # attention path costs more than the tokens it saves (H200: 1,101 vs 1,519 examples/s, 135M).
        if share_prefix is None:
            share_prefix = not str(lm.device).startswith("cuda")
        self.share_prefix, self.min_shared_prefix = share_prefix, min_shared_prefix
        self._prefix_ok: bool | None = None
        self._nexttok_cache: ShardCache | None = None
        self.progress = progress
        self.flush_every, self.flush_seconds = flush_every, flush_seconds
        # torch.compile of the decoder body (plain passes; the cached-KV prefix path stays eager).
        # Off by default: on the 2-core CPU it gained nothing (522 vs 539 tokens/s after a 3-minute
        # compile); on a GPU it fuses the small model's elementwise kernels, which launch-bound
        # 135M batches may need (see docs/benchmarks.md for what has been measured).
        self.compile_body = compile_body
        # Requests are tokenised in slices (this many first, doubling up to 16x),
        # the next slice in a background thread while the current one is scored: on a GPU, tokenising
        # a whole pass before its first batch left the device idle (H200, 135M model: ~0.55 s per
        # 4,000 renderings, in a 6.1 s run of 18,450).
        self.prepare_chunk = max(1, prepare_chunk)
        self._head_nll = HeadNLL(head_chunk)   # rows per block of the tiled head
        self.cache = None
        if use_cache:
            ns = f"likelihood/{lm.fingerprint.replace('/', '_')}-{lm.dtype}-v{ENGINE_VERSION}"
            self.cache = ShardCache(cache_root(cache_dir), ns, ("sum_nll", "n_tokens"))
        self.stats = EngineStats()
        self._fast_path: bool | None = None
        tok = lm.tokenizer
        if not getattr(tok, "is_fast", False):
            raise TunesiftError("the likelihood engine needs a fast (Rust) tokenizer for token offsets; "
                                f"{type(tok).__name__} is not one")
        self.pad_id = pad_id_of(tok)

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
        prep: list[_Prepared | None] = [None] * n
        keys: list[bytes | None] = [None] * n
        if self.cache is not None:
            self.cache.load()
        bar = progress_bar(total=n, desc=desc, unit="ex", disable=not self.progress, dynamic_ncols=True, leave=False)
        pool: list[int] = []      # prepared, not in the cache, not yet scored
        ratios: list[float] = []  # tokens per character of the texts prepared so far
        try:
            for idx, part, chars_left in self._prepared_slices(requests, max_target_tokens):
                skipped = 0   # nothing to score, or cached
                for i, p in zip(idx.tolist(), part):
                    prep[i] = p
                    result.n_tokens[i], result.n_target[i], result.truncated[i] = len(p.pos), p.n_target, p.truncated
                    if len(requests[i].text) >= 32 and len(ratios) < 65536:   # a sample is enough
                        ratios.append(len(p.ids) / len(requests[i].text))
                    if len(p.pos) == 0:
                        skipped += 1
                        prep[i] = None   # done with: a pass holds token ids only for work still to do
                        continue
                    if self.cache is not None:
                        keys[i] = ShardCache.key(p.ids.astype(np.int64).tobytes(), p.pos.astype(np.int64).tobytes())
                        hit = self.cache.get(keys[i])
                        if hit is not None:
                            result.sum_nll[i] = hit[0]
                            self.stats.cached += 1
                            skipped += 1
                            prep[i] = keys[i] = None
                            continue
                    if self.runner is not None and not self.runner.owns(keys[i]):
                        result.sum_nll[i] = np.nan   # another slice's: --shard computes its own only
                        self.stats.other_slice += 1
                        skipped += 1
                        prep[i] = keys[i] = None
                        continue
                    pool.append(i)
                self.stats.requests += len(part)
                bar.update(skipped)
                batches = self._batches(prep, pool)
                if chars_left:
                    # Texts still to come are shorter (in characters) than these: an underfull batch
                    # of rows they could join waits for them, so slicing adds few part-filled batches.
                    r = float(np.quantile(ratios, 0.99)) if ratios else 1.0
                    longest_left = min(self.max_length, int(chars_left * r) + 8)
                    fill = [self._fillable(prep, b, longest_left) for b in batches]
                    pool = [i for b, f in zip(batches, fill) if f for i in b]
                    batches = [b for b, f in zip(batches, fill) if not f]
                else:
                    pool = []
                if batches:
                    self._run(prep, batches, keys, result.sum_nll, bar)
                    for b in batches:   # scored and cached: a 10M-row pass never holds every row's ids
                        for i in b:
                            prep[i] = keys[i] = None
        finally:
            bar.close()
        self.stats.seconds += time.perf_counter() - t0
        return result

    def _fillable(self, prep, b: list[int], longest_left: int) -> bool:
        """Under half full, and rows of up to ``longest_left`` tokens would still fit its padding bound."""
        L = len(prep[b[0]].ids)   # batches are longest first
        return (len(b) * L < self.batch_tokens // 2 and len(b) < self.max_batch_size // 2
                and (1 - self.max_padding) * L <= longest_left)

    def _prepared_slices(self, requests: Sequence[Rendered], caps: Sequence[int | None] | None):
        """(request indices, their prepared renderings, the longest text still to come in characters)
        for slices of ``requests`` taken longest text first.  Each slice after the first is tokenised
        in a background thread while the caller scores the one before: the Rust tokenizer releases
        the GIL, and a GPU-bound caller mostly waits on the device."""
        from concurrent.futures import ThreadPoolExecutor

        chars = np.fromiter((len(r.text) for r in requests), dtype=np.int64, count=len(requests))
        order = np.argsort(-chars, kind="stable")
        bounds, a, size = [], 0, self.prepare_chunk
        while a < len(order):
            bounds.append(order[a:a + size])
            a, size = a + size, min(2 * size, 16 * self.prepare_chunk)

        def prepare(idx: np.ndarray):
            t = time.perf_counter()
            p = self.prepare([requests[i] for i in idx], None if caps is None else [caps[i] for i in idx])
            return p, time.perf_counter() - t

        worker = ThreadPoolExecutor(1, thread_name_prefix="tunesift-tokenize") if len(bounds) > 1 else None
        try:
            nxt = None
            for k, idx in enumerate(bounds):
                t = time.perf_counter()
                p, secs = prepare(idx) if nxt is None else nxt.result()
                self.stats.prepare_wait_seconds += time.perf_counter() - t
                self.stats.prepare_seconds += secs
                nxt = worker.submit(prepare, bounds[k + 1]) if k + 1 < len(bounds) else None
                yield idx, p, int(chars[bounds[k + 1][0]]) if nxt is not None else 0
        finally:
            if worker is not None:
                worker.shutdown(wait=True, cancel_futures=True)   # at most one slice still tokenising

    def _batches(self, prep: list[_Prepared], todo: list[int]) -> list[list[int]]:
        """Longest first, packed up to ``batch_tokens`` padded tokens; a batch also closes when the
        next sequence is so much shorter than the batch's longest that padding would exceed
        ``max_padding`` (padding is pure waste on a compute-bound CPU, and cheap to avoid on GPU
        where a real pool is dense in every length)."""
        # Requests that open with the same template preamble are batched together, so the batch's
        # shared prefix (whose KV is computed once) is the whole preamble; rare openings share a bucket.
        K = 16
        heads = {i: prep[i].ids[:min(K, int(prep[i].pos[0]))].tobytes() for i in todo}
        counts: dict[bytes, int] = {}
        for h in heads.values():
            counts[h] = counts.get(h, 0) + 1
        common = {h for h, c in counts.items() if c >= max(8, len(todo) // 50)} if self.share_prefix else set()
        bucket = {h: j for j, h in enumerate(sorted(common))}
        order = sorted(todo, key=lambda i: (bucket.get(heads[i], len(bucket)), -len(prep[i].ids)))
        batches, cur, cur_len, cur_bucket = [], [], 0, None
        for i in order:
            L = len(prep[i].ids)
            b = bucket.get(heads[i], len(bucket))
            if cur and ((len(cur) + 1) * cur_len > self.batch_tokens or len(cur) >= self.max_batch_size
                        or L < (1 - self.max_padding) * cur_len or b != cur_bucket):
                batches.append(cur)
                cur = []
            cur_bucket = b
            if not cur:
                cur_len = L
            cur.append(i)
        if cur:
            batches.append(cur)
        return batches

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
        with torch.inference_mode(), _attention_backends(self.lm), self._mlp_patch():
            if unit[0] == "nll":
                for b in unit[1]:
                    out.append(self._forward([_Prepared(ids, pos, len(pos), False) for ids, pos in b]).cpu().numpy())
            else:
                cand = torch.from_numpy(np.asarray(unit[1], dtype=np.int64)).to(next(self.lm.model.parameters()).device)
                for b in unit[2]:
                    out.append(self._nexttok_batch([_Prepared(ids, np.array([len(ids)]), 1, False) for ids in b], cand))
        return out

    def _run_remote(self, prep, batches, keys, sum_nll, bar) -> None:
        """``_run`` on the runner's workers: units of a few batches, results written (and cached)
        here as they arrive."""
        lens = {i: len(prep[i].ids) for b in batches for i in b}
        units = units_of(batches, lens, self.unit_batches * self.batch_tokens, parts_of(self.runner))
        payload = [("nll", [[(prep[i].ids, prep[i].pos) for i in b] for b in unit]) for unit in units]
        last_flush = time.perf_counter()

        def done(u: int, sums: list) -> None:
            nonlocal last_flush
            for b, v in zip(units[u], sums):
                for i, x in zip(b, v.tolist()):
                    sum_nll[i] = x
                    if self.cache is not None and keys[i] is not None:
                        self.cache.put(keys[i], (float(x), int(len(prep[i].pos))))
                self.stats.tokens += sum(lens[i] for i in b)
                self.stats.padded_tokens += len(b) * max(lens[i] for i in b)
                self.stats.target_tokens += sum(len(prep[i].pos) for i in b)
                self.stats.computed += len(b)
                self.stats.batches += 1
                bar.update(len(b))
            if self.cache is not None and (self.cache.pending >= self.flush_every
                                           or time.perf_counter() - last_flush > self.flush_seconds):
                self.cache.flush()
                last_flush = time.perf_counter()

        try:
            run_units(self.runner, self.recipe, self, payload, done)
        finally:
            if self.cache is not None:
                self.cache.flush()

    def _run(self, prep, batches, keys, sum_nll, bar) -> None:
        import torch

        if self.runner is not None and self.runner.remote:
            return self._run_remote(prep, batches, keys, sum_nll, bar)
        last_flush = time.perf_counter()
        t_start, tokens_done = time.perf_counter(), 0

        def finish(b, sums) -> None:
            nonlocal tokens_done, last_flush
            for i, v in zip(b, sums.cpu().tolist()):
                sum_nll[i] = v
                if self.cache is not None and keys[i] is not None:
                    self.cache.put(keys[i], (float(v), int(len(prep[i].pos))))
            ntok = sum(len(prep[i].ids) for i in b)
            tokens_done += ntok
            self.stats.tokens += ntok
            self.stats.padded_tokens += len(b) * max(len(prep[i].ids) for i in b)
            self.stats.computed += len(b)
            self.stats.target_tokens += sum(len(prep[i].pos) for i in b)
            self.stats.batches += 1
            bar.update(len(b))
            bar.set_postfix(tok_s=f"{tokens_done / max(time.perf_counter() - t_start, 1e-9):,.0f}", refresh=False)
            if self.cache is not None and (self.cache.pending >= self.flush_every
                                           or time.perf_counter() - last_flush > self.flush_seconds):
                self.cache.flush()
                last_flush = time.perf_counter()

        try:
            with torch.inference_mode(), _attention_backends(self.lm), self._mlp_patch():
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
            self._head_nll.release()   # one cache-sized tile; results may outlive the run
            if self.cache is not None:
                self.cache.flush()   # keep whatever finished, even when interrupted

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
        enc = self.lm.tokenizer(list(texts), add_special_tokens=add_special_tokens, return_attention_mask=False)
        prep, trunc = [], np.zeros(len(texts), dtype=bool)
        for i, ids in enumerate(enc["input_ids"]):
            ids = np.asarray(ids, dtype=np.int64)
            if len(ids) > self.max_length:
                head = self.max_length // 4
                ids, trunc[i] = np.concatenate([ids[:head], ids[len(ids) - self.max_length + head:]]), True
            prep.append(_Prepared(ids, np.array([len(ids)]), 1, bool(trunc[i])))
        out = np.zeros((len(texts), len(cand)), dtype=np.float64)
        keys: list[bytes | None] = [None] * len(prep)
        todo = []
        cache = None
        if self.cache is not None:
            if self._nexttok_cache is None:   # one per engine: its shards are read once, not per call
                self._nexttok_cache = ShardCache(self.cache.dir.parent, self.cache.dir.name + "-nexttok", ("logprobs",))
            cache = self._nexttok_cache
            cache.load()
        for i, p in enumerate(prep):
            if cache is not None:
                keys[i] = ShardCache.key(p.ids.tobytes(), cand.tobytes())
                hit = cache.get(keys[i])
                if hit is not None:
                    out[i] = hit[0]
                    self.stats.cached += 1
                    continue
                if self.runner is not None and not self.runner.owns(keys[i]):
                    out[i] = np.nan   # another --shard slice's
                    self.stats.other_slice += 1
                    continue
            todo.append(i)
        self.stats.requests += len(prep)
        if not todo:
            return out, trunc
        batches = self._batches(prep, todo)
        lens = {i: len(prep[i].ids) for i in todo}
        units = units_of(batches, lens, self.unit_batches * self.batch_tokens, parts_of(self.runner))
        t0 = time.perf_counter()

        def done(u: int, lps: list) -> None:
            for b, lp in zip(units[u], lps):
                for r, i in enumerate(b):
                    out[i] = lp[r]
                    if cache is not None:
                        cache.put(keys[i], (lp[r],))
                self.stats.computed += len(b)
                self.stats.batches += 1
                self.stats.tokens += sum(lens[i] for i in b)
                self.stats.padded_tokens += len(b) * max(lens[i] for i in b)

        try:
            run_units(self.runner, self.recipe, self,
                      [("nexttok", cand, [[prep[i].ids for i in b] for b in unit]) for unit in units], done)
        finally:
            if cache is not None:
                cache.flush()
            self.stats.seconds += time.perf_counter() - t0
        return out, trunc

    def _nexttok_batch(self, items: list[_Prepared], cand_t) -> np.ndarray:
        """Log-probabilities of the candidate tokens after each row's last token (float64, host)."""
        import torch
        model = self.lm.model
        dev = next(model.parameters()).device
        body, head, cap = body_and_head(model)
        ids = _to_device(self._padded(items), dev)
        B = ids.shape[0]
        if self._fast_path is None:
            n0 = min(len(items[0].ids), 64)
            self._fast_path = self._check_fast_path(ids[:1, :n0], None)
        last = torch.tensor([len(p.ids) - 1 for p in items], device=dev)
        rows = torch.arange(B, device=dev)
        if self._fast_path:   # right padding: a row's last real token is unaffected by the pads after it
            h = compiled(body, self.compile_body)(input_ids=ids, attention_mask=None, use_cache=False)[0]
            logits = head_logits(head, h[rows, last], cap)
        else:
            logits = model(input_ids=ids, use_cache=False).logits[rows, last].float()
        return torch.log_softmax(logits, -1)[:, cand_t].double().cpu().numpy()

    # ------------------------------------------------------------ model
    def _forward(self, items: list[_Prepared]):
        """Per-row NLL sums of one batch: a float64 tensor on the model's device, not yet read."""
        import torch
        import torch.nn.functional as F

        model = self.lm.model
        dev = next(model.parameters()).device
        B = len(items)
        ids = self._padded(items)
        rows = np.repeat(np.arange(B), [len(p.pos) for p in items])
        cols = np.concatenate([p.pos for p in items]).astype(np.int64)
        ids, rows, cols = (_to_device(x, dev) for x in (ids, rows, cols))
        targets = ids[rows, cols]
        if self._fast_path is None:   # the first row is the batch's longest: no padding in it
            n0 = min(len(items[0].ids), 64)
            self._fast_path = self._check_fast_path(ids[:1, :n0], torch.ones_like(ids[:1, :n0]))
        # Right padding never reaches a real token under a causal mask (pads come after it), and
        # every scored position is a real token: so no attention mask at all.  This keeps attention
        # eligible for its fused causal kernels (flash) and spends nothing on building masks.  (On an
        # H200 the mask alone was not what limited speed: see docs/benchmarks.md.)
        att = None
        if not self._fast_path:
            logits = model(input_ids=ids, attention_mask=att, use_cache=False).logits   # final, capped if any
            nll = F.cross_entropy(logits[rows, cols - 1].float(), targets, reduction="none")
        else:
            P = self._shared_prefix(items) if self.share_prefix and B > 1 else 0
            if P and self._prefix_ok is None:
                # Validate the prefix path once against the plain one, on the batch's longest and
                # shortest rows (so right padding is exercised): the whole first batch, the
                # longest of the run, would be scored twice.
                sel = (rows == 0) | (rows == B - 1)
                sub = (ids[[0, B - 1]], att, (rows[sel] != 0).long(), cols[sel], targets[sel])
                a, b = self._fast_nll(*sub, 0), self._fast_nll(*sub, P)
                tol = 1e-4 if "float32" in str(self.lm.dtype) else 3e-2   # half types: rounding, not bugs
                self._prefix_ok = bool(torch.allclose(a, b, rtol=tol, atol=tol))
                if not self._prefix_ok:
                    log.info("shared-prefix reuse disagrees with a plain forward for %s; disabled", self.lm.name)
            nll = self._fast_nll(ids, att, rows, cols, targets, P if self._prefix_ok else 0)
        return torch.zeros(B, dtype=torch.float64, device=dev).index_add_(0, rows, nll.double())

    def _padded(self, items: list[_Prepared]) -> np.ndarray:
        """Right-padded [rows, longest] token ids of a batch."""
        return right_padded([p.ids for p in items], self.pad_id)

    def _mlp_patch(self):
        import contextlib
        # a compiled body fuses the MLP itself; patching under it would only change what it traces
        return contextlib.nullcontext() if self.compile_body else inplace_mlps(self.lm.model)

    @staticmethod
    def _cache_kw(body) -> str:
        import inspect
        # transformers renamed past_key_values to cache (5.x deprecation); accept both.
        return "cache" if "cache" in inspect.signature(body.forward).parameters else "past_key_values"

    def _shared_prefix(self, items: list[_Prepared]) -> int:
        """Tokens every sequence of the batch starts with (a template preamble), up to the token
        before the first target, so every scored position's hidden state comes from the suffix pass."""
        first = items[0].ids
        n = min(min(len(p.ids) for p in items), min(int(p.pos[0]) for p in items) - 1)
        if n < self.min_shared_prefix:
            return 0
        stack = np.stack([p.ids[:n] for p in items])
        same = (stack == first[:n]).all(axis=0)
        P = int(np.argmin(same)) if not same.all() else n
        return P if P >= self.min_shared_prefix else 0

    def _fast_nll(self, ids, att, rows, cols, targets, P: int):
        """Decoder body once (reusing the KV of a shared ``P``-token prefix), head at targets only."""
        body, head, cap = body_and_head(self.lm.model)
        if P:
            out = body(input_ids=ids[:1, :P], use_cache=True)
            cache = out["cache"] if "cache" in out else out["past_key_values"]
            cache.batch_repeat_interleave(ids.shape[0])
            h = body(input_ids=ids[:, P:], attention_mask=att, use_cache=True, **{self._cache_kw(body): cache})[0]
        else:
            h = compiled(body, self.compile_body)(input_ids=ids, attention_mask=att, use_cache=False)[0]
        return self._head_nll(head, h[rows, cols - 1 - P], targets, cap)

    def _check_fast_path(self, ids, att) -> bool:
        """Body + head at target positions must equal the model's own logits; checked once per model."""
        ok = head_reproduces_logits(self.lm.model, ids, att)
        if not ok:
            log.warning("model %s: scoring with full logits (slower): a separate LM head does not reproduce "
                        "its logits", self.lm.name)
        return ok
