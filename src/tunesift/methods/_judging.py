"""What several judge-based methods share: the question text of an example, SelectIT's rating
prompt, and a pair-quality judge (a reward model when one is given, else the run's LM reading the
rating prompt).

Rating prompts longer than the engine's ``max_length`` lose their middle (the likelihood engine keeps
the first quarter and the last three quarters of the tokens): the rating instruction at the start and
the ``The answer is:`` cue at the end survive, the example's content is cut.
"""
from __future__ import annotations

import numpy as np

from ..models.judge import rating_token_ids
from .base import Context

RATING_PROMPTS = (
    "Rate from 1 to 5 how well the response below fulfils the instruction, judging accuracy and helpfulness. "
    "Answer with a single digit.",
    "On a scale of 1 (poor) to 5 (excellent), score the quality of the response to the instruction. "
    "Reply with one number.",
    "Judge whether the response follows the instruction correctly and completely. Give a score between 1 and 5.",
    "Considering relevance, correctness and clarity, how good is this response to the instruction? "
    "Score it 1, 2, 3, 4 or 5.",
    "You are grading an assistant. Read the instruction and its response, then output a grade from 1 (worst) "
    "to 5 (best).",
)


def rating_text(line: str, instruction: str, response: str) -> str:
    """SelectIT's rating prompt (``construction_rps``): the rating line, a blank line, ``Instruction:``,
    ``Response:``, then ``The answer is: `` on its own line."""
    # readlines() keeps the line's newline and the code adds another: a blank line follows the rating line
    return f"{line}\n\nInstruction:{instruction}\nResponse:{response}\nThe answer is: \n"


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
        texts = [rating_text(RATING_PROMPTS[0], q, a) for q, a in zip(questions, answers)]
        lp, _ = ctx.engine(self.max_length).next_token_logprobs(
            texts, rating_token_ids(ctx.causal_lm().tokenizer), desc="rating")
        P = np.exp(lp)
        P /= P.sum(axis=1, keepdims=True)
        return (P * np.arange(1, 6)).sum(axis=1)
