"""RDS+: pool examples nearest to a target set in the model's own position-weighted hidden states.

Ivison, Zhang, Wang, Pyatkin, Smith, Koh, Dasigi, Hajishirzi, "Large-Scale Data Selection for
Instruction Tuning", 2025 (arXiv 2503.01807; github.com/hamishivi/automated-instruction-selection).

Read in ``minimal_multitask/compute_influence_cosinesim.py`` (``--pooling weighted_mean``, the
README's RDS+ command), ``minimal_multitask/utils.py`` (``encode_with_messages_format``) and
``minimal_multitask/get_top_influences.py`` (``--selection_method max``):
1. Text: the Tulu format, "<|user|>\\n" + content.strip() + "\\n" and "<|assistant|>\\n" +
   content.strip() + EOS + "\\n" per message ("<|system|>" likewise), the whole string stripped,
   tokenised with the tokenizer's special tokens, truncated to its first 2,048 tokens.  Pool and
   target examples alike, prompt and response together.
2. Representation: the last layer's hidden states (``hidden_states[-1]``) of the *base* model,
   weighted by position, w_t = t / sum_s s over t = 1..L, summed, L2-normalised
   (``tunesift.signals.pooled_states``; ``pooling=mean`` / ``last`` are the code's other options).
3. Cosine of every pool example with every target example (``-p target=FILE``).
4. Selection, ``aggregation``:
   - ``round_robin`` (default, the code's ``max``): each target example ranks the pool by cosine;
     in turns, every target example takes its best remaining example (an example already taken is
     skipped for that turn), until the budget is full;
   - ``max``: top-k by the highest cosine to any target example (the per-task score of
     ``get_top_aggregated_influences.py``);
   - ``mean``: top-k by the mean cosine over target examples (``--selection_method mean_max``).
The ``score`` column is the best cosine to any target example (the mean for ``aggregation=mean``)
and ``best_target`` names that target example; a round-robin selection's order is its pick order.
The code runs batch size 1 in bf16; tunesift batches (right padding reads only real positions) in
the run's dtype.  A threshold budget has no round-robin meaning: it keeps every example whose
score passes.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset, Example, read_dataset
from ..selectors import Budget
from ..signals.pooled_states import POOLINGS, PooledStates
from .base import Context, Method, register
from .faithfulness import Divergence
from .params import Fixture, Range


@dataclass
class RDSConfig:
    target: str | None = None         # the target task's examples: a dataset file (required)
    target_limit: int | None = None
    pooling: Literal[POOLINGS] = "weighted_mean"   # weighted_mean (RDS+) | mean | last
    aggregation: Literal["round_robin", "max", "mean"] = "round_robin"   # round_robin (the code's max) | max | mean
    max_length: Annotated[int, Range(2)] = 2048


def tulu_text(e: Example, eos: str) -> str:
    parts = []
    for m in e.messages:
        tag = {"system": "<|system|>", "user": "<|user|>", "assistant": "<|assistant|>"}.get(m["role"])
        if tag is None:
            raise TunesiftError(f"example {e.id}: role {m['role']!r} has no Tulu tag")
        parts.append(tag + "\n" + m["content"].strip() + (eos if m["role"] == "assistant" else "") + "\n")
    return "".join(parts).strip()


def token_ids(examples: list[Example], tokenizer, max_length: int) -> tuple[list[np.ndarray], np.ndarray]:
    """Tulu-format token ids (first ``max_length`` kept) and whether each was cut."""
    eos = tokenizer.eos_token or ""
    enc = tokenizer([tulu_text(e, eos) for e in examples], return_attention_mask=False)["input_ids"]
    ids = [np.asarray(x[:max_length], dtype=np.int64) for x in enc]
    return ids, np.array([len(x) > max_length for x in enc], dtype=bool)


def round_robin(S: np.ndarray, k: int) -> np.ndarray:
    """Pool indices in pick order: each target column in turn takes its best example not yet taken
    (a column whose next best is taken loses that turn); ties go to the lower pool index."""
    N, M = S.shape
    k = min(k, N)
    # after r rounds the picks include column 0's top r, so no column ever reads past its top k
    orders = [np.lexsort((np.arange(N), -S[:, j]))[:k] for j in range(M)]
    taken = np.zeros(N, bool)
    picks: list[int] = []
    r = 0
    while len(picks) < k:
        for j in range(M):
            i = orders[j][r]
            if not taken[i]:
                taken[i] = True
                picks.append(int(i))
                if len(picks) == k:
                    break
        r += 1
    return np.asarray(picks, dtype=np.int64)


@register
class RDS(Method):
    name = "rds"
    cost = "1 LM hidden-state pass per example and per target example"
    Config = RDSConfig
    paper = "Large-Scale Data Selection for Instruction Tuning (RDS+)"
    venue = "arXiv 2025"
    code = "https://github.com/hamishivi/automated-instruction-selection"
    needs = ("causal_lm", "target_set")
    test_params = dict(target=Fixture("target"))
    summary = "Position-weighted mean-pooled hidden states; cosine to a target set; round-robin over target examples."
    faithfulness = (
        Divergence(topic="batching and dtype",
                   official="compute_influence_cosinesim.py:113-141: batch size 1, bf16 (--dtype)",
                   default="ours",
                   parameter="none: length-sorted batches, right padding, pooling over real positions only; "
                             "--dtype bfloat16 for the code's precision"),
        Divergence(topic="selection over target examples",
                   official="get_top_influences.py:237-284: round-robin over test examples (--selection_method max)",
                   paper="RDS+ round-robin selection",
                   default="official",
                   parameter="aggregation=max (best cosine) or aggregation=mean (get_top_influences.py:154-171)"),
        Divergence(topic="threshold budgets",
                   official="get_top_influences.py: an output size only",
                   default="ours",
                   parameter="-b '>=C' keeps every example whose score (best or mean cosine) passes"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        cfg = self.config
        if not cfg.target:
            raise TunesiftError("rds selects for a target task: give its examples with -p target=PATH "
                                "(a dataset file, e.g. a few-shot set of the benchmark you care about)")
        tgt = read_dataset(cfg.target, limit=cfg.target_limit)
        if len(tgt) == 0:
            raise TunesiftError(f"{cfg.target}: the target set is empty")
        lm = ctx.causal_lm()
        max_length = ctx.max_length or cfg.max_length
        enc = PooledStates(lm, cfg.pooling, batch_tokens=ctx.batch_tokens, cache_dir=ctx.cache_dir,
                           use_cache=ctx.use_cache, progress=ctx.progress, runner=ctx.runner())
        pool_ids, trunc = token_ids(data.examples, lm.tokenizer, max_length)
        tgt_ids, _ = token_ids(tgt.examples, lm.tokenizer, max_length)
        X = enc.encode(pool_ids, desc="rds pool")
        T = enc.encode(tgt_ids, desc="rds target")
        self.similarity_ = X @ T.T
        agg = self.similarity_.mean(axis=1) if cfg.aggregation == "mean" else self.similarity_.max(axis=1)
        return pd.DataFrame({"score": agg, "eligible": True, "reason": "",
                             "best_target": [tgt.examples[j].id for j in self.similarity_.argmax(axis=1)],
                             "truncated": trunc})

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        k = budget.count(len(table))
        if self.config.aggregation != "round_robin" or k is None:
            return super().select(table, budget, ctx)
        return round_robin(self.similarity_, k)
