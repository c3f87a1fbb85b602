"""Learning percentage: keep, in every cluster, the examples a small model learns last.

Mekala, Nguyen, Shang, "Smaller Language Models are capable of selecting Instruction-Tuning Training
Data for Larger Language Models", ACL 2024 Findings (arXiv 2402.10430; github.com/dheeraj7596/Small2Large).

1. Fine-tune the selector model on the *whole* pool for ``epochs`` (n = 3) epochs: Alpaca prompt,
   EOS after the response, loss on response tokens, full fine-tuning, lr 2e-5 with cosine decay after
   3% warm-up, 32 examples per step, max length 512 (the code's ``train.py`` / ``dump_pplxs.py``).
   The step's loss is the HF Trainer's: the mean over the step's device micro-batches of 4 of each
   one's token mean (``loss_weighting="group"``, ``loss_group_size=4``; ``token`` weights every
   token of the step alike).  The README leaves the GPU count open (``--nproc_per_node=...``);
   32 per step is per-device 4 x accumulation 8 on one.
2. Each example's response perplexity P_i = exp(mean NLL of its response tokens and EOS) before
   training (P_0) and after each epoch (P_1..P_n), all scored by the batched engine on the model
   being trained (the code: a Trainer callback at train begin and at each epoch end).
3. ``variant="lp"`` (default): LP(1) = (P_0 - P_1) / (P_0 - P_n), the share of the whole drop that
   happened in epoch 1, and 0 where P_0 = P_n (as the code sets it).  ``variant="lp_approx"``:
   (P_0 - P_1) / P_0, which needs one epoch only.  Low = learned late = "hard"; lowest first.
4. k-means (k-means++ seeding) on all-MiniLM-L6-v2 embeddings of
   "Instruction: {instruction input} Response: {output}", then the lowest-LP examples of each cluster.

Selection, by name.  ``selection="budget"`` (default): the budget is split across clusters in
proportion to their sizes (largest remainders), so the count is exactly the budget.
``selection="chunks"``: the code's rule: each cluster sorted by LP is split into round(1 / fraction)
near-equal chunks (``np.array_split``) and the first is kept, i.e. ceil(size / chunks) per cluster, so
the count exceeds the budget on small clusters (10% of Alpaca over 1,000 clusters keeps ~11.5%).
Ties: the code's pandas sort is unstable; tunesift breaks them by input order.

Divergences: the code averages the per-token losses that are not exactly 0 (its way of skipping
padding; a real token's loss is 0.0 only in an underflow), tunesift averages over the scored tokens;
both run scikit-learn's k-means with its defaults (k-means++, one initialisation), the code seeded
with 42, tunesift with the run's seed.
``n_clusters``: the code takes it as an argument (1,000 for Alpaca's 52k); tunesift's default keeps
about 50 examples per cluster, up to 1,000.  ``train_method="lora"`` trades fidelity for speed.
The selector fine-tune is not resumable: a crashed run trains again (the scoring passes are short).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset
from ..models.templates import render_conversation, with_eos
from ..selectors import Budget
from ..selectors.cluster import lowest_per_cluster, proportional_quotas
from ..signals import LikelihoodEngine
from ..train import TrainConfig, finetune
from ._passes import resolve_template
from .base import Context, Method, register
from .faithfulness import Divergence
from .params import LossWeighting, Positive, Template, TrainMethod

log = logging.getLogger("tunesift")


@dataclass
class LearningPercentageConfig:
    variant: Literal["lp", "lp_approx"] = "lp"   # lp: LP(1) = (P0-P1)/(P0-Pn) | lp_approx: (P0-P1)/P0 (one epoch)
    epochs: Positive = 3              # n (lp); lp_approx trains one epoch whatever this says
    selection: Literal["budget", "chunks"] = "budget"   # budget: exactly the budget | chunks: the code's per-cluster chunk rule
    n_clusters: Positive | None = None   # None: one per ~50 examples, at most 1,000
    template: Template = "alpaca"
    train_method: TrainMethod = "full"   # full (the paper) | lora
    learning_rate: float | None = None   # None: 2e-5 full, 2e-4 LoRA
    batch_size: int = 32              # examples per optimiser step (4 per device x 8 accumulation)
    loss_weighting: LossWeighting = "group"   # group: mean of per-device micro-batch token means (HF Trainer) | token | example
    loss_group_size: Positive = 4          # the README's per_device_train_batch_size
    max_length: int = 512


def embed_text(e) -> str:
    """The code's clustering text: "Instruction: {instruction input} Response: {output}", stripped."""
    ins = (e.instruction if e.instruction is not None else e.prompt) or ""
    both = (ins.strip() + " " + (e.input or "").strip()).strip()
    return f"Instruction: {both} Response: {e.response.strip()}"


