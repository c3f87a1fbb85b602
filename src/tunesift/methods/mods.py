"""MoDS: quality filter, k-center seed set, then the examples the seed model still answers badly.

Du, Zong, Zhang, "MoDS: Model-oriented Data Selection for Instruction Tuning", arXiv 2311.15653, 2023
(github.com/CASIA-LM/MoDS).

1. Quality: a reward model scores (question, answer), question = instruction (+ "\\n" + input),
   the pair uncut (the code tokenizes it without truncation; ``reward_max_length`` cuts it);
   keep reward > ``alpha`` (README: 0.0).
2. Coverage: k-center greedy on embeddings of the high-quality *instructions* picks the seed set.
3. Necessity: fine-tune the base model on the seed set (the official recipe, below), let it
   answer every other high-quality instruction (Alpaca prompt), score those answers with the same
   reward model (question always instruction + "\\n" + input, as the code does), and add the
   examples whose answer scores below ``beta``.
Final set = seed + necessary (de-duplicated; the code's concatenation can repeat items).

Seed model, as ``train/run.sh`` and the README: full fine-tuning, 3 epochs, lr 2e-5 with cosine
decay after 3% warm-up, max length 1,024, 512 examples per step (4 GPUs x 8 per device x 16
accumulation), the step's loss the mean over device micro-batches of each one's token mean (HF
Trainer; ``loss_weighting="group"``, ``loss_group_size=8``).  Scaled to the pool: 512 per step was
for the paper's 1,000 seeds (a recalled figure; the code takes ``top_k`` as an argument), about
half the seed set per step, so 2 steps per epoch and 6 in all.  ``batch_size=None`` (default) keeps
that share: ceil(0.512 x seeds) examples per step, at most 512, so a seed set of any size gets the
official run's 6 updates; ``batch_size=512`` is the literal setting.  ``train_method="lora"
learning_rate=2e-4 batch_size=16 lr_schedule=linear loss_weighting=token`` is the previous default.

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
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset
from ..models.generate import prompts_of
from ..models.loading import resolve_device
from ..selectors import Budget
from ..selectors.kcenter import kcenter_greedy
from ..signals.generation import Generator
from ..train import TrainConfig, finetune
from ._judging import PairJudge, question_text
from .base import Context, SetMethod, register
from .faithfulness import Divergence
from .params import Field, LossWeighting, Positive, Range, TrainMethod

log = logging.getLogger("tunesift")


@dataclass
class MoDSConfig:
    reward_model: str | None = None   # path of a sequence-classification reward model; None: LM rating judge
    alpha: float | None = None        # quality threshold (None: 0.0 for a reward model, 3.0 for the rating judge)
    beta: float | None = None         # necessity threshold (None: -1.0 for a reward model, 3.0 for the rating judge)
    seed_fraction: Annotated[float, Range(0, 1, lo_open=True)] = 0.25
    fill: Literal["budget", "threshold"] = "budget"   # budget: fill up to the budget; threshold: every example below beta
    field: Field = "instruction"        # what is embedded for the seed set (the code: the instruction alone)
    # seed-model fine-tuning: the official recipe (train/run.sh), the step scaled to the seed set
    train_method: TrainMethod = "full"
    epochs: float = 3.0
    learning_rate: float | None = 2e-5   # None: the engine's default for train_method (2e-4 LoRA)
    batch_size: Positive | None = None   # None: ceil(0.512 x seeds), at most 512 (512 per step on 1,000 seeds)
    lr_schedule: Literal["cosine", "linear"] = "cosine"
    loss_weighting: LossWeighting = "group"   # group: mean of per-device micro-batch token means (HF Trainer) | token | example
    loss_group_size: Positive = 8          # the code's per_device_train_batch_size
    max_new_tokens: int = 256
    num_beams: int = 1
    max_length: int = 1024            # the code's model_max_length
    reward_max_length: Annotated[int, Range(8)] | None = None   # None: the reward model reads the whole pair, as the code


OFFICIAL_STEP, OFFICIAL_SEEDS = 512, 1000   # run.sh: 4 x 8 x 16 per step; the paper's seed count


def seed_batch_size(n_seed: int, batch_size: int | None) -> int:
    """Examples per step of the seed fine-tune: the given size, or the official run's share of the
    seed set per step (512 of 1,000), at most 512."""
    if batch_size is not None:
        return batch_size
    return max(1, min(OFFICIAL_STEP, -(-n_seed * OFFICIAL_STEP // OFFICIAL_SEEDS)))


@register
class MoDS(SetMethod):
    name = "mods"
    cost = "1 reward (or rating) pass + 1 embedding per example; 1 fine-tune on the seed set; generation + 1 reward pass per remaining example"
    Config = MoDSConfig
    paper = "MoDS: Model-oriented Data Selection for Instruction Tuning"
    venue = "arXiv 2023"
    code = "https://github.com/CASIA-LM/MoDS"
    needs = ("causal_lm", "embedder", "reward_model")
    test_params = dict(epochs=1, max_new_tokens=8)
    stages = 3
    summary = "Reward-model quality filter, k-center seed set, then what the seed-tuned model still answers badly."
    faithfulness = (
        Divergence(topic="seed-model training",
                   official="train/run.sh:7-18 and README.md:74-95: full fine-tuning, 3 epochs, lr 2e-5 cosine, "
                            "warm-up 0.03; HF Trainer: the mean of per-device micro-batch (8) token means",
                   parameter="train_method=lora learning_rate=2e-4 batch_size=16 lr_schedule=linear "
                             "loss_weighting=token (the previous default)"),
        Divergence(topic="seed-model step size",
                   official="train/run.sh:2,8,10: 4 GPUs x 8 per device x 16 accumulation = 512 per step "
                            "(2 steps per epoch on the paper's 1,000 seeds)",
                   default="ours",
                   parameter="batch_size=512 (default: ceil(0.512 x seeds), at most 512, the official share "
                             "of the seed set per step)"),
        Divergence(topic="reward model input length",
                   official="quality-evaluation/quality-evaluation.py:85 and necessity-evaluation/"
                            "necessity-evaluation.py:81: tokenizer(question, answer), no truncation (a pair "
                            "the model cannot take raises and is dropped)",
                   parameter="reward_max_length=512 (cut the pair, longest first)"),
        Divergence(topic="seed embeddings and k-center start",
                   official="diverse-data-selection/run.py:17-25: BERT [CLS] of the instruction (max length 96); "
                            "kcenter_greedy.py: unseeded np.random start",
                   default="ours", parameter="the run's embedder and --seed"),
        Divergence(topic="generation",
                   official="inference/instruction_filter.py:60,101: beam search 4, max_new_tokens = model_max_length",
                   default="ours", parameter="num_beams=4 max_new_tokens=1024"),
    )

    def _reward(self, ctx: Context, questions: list[str], answers: list[str]) -> np.ndarray:
        if getattr(self, "judge_", None) is None:
            # the code reads the pair whole (reward_max_length None), where PairJudge cuts at 512
            self.judge_ = PairJudge(self.config.reward_model, self.config.max_length,
                                    reward_max_length=self.config.reward_max_length)
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
        self.embeddings_ = ctx.embed(data, self.config.field)   # the dataset: data_, from Method.run
        eligible = q > alpha
        return pd.DataFrame({"score": np.nan, "quality": q, "eligible": eligible,
                             "reason": np.where(eligible, "", f"quality <= {alpha:g}")})

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        cfg = self.config
        _, beta = self._thresholds()
        pool = self.pool(table)
        if len(pool) == 0:
            raise TunesiftError("mods: no example passed the quality filter; lower alpha")
        k = min(self.budget_count(budget, len(table)), len(pool))
        n_seed = max(1, min(k, round(cfg.seed_fraction * k)))
        first = int(np.random.default_rng(ctx.seed).integers(len(pool)))
        local, gains = kcenter_greedy(self.embeddings_[pool], n_seed, first=first, return_gains=True,
                                      device=resolve_device(ctx.device), progress=ctx.progress)
        seed = pool[local]
        table["stage"] = ""
        table.loc[seed, "stage"] = "seed"
        rest = np.setdiff1d(pool, seed)
        necessary = np.zeros(0, dtype=int)
        if len(rest) and (k > n_seed or cfg.fill == "threshold"):
            log.info("mods: fine-tuning the seed model on %d seeds, then answering %d instructions", len(seed), len(rest))
            tr = finetune(ctx.causal_lm(), self.data_.subset(seed.tolist()),
                          TrainConfig(method=cfg.train_method, template="alpaca", epochs=cfg.epochs,
                                      learning_rate=cfg.learning_rate, batch_size=seed_batch_size(len(seed), cfg.batch_size),
                                      lr_schedule=cfg.lr_schedule, warmup_ratio=0.03, loss_weighting=cfg.loss_weighting,
                                      loss_group_size=cfg.loss_group_size, seed=ctx.seed, max_length=cfg.max_length),
                          progress=ctx.progress)
            exs = [self.data_.examples[i] for i in rest]
            prompts, _ = prompts_of(self.data_.subset(rest.tolist()), "alpaca", None)
            answers = Generator(tr.lm, ctx.runner(), max_new_tokens=cfg.max_new_tokens,
                                num_beams=cfg.num_beams)(prompts, progress=ctx.progress)
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
