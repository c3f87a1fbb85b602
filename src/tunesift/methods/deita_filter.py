"""Score-first diversity filter (the rule DEITA published).

Liu et al., "What Makes Good Data for Alignment? A Comprehensive Study of Automatic Data Selection in
Instruction Tuning" (DEITA), ICLR 2024; official code github.com/hkust-nlp/deita.

Walk the examples from the highest score down and keep one unless its cosine similarity to some
example *already kept* is above ``threshold`` (DEITA: 0.9, rejected at ``> 0.9``:
``selection/filter/base.py``), until the budget is reached.  Some reimplementations compare against
the whole pool instead of the kept set, which is wrong.  The score is DEITA's own by default
(``deita-scorers``: complexity x quality, summed over turns, from the run's model offline: see that
module), or any registered method's score, or a numeric field of the records (e.g. scores DEITA's
released 7B scorers wrote).  Before ``revision`` 1 the default was ``ifd``; on a small pool whose top
examples are seldom near-duplicates that made this method's selection IFD's, which is not DEITA.

What is embedded: DEITA renders the whole conversation in the Vicuna v1.1 template (system prompt,
"USER: ... ASSISTANT: ...</s>" per turn; ``embedder/utils.py`` ``preprocess``) and takes the
last-token final hidden state of a causal LM (Mistral-7B by default, 2,048 tokens,
``embedder/clm_embedder.py``); its 0.9 threshold is calibrated for that space.  tunesift embeds the
same rendering (``field="conversation"``) with the run's embedder: ``--embedder lm-last`` is DEITA's
embedding with the run's causal LM; the default embedder is the packaged all-MiniLM-L6-v2
(mean-pooled, 256 tokens), because the run's embedder is shared by every diversity method and needs
no LM pass over the pool.  Under MiniLM the 0.9 threshold is not DEITA's: expect a different (usually
weaker) filter.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.io import Dataset, Example
from ..models.templates import VICUNA_SYSTEM
from ..selectors import Budget
from ..selectors.cluster import score_first_filter
from ..signals.embeddings import FIELDS
from ._quality import quality_scores
from .base import Context, SetMethod, register
from .faithfulness import Divergence
from .params import Range

CONVERSATION = "conversation"


@dataclass
class DeitaFilterConfig:
    score: str = "deita-scorers"  # DEITA's score; or another method's name, or a numeric record field
    threshold: Annotated[float, Range(-1, 1)] = 0.9   # a cosine similarity
    field: Literal[(CONVERSATION,) + FIELDS] = CONVERSATION   # DEITA's Vicuna v1.1 rendering of the conversation; or one of FIELDS
    at_threshold: Literal["keep", "reject"] = "keep"  # keep: DEITA rejects only above the threshold | reject: also at it


def deita_conversation(e: Example) -> str:
    """The conversation as DEITA's embedder renders it (Vicuna v1.1, FastChat's ADD_COLON_TWO style):
    the fixed system prompt, then "ROLE: text" closed by " " after a user turn and "</s>" after an
    assistant turn; an empty turn writes "ROLE:" alone.  DEITA's ShareGPT roles are human and gpt only
    (a record's own system turn is dropped here) and a leading assistant turn is skipped."""
    msgs = [m for m in e.messages if m["role"] in ("user", "assistant")]
    if msgs and msgs[0]["role"] != "user":
        msgs = msgs[1:]
    out = VICUNA_SYSTEM + " "
    for m in msgs:
        role, sep = ("USER", " ") if m["role"] == "user" else ("ASSISTANT", "</s>")
        out += f"{role}: {m['content']}{sep}" if m["content"] else f"{role}:"
    return out


@register
class DeitaFilter(SetMethod):
    name = "deita-filter"
    cost = "the score method's cost + 1 embedding per example"
    revision = 1   # a default changed: see the faithfulness rows
    Config = DeitaFilterConfig
    paper = "What Makes Good Data for Alignment? (DEITA) - score-first diversity filter"
    venue = "ICLR 2024"
    code = "https://github.com/hkust-nlp/deita"
    needs = ("embedder", "quality")
    summary = "Highest score first; skip an example too similar (cosine > 0.9) to one already kept."
    faithfulness = (
        Divergence(topic="score",
                   official="pipeline/score_pipeline.py + filter/combined_filter.py: the scorers' complexity x "
                            "quality, summed over turns, ranks the pool",
                   default="official", parameter="score=deita-scorers (the run's model as scorer offline; "
                                                 "-p score=ifd or a record field for another ranking)"),
        Divergence(topic="embedding",
                   official="selection/embedder/clm_embedder.py:59-66: last-token final hidden state of a causal "
                            "LM (examples/pipelines/embed_datasets.py:11,17: Mistral-7B-v0.1, max_length 2048); "
                            "filter/base.py:28-35: L2-normalised, cosine",
                   default="ours",
                   parameter="--embedder lm-last (the run's causal LM, last token, normalised); the default is "
                             "the run's sentence encoder (MiniLM), shared by all diversity methods"),
        Divergence(topic="embedded text",
                   official="selection/embedder/utils.py:30-42: the whole conversation in the vicuna_v1.1 "
                            "template (embed_datasets.py:13)",
                   default="official", parameter="field=whole (instruction\\ninput\\nresponse, the old default) "
                                                 "or another embedding field"),
        Divergence(topic="rejection at the threshold",
                   official="selection/filter/base.py:94,99: rejected when cosine > threshold (0.9)",
                   default="official", parameter="at_threshold=reject (cosine >= threshold, the old rule)"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        c = self.config
        if c.field != CONVERSATION:
            return self.embed(data, ctx, c.field, c.score)
        self.embeddings_ = ctx.embedder().encode([deita_conversation(e) for e in data.examples],
                                                 desc="embedding conversations")
        q, eligible, reason = quality_scores(data, ctx, c.score)
        self.quality_ = q
        return pd.DataFrame({"score": np.nan, "quality": q, "eligible": eligible, "reason": reason})

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        pool = self.pool(table)
        k = budget.count(len(table))
        t = self.config.threshold
        # score_first_filter rejects at >= its threshold; the next float up makes that DEITA's strict >
        t = t if self.config.at_threshold == "reject" else float(np.nextafter(t, np.inf))
        local = score_first_filter(self.embeddings_[pool], self.quality_[pool], k, t)
        return self.record(table, pool[local], self.quality_[pool][local])
