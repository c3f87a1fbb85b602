"""Likelihood passes that several methods share, all through the one batched engine."""
from __future__ import annotations

import numpy as np

from ..data.io import Dataset
from ..models.templates import render_conversation, render_direct, response_tag
from ..signals import NLLResult
from .base import Context


def resolve_template(template: str, ctx: Context) -> str:
    """'auto' = the model's chat template when it has one, else the Alpaca prompt."""
    if template != "auto":
        return template
    return "chat" if getattr(ctx.causal_lm().tokenizer, "chat_template", None) else "alpaca"


def conditioned(data: Dataset, ctx: Context, template: str, max_length: int, desc: str) -> NLLResult:
    """NLL of the response (the target assistant turns) given the prompt, rendered by ``template``."""
    tok = ctx.causal_lm().tokenizer
    reqs = [render_conversation(e, template, tok, ctx.turns) for e in data.examples]
    return ctx.engine(max_length).nll(reqs, desc=desc)


def direct(data: Dataset, ctx: Context, tag: str | None, template: str, max_length: int, desc: str,
           caps: np.ndarray | None = None) -> NLLResult:
    """NLL of each target response with no prompt (after ``tag``; None = the template's response tag).

    ``caps`` limits the response tokens scored per example, so that where the conditioned pass was
    truncated both passes score the same response prefix.
    """
    if tag is None:
        tag = response_tag(template, ctx.causal_lm().tokenizer)
    reqs, groups, cap_list = [], [], []
    for i, e in enumerate(data.examples):
        responses = [m["content"] for m in e.messages if m["role"] == "assistant"]
        chosen = responses if ctx.turns == "all" else responses[-1:]
        for r in chosen:
            reqs.append(render_direct(r, tag))
            groups.append(i)
            # Per-turn caps are only defined for a single target turn.
            cap_list.append(int(caps[i]) if caps is not None and ctx.turns == "last" and caps[i] >= 0 else None)
    res = ctx.engine(max_length).nll(reqs, max_target_tokens=cap_list, desc=desc)
    return res.grouped(np.asarray(groups), len(data))
