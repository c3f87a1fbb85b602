"""The decoder body and LM head of a causal LM, used apart so that the head (vocabulary-wide, the
costliest layer per position of a small model) runs only where a score or a loss needs it."""
from __future__ import annotations

import logging

log = logging.getLogger("tunesift")


def body_and_head(model):
    """(decoder body, LM head, final logit soft-cap or None), under a PEFT wrapper if there is one."""
    inner = model.get_base_model() if hasattr(model, "get_base_model") else model
    return inner.base_model, inner.get_output_embeddings(), getattr(inner.config, "final_logit_softcapping", None)


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
