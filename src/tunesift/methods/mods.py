"""MoDS: quality filter, k-center seed set, then the examples the seed model still answers badly.

Du, Zong, Zhang, "MoDS: Model-oriented Data Selection for Instruction Tuning", arXiv 2311.15653, 2023
(github.com/CASIA-LM/MoDS).

1. Quality: a reward model scores (question, answer), question = instruction (+ "\\n" + input);
   keep reward > ``alpha`` (README: 0.0).
2. Coverage: k-center greedy on embeddings of the high-quality *instructions* picks the seed set.
3. Necessity: fine-tune the base model on the seed set (tunesift's fine-tuning engine), let it
   answer every other high-quality instruction (Alpaca prompt), score those answers with the same
   reward model (question always instruction + "\\n" + input, as the code does), and add the
   examples whose answer scores below ``beta``.
Final set = seed + necessary (de-duplicated; the code's concatenation can repeat items).

Budget: the final size; ``seed_fraction`` of it goes to the seed set and the necessary examples
fill the rest, lowest answer reward first (the paper keeps every one below beta, whatever the
count; ``fill="threshold"`` does that).  Offline no reward model is bundled: without
``reward_model`` the quality judge is the run's causal LM reading a rating prompt (the expected
rating sum_k k P_k over "1".."5", from one forward pass), with thresholds on that 1-5 scale.
Divergences, by name: the code embeds with BERT [CLS] (tunesift: the run's sentence encoder), starts
k-center from an unseeded random point (tunesift: the run's seed), and generates with beam search 4
and 1,024 new tokens (``num_beams``, ``max_new_tokens``; defaults 1 and 256 for speed).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset
from ..models.loading import resolve_device
from ..selectors import Budget
from ..selectors.kcenter import kcenter_greedy
from ._judging import PairJudge, question_text
from .base import Context, SetMethod, choose, register

log = logging.getLogger("tunesift")


@dataclass
class MoDSConfig:
    reward_model: str | None = None   # path of a sequence-classification reward model; None: LM rating judge
    alpha: float | None = None        # quality threshold (None: 0.0 for a reward model, 3.0 for the rating judge)
    beta: float | None = None         # necessity threshold (None: -1.0 for a reward model, 3.0 for the rating judge)
    seed_fraction: float = 0.25
    fill: str = "budget"              # budget: fill up to the budget; threshold: every example below beta
    field: str = "instruction"        # what is embedded for the seed set (the code: the instruction alone)
    epochs: float = 3.0               # seed-model fine-tuning (LoRA)
    learning_rate: float | None = None
    max_new_tokens: int = 256
    num_beams: int = 1
    max_length: int = 1024

    def validate(self) -> None:
        choose(self.fill, ("budget", "threshold"), "fill")
        if not 0 < self.seed_fraction <= 1:
            raise TunesiftError("seed_fraction must be in (0, 1]")


@register
class MoDS(SetMethod):
    name = "mods"
    Config = MoDSConfig
    paper = "MoDS: Model-oriented Data Selection for Instruction Tuning"
    venue = "arXiv 2023"
    code = "https://github.com/CASIA-LM/MoDS"
    needs = ("causal_lm", "embedder", "reward_model")
    stages = 3
    summary = "Reward-model quality filter, k-center seed set, then what the seed-tuned model still answers badly."

    def _reward(self, ctx: Context, questions: list[str], answers: list[str]) -> np.ndarray:
        if getattr(self, "judge_", None) is None:
            self.judge_ = PairJudge(self.config.reward_model, self.config.max_length)
        return self.judge_(ctx, questions, answers)

    def _thresholds(self) -> tuple[float, float]:
        rm = bool(self.config.reward_model)
        a = self.config.alpha if self.config.alpha is not None else (0.0 if rm else 3.0)
        b = self.config.beta if self.config.beta is not None else (-1.0 if rm else 3.0)
        return a, b

    # ------------------------------------------------------------ stages
    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        alpha, _ = self._thresholds()
        q = self._reward(ctx, [question_text(e) for e in data.examples], [e.response for e in data.examples])
        self.data_ = data
        self.embeddings_ = ctx.embed(data, self.config.field)
        eligible = q > alpha
        return pd.DataFrame({"score": np.nan, "quality": q, "eligible": eligible,
                             "reason": np.where(eligible, "", f"quality <= {alpha:g}")})

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        from ..evaluate.tasks import generate, prompts_of
        from ..train import TrainConfig, finetune
        cfg = self.config
        _, beta = self._thresholds()
        pool = self.pool(table)
        if len(pool) == 0:
            raise TunesiftError("mods: no example passed the quality filter; lower alpha")
        k = min(self.budget_count(budget, len(table)), len(pool))
        n_seed = max(1, min(k, round(cfg.seed_fraction * k)))
        first = int(np.random.default_rng(ctx.seed).integers(len(pool)))
        local, gains = kcenter_greedy(self.embeddings_[pool], n_seed, first=first, return_gains=True,
                                      device=resolve_device(ctx.device))
        seed = pool[local]
        table["stage"] = ""
        table.loc[seed, "stage"] = "seed"
        rest = np.setdiff1d(pool, seed)
        necessary = np.zeros(0, dtype=int)
        if len(rest) and (k > n_seed or cfg.fill == "threshold"):
            log.info("mods: fine-tuning the seed model on %d seeds, then answering %d instructions", len(seed), len(rest))
            tr = finetune(ctx.causal_lm(), self.data_.subset(seed.tolist()),
                          TrainConfig(template="alpaca", epochs=cfg.epochs, learning_rate=cfg.learning_rate,
                                      seed=ctx.seed, max_length=cfg.max_length), progress=ctx.progress)
            exs = [self.data_.examples[i] for i in rest]
            prompts, _ = prompts_of(self.data_.subset(rest.tolist()), "alpaca", None)
            answers = generate(tr.lm, prompts, max_new_tokens=cfg.max_new_tokens, num_beams=cfg.num_beams,
                               progress=ctx.progress)
            ans_reward = self._reward(ctx, [question_text(e, always_newline=True) for e in exs], answers)
            table["answer_reward"] = np.nan
            table.loc[rest, "answer_reward"] = ans_reward
            below = np.flatnonzero(ans_reward < beta)
            below = below[np.lexsort((rest[below], ans_reward[below]))]   # worst answered first, index ties
            if cfg.fill == "budget":
                below = below[:k - n_seed]
            necessary = rest[below]
            table.loc[necessary, "stage"] = "necessary"
            self.seed_model_ = tr
        picks = np.concatenate([seed, necessary])
        gain = np.concatenate([gains, -table.loc[necessary, "answer_reward"].to_numpy()
                               if len(necessary) else np.zeros(0)])
        if cfg.fill == "budget" and len(picks) < k:
            log.info("mods: %d seeds + %d necessary = %d, below the budget of %d (no other answer scored below beta=%g)",
                     len(seed), len(necessary), len(picks), k, beta)
        return self.record(table, picks, gain)
