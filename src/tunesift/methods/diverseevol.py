"""DiverseEvol: the model picks its own data, round by round, by k-center on its own embeddings.

Wu et al., "Self-Evolved Diverse Data Sampling for Efficient Instruction Tuning", arXiv 2311.08182,
2023 (github.com/OFA-Sys/DiverseEvol, ``KCenterSampling``).

Round 0 draws a random labelled set and fine-tunes the base model on it.  Each round r = 1..R then
embeds every example with the previous round's model (mean of the last layer's hidden states over
all tokens of the Alpaca prompt + response + EOS, max length 512, not normalised), adds the
``per_round`` unlabelled examples that k-center greedy picks (largest Euclidean distance to the
nearest labelled one), and fine-tunes the *base* model afresh on the whole labelled set (the code
reloads it every round).  Training as the code's config and README: full fine-tuning, 3 epochs,
lr 2e-5 with cosine decay after 3% warm-up, max length 512, 64 examples per step (4 GPUs x 4 per
device x 4 accumulation), the step's loss the mean over its 16 device micro-batches of each one's
token mean (the HF Trainer of transformers 4.28; ``loss_weighting="group"``, ``loss_group_size=4``).

Budget: the final labelled set.  The paper starts with 100 and adds 100 in each of 10 rounds
(1,100); tunesift splits the budget evenly over round 0 and ``rounds`` rounds (round 0 takes the
remainder).  Only R fine-tunes are needed to choose the data (the paper's last, on the final set,
trains the model it evaluates; ``tunesift train`` does that on the selection).
Scores: each pick's k-center gain (its distance to the nearest labelled example, under that
round's model); the random round-0 examples have +inf, as k-center's first pick does; ``round``
says when each was added.

Divergences: the code draws round 0 with an unseeded ``torch.randperm`` (tunesift: the run's seed);
it forms the dense N x N distance matrix on one GPU and takes sqrt of values that rounding can make
negative (NaN); tunesift runs its exact lazy k-center with the labelled set as seeds and clamps at 0;
it embeds one example at a time (tunesift: length-sorted batches, right padding, which causal
attention leaves exact); its steps are random draws, tunesift's are built from length-sorted
micro-batches.  ``whiten_components`` > 0 applies the code's optional whitening (off by default in
the code and here).  ``train_method="lora"`` trades fidelity for speed; ``batch_size=16
loss_weighting=token`` is the previous default (four times the steps per round).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pandas as pd

from ..data.io import Dataset
from ..models.loading import resolve_device
from ..models.templates import render_conversation, with_eos
from ..selectors import Budget
from ..selectors.kcenter import kcenter_greedy
from ..signals.embeddings import LMEmbedder
from ..train import TrainConfig, finetune
from .base import Context, SetMethod, register
from .faithfulness import Divergence
from .params import LossWeighting, Positive, Range, TrainMethod

log = logging.getLogger("tunesift")


@dataclass
class DiverseEvolConfig:
    rounds: Positive = 10                  # k-center rounds after the random round 0
    train_method: TrainMethod = "full"   # full (the paper) | lora
    epochs: Annotated[float, Range(0, lo_open=True)] = 3.0
    learning_rate: float | None = None   # None: 2e-5 full, 2e-4 LoRA
    batch_size: int = 64              # 4 GPUs (README) x 4 per device x 4 accumulation (the code's config)
    loss_weighting: LossWeighting = "group"   # group: mean of per-device micro-batch token means (HF Trainer) | token | example
    loss_group_size: Positive = 4          # the code's per_device_train_batch_size
    max_length: int = 512
    whiten_components: Annotated[int, Range(0)] = 0        # > 0: whiten the embeddings to this many dimensions first


def whiten(X: np.ndarray, n: int) -> np.ndarray:
    """BERT-whitening as the code's ``compute_kernel_bias`` / ``transform_and_normalize``: centre,
    rotate onto the covariance's top ``n`` eigenvectors scaled by 1/sqrt(eigenvalue), unit rows."""
    X = X.astype(np.float64)
    mu = X.mean(0, keepdims=True)
    u, s, _ = np.linalg.svd(np.cov((X - mu).T))
    Y = (X - mu) @ (u / np.sqrt(np.maximum(s, 1e-12)))[:, :n]
    return (Y / np.maximum(np.linalg.norm(Y, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@register
class DiverseEvol(SetMethod):
    name = "diverseevol"
    cost = "per round (10): a fine-tune on the chosen set + 1 LM embedding per example"
    Config = DiverseEvolConfig
    paper = "Self-Evolved Diverse Data Sampling for Efficient Instruction Tuning"
    venue = "arXiv 2023"
    code = "https://github.com/OFA-Sys/DiverseEvol"
    needs = ("causal_lm", "fine-tuning")
    test_params = dict(rounds=2, epochs=1)
    summary = "Rounds of: fine-tune on the chosen set, embed the pool with that model, add k-center picks."
    faithfulness = (
        Divergence(topic="examples per step",
                   official="configs/config_example_kc_dolly.yml:11,13 (per device 4, accumulation 4) x "
                            "README.md:55 (--nproc_per_node=4): 64 per step",
                   parameter="batch_size=16 (the previous default: 4 x 4 on one device)"),
        Divergence(topic="loss weighting",
                   official="evol_schedule_base.py:119 HF Trainer (environment.yml:192 transformers 4.28.1): the "
                            "mean over micro-batches of each 4-example micro-batch's token mean",
                   parameter="loss_weighting=token (the mean over the step's tokens)"),
        Divergence(topic="round-0 draw and k-center start",
                   official="evol_schedule_base.py:49 unseeded torch.randperm; evol_schedules/kcenter_sampling.py:64 "
                            "sqrt of a dense N x N matrix that rounding can make negative (NaN)",
                   default="ours", parameter="the run's --seed; exact lazy k-center, distances clamped at 0"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        # Everything happens in select (the rounds fine-tune on chosen sets); it reads the
        # dataset from ``data_``, which Method.run sets.
        n = len(data)
        return pd.DataFrame({"score": np.full(n, np.nan), "eligible": np.ones(n, dtype=bool), "reason": ""})

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        c, data = self.config, self.data_
        max_length = ctx.max_length or c.max_length
        pool = self.pool(table)
        k = min(self.budget_count(budget, len(table)), len(pool))
        rounds = max(0, min(c.rounds, k - 1))
        per = k // (rounds + 1) if rounds else 0
        init = k - rounds * per
        rng = np.random.default_rng(ctx.seed)
        labelled = np.sort(rng.permutation(len(pool))[:init])          # positions in ``pool``
        gains = [np.full(init, np.inf)]
        table["round"] = -1
        table.loc[pool[labelled], "round"] = 0
        lm = ctx.causal_lm()
        texts = [with_eos(render_conversation(data.examples[i], "alpaca", lm.tokenizer, ctx.turns),
                          lm.tokenizer.eos_token).text for i in pool]
        cfg = TrainConfig(method=c.train_method, template="alpaca", epochs=c.epochs, learning_rate=c.learning_rate,
                          batch_size=c.batch_size, max_length=max_length, lr_schedule="cosine", warmup_ratio=0.03,
                          turns=ctx.turns, loss_weighting=c.loss_weighting, loss_group_size=c.loss_group_size,
                          seed=ctx.seed)
        self.rounds_ = []
        for r in range(1, rounds + 1):
            log.info("diverseevol round %d/%d: fine-tuning on %d examples, then embedding %d", r, rounds,
                     len(labelled), len(pool))
            tr = finetune(lm, data.subset(pool[labelled].tolist()), cfg, progress=ctx.progress)
            X = LMEmbedder(tr.lm, max_length=max_length, batch_tokens=ctx.batch_tokens, normalize=False,
                           use_cache=False, progress=ctx.progress,
                           runner=ctx.runner()).encode(texts, desc=f"embedding (round {r})")
            del tr
            if c.whiten_components:
                X = whiten(X, c.whiten_components)
            new, g = kcenter_greedy(X, per, seeds=labelled.tolist(), return_gains=True,
                                    device=resolve_device(ctx.device), progress=ctx.progress)
            new = np.asarray(new, dtype=np.int64)
            table.loc[pool[new], "round"] = r
            self.rounds_.append({"round": r, "trained_on": int(len(labelled)), "added": int(len(new)),
                                 "radius": float(g[-1]) if len(g) else 0.0})
            labelled = np.concatenate([labelled, new])
            gains.append(np.asarray(g, dtype=float))
        return self.record(table, pool[labelled], np.concatenate(gains))
