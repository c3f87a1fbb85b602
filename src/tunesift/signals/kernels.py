"""The likelihood engine's forward kernels over one causal LM: per-row NLL of target tokens and
next-token log-probabilities, for right-padded batches of prepared renderings.

Why they are fast:
- the LM head runs only at target positions (the decoder body runs once over the batch; the
  vocabulary projection, the biggest matmul of a small model, is skipped for prompt tokens), after
  a one-time check that body + head reproduce the model's own logits;
- no attention mask (right padding never reaches a real token under a causal mask);
- on a CPU a batch's shared template preamble is run once and its KV reused, after a one-time check
  against the plain forward;
- ``use_cache=False``, ``torch.inference_mode``, in-place MLPs, SDPA off cuDNN on a GPU.
"""
from __future__ import annotations

import contextlib
import inspect
import logging

import numpy as np

from ..models.heads import HeadNLL, body_and_head, compiled, head_logits, head_reproduces_logits
from ..models.inplace import inplace_mlps
from ..models.loading import LoadedLM
from .batching import pad_id_of, right_padded
from .tokenize import _Prepared

log = logging.getLogger("tunesift")


def _attention_backends(lm: LoadedLM):
    """On CUDA, keep SDPA off the cuDNN backend, which sets up a graph for every new (batch, length)
    shape, and length-sorted batches are nearly all new shapes.  Measured on an H200 (135M model):
    a batch took ~145 ms while the GPU was busy ~14 ms of it; off cuDNN the run went from 930 to
    1,519 examples/s.  Flash / efficient kernels need no per-shape set-up."""
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


class LMKernels:
    """Forward passes of one causal LM over batches of ``_Prepared`` renderings.

    ``_forward`` (NLL sums) and ``_nexttok_batch`` (candidate log-probabilities) run inside
    ``inference()``.  The likelihood engine subclasses this, so a test or benchmark can stand in for a
    kernel by setting it on the engine instance."""

    def __init__(self, lm: LoadedLM, head_chunk: int = 1024, share_prefix: bool | None = None,
                 min_shared_prefix: int = 4, compile_body: bool | str = False):
        self.lm = lm
        # Preamble-KV reuse pays on a compute-bound CPU (fewer tokens); on a GPU the cached-KV
        # attention path costs more than the tokens it saves (H200: 1,101 vs 1,519 examples/s, 135M).
        if share_prefix is None:
            share_prefix = not str(lm.device).startswith("cuda")
        self.share_prefix, self.min_shared_prefix = share_prefix, min_shared_prefix
        # torch.compile of the decoder body (plain passes; the cached-KV prefix path stays eager).
        # Off by default: on the 2-core CPU it gained nothing (522 vs 539 tokens/s after a 3-minute
        # compile); on a GPU it fuses the small model's elementwise kernels, which launch-bound
        # 135M batches may need (see docs/benchmarks.md for what has been measured).
        self.compile_body = compile_body
        self._head_nll = HeadNLL(head_chunk)   # rows per block of the tiled head
        self._fast_path: bool | None = None    # body + head at targets reproduces the logits (checked once)
        self._prefix_ok: bool | None = None    # the shared-prefix path agrees with a plain one (checked once)
        self.pad_id = pad_id_of(lm.tokenizer)

    @contextlib.contextmanager
    def inference(self):
        """The context every kernel call runs in."""
        import torch
        with torch.inference_mode(), _attention_backends(self.lm), self._mlp_patch():
            yield

    def release(self) -> None:
        """Let the head's tile go (one cache-sized buffer) after a run; results may outlive it."""
        self._head_nll.release()

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

    def _padded(self, items: list[_Prepared]) -> np.ndarray:
        """Right-padded [rows, longest] token ids of a batch."""
        return right_padded([p.ids for p in items], self.pad_id)

    def _mlp_patch(self):
        # a compiled body fuses the MLP itself; patching under it would only change what it traces
        return contextlib.nullcontext() if self.compile_body else inplace_mlps(self.lm.model)

    @staticmethod
    def _cache_kw(body) -> str:
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
