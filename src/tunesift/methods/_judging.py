"""What several judge-based methods share: the question text of an example, and a pair-quality
judge (a reward model when one is given, else the run's LM reading a rating prompt)."""
from __future__ import annotations

import numpy as np

from .base import Context


def question_text(e, always_newline: bool = False) -> str:
    """Instruction (+ newline + input): the user turn as the judge papers' code builds it.
    ``always_newline``: MoDS's necessity stage adds the newline even when the input is empty."""
    if e.instruction is None:
        return e.prompt
    inp = e.input or ""
    return e.instruction + "\n" + inp if (inp or always_newline) else e.instruction


class PairJudge:
    """Scores (question, answer) pairs: a reward model's logit, or the expected rating
    sum_k k * P'(k) over "1".."5" from one forward pass of the run's LM (SelectIT's rating prompt)."""

    def __init__(self, reward_model: str | None = None, max_length: int = 1024):
        self.reward_model, self.max_length = reward_model, max_length
        self._rm = None

    @property
    def scale(self) -> str:
        return "reward" if self.reward_model else "rating"

    def __call__(self, ctx: Context, questions: list[str], answers: list[str]) -> np.ndarray:
        if self.reward_model:
            if self._rm is None:
                from ..signals.reward import RewardModel
                self._rm = RewardModel(self.reward_model, device=ctx.device, cache_dir=ctx.cache_dir,
                                       use_cache=ctx.use_cache, progress=ctx.progress)
            return self._rm.score(questions, answers)[0]
        from .selectit import RATING_PROMPTS, digit_ids, rating_text
        texts = [rating_text(RATING_PROMPTS[0], q, a) for q, a in zip(questions, answers)]
        lp, _ = ctx.engine(self.max_length).next_token_logprobs(texts, digit_ids(ctx.causal_lm().tokenizer),
                                                                desc="rating")
        P = np.exp(lp)
        P /= P.sum(axis=1, keepdims=True)
        return (P * np.arange(1, 6)).sum(axis=1)
