"""The decoder body and LM head of a causal LM, used apart so that the head (vocabulary-wide, the
costliest layer per position of a small model) runs only where a score or a loss needs it."""
from __future__ import annotations

import logging
import weakref

log = logging.getLogger("tunesift")
_COMPILED: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def body_and_head(model):
    """(decoder body, LM head, final logit soft-cap or None), under a PEFT wrapper if there is one."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.base_model, inner.get_output_embeddings(), getattr(inner.config, "final_logit_softcapping", None)


def compiled(module, mode: bool | str):
    """``torch.compile(module, dynamic=True)``, once per module and mode (engines of one model share it).

    Dynamic shapes from the first call: length-sorted batches are nearly all new (batch, length)
    shapes, and a static compile would recompile for each.  ``mode`` True is inductor's default;
    a string is passed as ``mode`` (e.g. "max-autotune-no-cudagraphs")."""
    import torch
    if not mode:
        return module
    key = "default" if mode is True else str(mode)
    per_module = _COMPILED.setdefault(module, {})
    if key not in per_module:
        per_module[key] = torch.compile(module, dynamic=True, mode=None if mode is True else mode)
    return per_module[key]


def head_logits(head, h, cap):
    """float32 logits of hidden states ``h``, soft-capped as the model's own forward does (Gemma)."""
    import torch
    logits = head(h).float()
    return cap * torch.tanh(logits / cap) if cap else logits


def head_reproduces_logits(model, ids, attention_mask=None) -> bool:
    """Whether body + head give the model's own logits on ``ids``: some architectures scale or
    post-process logits in ways a separate head would miss, so callers check once per model."""
    import torch
    try:
        body, head, cap = body_and_head(model)
        if head is None:
            return False
        with torch.no_grad():
            ref = model(input_ids=ids, attention_mask=attention_mask, use_cache=False).logits.float()
            fast = head_logits(head, body(input_ids=ids, attention_mask=attention_mask, use_cache=False)[0], cap)
        return bool(torch.allclose(ref, fast, rtol=1e-3, atol=1e-3 * float(ref.abs().max())))
    except Exception as e:  # noqa: BLE001 - any failure means: use the full logits
        log.info("separate LM head unavailable (%s); using full logits", e)
        return False


class HeadNLL:
    """Per-position NLL of ``targets`` under the LM head: ``logsumexp(logits) - logits[target]``.

    On a CPU with a float32 bias-free linear head (the usual case) the logits are never materialised
    vocabulary-wide: rows go in blocks of ``chunk`` and the vocabulary in tiles of ``vocab_tile``, each
    [chunk, tile] product lands in one reused, cache-sized buffer and is folded into a running
    (max, sum of exponentials) per row, i.e. an online log-sum-exp.  The whole-vocabulary version
    wrote and re-read a [rows, 49,152] tensor several times from memory: 2,000 rows of SmolLM2 took
    0.90-1.08 s (105-126 GFLOP/s) against 0.79-0.82 s (139-143 GFLOP/s) tiled, and a fresh tensor
    per call (page faults) plus cross-entropy's log-softmax copy had cost a fifth more before that.
    The target logit is a row-wise dot product.  Elsewhere (GPU, half types, soft-capped or wrapped
    heads) it is ``cross_entropy``, chunked by rows."""

    def __init__(self, chunk: int = 1024, vocab_tile: int = 4096):
        self.chunk, self.vocab_tile = chunk, vocab_tile
        self._buf = None

    def __call__(self, head, h, targets, cap):
        import torch
        import torch.nn.functional as F
        w = getattr(head, "weight", None)
        tiled = (type(head) is torch.nn.Linear and head.bias is None and cap is None and h.device.type == "cpu"
                 and w.dtype == torch.float32 and h.dtype == torch.float32 and not torch.is_grad_enabled())
        if not tiled:
            chunk = max(self.chunk, 4096)   # the CPU's cache-sized blocks would only add launches on a GPU
            out = [F.cross_entropy(head_logits(head, h[k:k + chunk], cap), targets[k:k + chunk], reduction="none")
                   for k in range(0, len(h), chunk)]
            return torch.cat(out) if len(out) != 1 else out[0]
        V, T = w.shape[0], min(self.vocab_tile, w.shape[0])
        if self._buf is None or self._buf.shape[0] < min(len(h), self.chunk) or self._buf.shape[1] != T:
            self._buf = torch.empty(min(len(h), self.chunk), T, dtype=torch.float32)
        out = torch.empty(len(h), dtype=torch.float32)
        for k in range(0, len(h), self.chunk):
            hk = h[k:k + self.chunk]
            n = len(hk)
            m = torch.full((n,), -float("inf"))
            s = torch.zeros(n)
            for v in range(0, V, T):
                wv = w[v:v + T]
                b = self._buf[:n, :len(wv)]
                torch.mm(hk, wv.t(), out=b)
                mv = torch.maximum(m, b.amax(1))
                s.mul_(m.sub_(mv).exp_()).add_(b.sub_(mv[:, None]).exp_().sum(1))
                m = mv
            tgt = (hk * w[targets[k:k + n]]).sum(1)
            out[k:k + n] = s.log_().add_(m).sub_(tgt)
        return out

    def release(self) -> None:
        self._buf = None
