"""What several judge-based methods share: a pair-quality judge (a reward model when one is given,
else the run's LM reading SelectIT's rating prompt).

Rating prompts longer than the engine's ``max_length`` lose their middle (the likelihood engine keeps
the first quarter and the last three quarters of the tokens): the rating instruction at the start and
the ``The answer is:`` cue at the end survive, the example's content is cut.

The rating vocabulary (``RATING_PROMPTS``, ``rating_text``) lives with the rating judges in
``models.judge`` and ``question_text`` with the example in ``data.example``; both are re-exported here.
"""
from __future__ import annotations

import numpy as np

from ..data.example import question_text  # noqa: F401  (re-exported)
from ..models.judge import RATING_PROMPTS, rating_text, rating_token_ids
from ..signals.reward import RewardModel
from .base import Context


class PairJudge:
    """Scores (question, answer) pairs: a reward model's logit, or the expected rating
    sum_k k * P'(k) over "1".."5" from one forward pass of the run's LM (SelectIT's rating prompt)."""

    def __init__(self, reward_model: str | None = None, max_length: int = 1024, reward_max_length: int | None = 512):
        # reward_max_length: the pair's tokens the reward model reads (None: all of it, as MoDS's code)
        self.reward_model, self.max_length, self.reward_max_length = reward_model, max_length, reward_max_length
        self._rm = None

    @property
    def scale(self) -> str:
        return "reward" if self.reward_model else "rating"

    def __call__(self, ctx: Context, questions: list[str], answers: list[str]) -> np.ndarray:
        if self.reward_model:
            if self._rm is None:
                self._rm = RewardModel(self.reward_model, device=ctx.device, cache_dir=ctx.cache_dir,
                                       max_length=self.reward_max_length or 1 << 30, use_cache=ctx.use_cache,
                                       progress=ctx.progress, runner=ctx.runner())
            return self._rm.score(questions, answers)[0]
        texts = [rating_text(RATING_PROMPTS[0], q, a) for q, a in zip(questions, answers)]
        lp, _ = ctx.engine(self.max_length).next_token_logprobs(
            texts, rating_token_ids(ctx.causal_lm().tokenizer), desc="rating")
        P = np.exp(lp)
        P /= P.sum(axis=1, keepdims=True)
        return (P * np.arange(1, 6)).sum(axis=1)