@register
class LearningPercentage(Method):
    name = "learning-percentage"
    cost = "a 3-epoch full fine-tune on the whole pool + 4 LM passes per example"
    Config = LearningPercentageConfig
    paper = "Smaller Language Models are capable of selecting Instruction-Tuning Training Data for Larger Language Models"
    venue = "ACL 2024 Findings"
    code = "https://github.com/dheeraj7596/Small2Large"
    needs = ("causal_lm", "embedder", "fine-tuning")
    test_params = dict(epochs=2)
    summary = "Fine-tune a small model on the pool; per cluster, keep what it learns last (lowest LP(1))."
    higher_is_better = False
    default_budget = "10%"
    faithfulness = (
        Divergence(topic="selector loss weighting",
                   official="README.md:27-45 (dump_pplxs.py with per_device_train_batch_size 4, "
                            "gradient_accumulation_steps 8) and dump_pplxs.py:313 HF Trainer: the mean over "
                            "micro-batches of each 4-example micro-batch's token mean",
                   parameter="loss_weighting=token (the mean over the step's tokens)"),
        Divergence(topic="selection count",
                   official="subset.py:134-135: round(100 / percentage) np.array_split chunks per cluster, the first kept",
                   default="ours", parameter="selection=chunks"),
        Divergence(topic="perplexity tokens",
                   official="dump_pplxs.py:268-271: the mean over per-token losses that are not exactly 0",
                   default="ours", parameter="none: the mean over the scored (response + EOS) tokens"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        c = self.config
        lm = ctx.causal_lm()
        template = resolve_template(c.template, ctx)
        max_length = ctx.max_length or c.max_length
        reqs = [with_eos(render_conversation(e, template, lm.tokenizer, ctx.turns), lm.tokenizer.eos_token)
                for e in data.examples]
        epochs = 1 if c.variant == "lp_approx" else c.epochs
        passes: list[np.ndarray] = []
        n_tokens: list[np.ndarray] = []

        def measure(snap) -> None:
            # Uncached: the snapshot exists only inside this run.  Same engine options as every pass.
            eng = LikelihoodEngine(snap.lm, max_length=max_length, batch_tokens=ctx.batch_tokens, use_cache=False,
                                   progress=ctx.progress, **ctx.engine_options)
            res = eng.nll(reqs, desc=f"perplexity P{snap.epoch}")
            passes.append(res.ppl)
            n_tokens.append(res.n_tokens)

        log.info("learning-percentage: fine-tuning the selector (%s, %d epoch%s) on all %d examples",
                 c.train_method, epochs, "s" if epochs > 1 else "", len(data))
        tr = finetune(lm, data, TrainConfig(method=c.train_method, template=template, epochs=float(epochs),
                                            learning_rate=c.learning_rate, batch_size=c.batch_size,
                                            max_length=max_length, lr_schedule="cosine", warmup_ratio=0.03,
                                            turns=ctx.turns, loss_weighting=c.loss_weighting,
                                            loss_group_size=c.loss_group_size, seed=ctx.seed),
                      progress=ctx.progress, on_epoch=measure)
        self.training_ = tr.summary()
        P = np.stack(passes)                      # [epochs + 1, examples]
        p0, p1, pn = P[0], P[1], P[-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            lp = np.where(p0 - pn != 0, (p0 - p1) / (p0 - pn), 0.0)
            approx = (p0 - p1) / p0
        ok = n_tokens[0] > 0
        table = pd.DataFrame({"score": np.where(ok, lp if c.variant == "lp" else approx, np.nan)})
        table["eligible"] = ok
        table["reason"] = np.where(ok, "", "no response tokens within max_length")
        table["lp1"] = np.where(ok, lp, np.nan) if c.variant == "lp" else np.nan
        table["lp1_approx"] = np.where(ok, approx, np.nan)
        for i, p in enumerate(P):
            table[f"ppl_{i}"] = np.where(ok, p, np.nan)
        table["n_tokens"] = n_tokens[0]            # response tokens + EOS scored (= trained)

        X = ctx.embedder().encode([embed_text(e) for e in data.examples], desc="embedding for clusters")
        k = c.n_clusters or min(1000, max(1, round(len(data) / 50)))
        labels, _ = ctx.kmeans(X, min(k, len(data)))
        table["cluster"] = labels
        return table

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        ok = table["eligible"].to_numpy()
        labels = np.where(ok, table["cluster"].to_numpy(), -1)
        k_clusters = int(table["cluster"].max()) + 1
        sizes = np.bincount(labels[ok], minlength=k_clusters)
        n = int(ok.sum())
        if self.config.selection == "chunks":
            frac = budget.value if budget.kind == "fraction" else None
            if budget.kind == "count":
                frac = budget.value / max(len(table), 1)
            if not frac:
                raise TunesiftError("learning-percentage: selection=chunks needs a count or a fraction as budget")
            chunks = max(1, round(1 / frac))
            quota = -(-sizes // chunks)           # the first of np.array_split's chunks: ceil(size / chunks)
        else:
            want = budget.count(len(table))
            if want is None:
                raise TunesiftError(f"learning-percentage keeps a share of each cluster: give a count or a "
                                    f"fraction as budget, not {budget}")
            quota = proportional_quotas(sizes, min(want, n))
        return lowest_per_cluster(labels, table["score"].to_numpy(), quota)
