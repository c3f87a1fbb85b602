"""Reward score: a reward model's scalar for (question, answer) as a standalone filter or top-k.

The quality signal of MoDS (Du et al. 2023, github.com/CASIA-LM/MoDS: OpenAssistant's
reward-model-deberta-v3-large-v2, keep reward > 0) and one indicator of Instruction Mining, exposed on
its own.  It is a baseline, not a paper of its own: there is no official selection code to follow.

- Question = instruction (+ "\\n" + input), answer = the response, as MoDS's code builds the pair;
  ``reward_model`` is any ``AutoModelForSequenceClassification`` directory with one label
  (``tunesift.signals.reward``: length-sorted token-budget batches, masked padding, disk cache).
- Budget: the normal vocabulary -- a count or fraction keeps the top rewards; a threshold such as
  ``-b ">0"`` keeps every example above it (MoDS's quality rule).
- Offline no reward model is bundled.  Without ``reward_model`` the judge is the run's causal LM
  reading a rating prompt: the expected rating sum_k k P'(k) over "1".."5" from one forward pass
  (the same fallback MoDS uses), so scores are on a 1-5 scale, not reward logits.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pandas as pd

from ..data.io import Dataset
from ._judging import PairJudge, question_text
from .base import Context, Method, register
from .faithfulness import Divergence
from .params import Range


@dataclass
class RewardScoreConfig:
    reward_model: str | None = None   # sequence-classification reward model; None: the run's LM rating judge
    max_length: Annotated[int, Range(8)] = 1024   # the rating judge's context (the reward model truncates at 512 tokens)


@register
class RewardScore(Method):
    name = "reward-score"
    cost = "1 reward (or rating) pass per example"
    Config = RewardScoreConfig
    paper = "Reward-model score of (instruction, response) as a quality filter (MoDS's quality stage)"
    venue = "baseline"
    code = "https://github.com/CASIA-LM/MoDS"
    needs = ("reward_model",)
    summary = "A reward model's score of (instruction[+input], response); top-k or a threshold budget."
    faithfulness = (
        Divergence(topic="judge when no reward model is given",
                   official="MoDS README: OpenAssistant/reward-model-deberta-v3-large-v2 (a download)",
                   default="ours",
                   parameter="reward_model=PATH (offline default: the run's LM, expected 1-5 rating)"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        judge = PairJudge(self.config.reward_model, self.config.max_length)
        r = np.asarray(judge(ctx, [question_text(e) for e in data.examples], [e.response for e in data.examples]),
                       dtype=float)
        ok = np.isfinite(r)
        return pd.DataFrame({"score": r, "eligible": ok, "reason": np.where(ok, "", "reward undefined"),
                             "reward": r, "judge": judge.scale})
