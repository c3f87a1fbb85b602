"""IFD with Cherry LLM's pre-experienced model (Cherry V1).

Li et al., "From Quantity to Quality: Boosting LLM Performance with Self-Guided Data Selection for
Instruction Tuning", NAACL 2024.  Official code: github.com/MingLiiii/Cherry_LLM (mirror
tianyi-lab/Cherry_LLM): ``cherry_seletion/data_analysis.py --mod pre``, ``cherry_seletion/data_by_cluster.py``,
``scripts/pre_experience_{analysis,selection}.sh``, then ``--mod cherry`` and ``data_by_IFD.py`` (``ifd``).

1. "Learning from brief experience", with the base model and the Alpaca prompt (no response), cut at
   max_length 512 (``data_analysis.py:142``): the prompt's perplexity, exp of the mean loss over every
   token after the first (``labels=input_ids``), and the mean of its last-layer hidden states over all
   its tokens (``hidden_states[-1].mean(dim=1)``).  Here: the likelihood engine on the prompt as target,
   and ``PooledStates(pooling="mean", normalize=False)``.
2. k-means on those embeddings (``data_by_cluster.py:30``: 100 clusters, random_state 0).
3. In each cluster (``data_by_cluster.py:41-76``, ``pre_experience_selection.sh``: sample_num 10,
   low_th 25, up_th 75): a cluster with fewer than 10 members is taken whole; otherwise the members whose
   perplexity lies within the cluster's [25th, 75th] percentiles (``np.percentile``, inclusive), in index
   order; fewer than 10 of them are taken whole, else every ``len // 10``-th from the first, the first 10.
4. A brief fine-tune of the base model on that sample (the pre-experienced model), then IFD exactly as
   the ``ifd`` method (its options and selection) with that model.

Divergences (each a ``Divergence`` row on the class):
- Scaled sample: Cherry's 100 clusters x 10 (about 1,000 examples) are for Alpaca's 52,002.  By default
  the cluster count is round(100 * n / 52,002), at least 1 and at most 100 (10 per cluster kept), so a
  200-example pool gives 1 cluster of 10 and Alpaca gives Cherry's 100; ``clusters=`` fixes it.
- The fine-tune is a reconstruction: the README's step "3. Train Pre-Experienced Model" has no recipe.
  We use its Hyperparameters table for Cherry V1 (Alpaca): full fine-tuning, global batch 128, lr 2e-5,
  3 epochs, max length 512, weight decay 0, warm-up 0.03, with the Stanford Alpaca trainer it ships
  (``training/stanford_alpaca``: cosine schedule, EOS after the response, loss on the response).
  The step loss is the mean over the step's tokens (``tunesift.train``'s default), not the Trainer's
  mean of per-device micro-batch means.
- k-means: scikit-learn's KMeans through ``selectors.cluster.kmeans`` (one k-means++ initialisation,
  seed ``--seed``, 0 by default); Cherry called ``KMeans(n_clusters=100, random_state=0)`` with the
  default ``n_init`` of its scikit-learn (10 before 1.4, one after).
- Clusters are visited by their label values (``np.unique``); Cherry iterates ``range(#distinct labels)``,
  the same whenever the labels are 0..k-1.
- Caching: the instruction perplexities and embeddings are cached by the base model, the IFD passes by
  the pre-experienced model's fingerprint (the fine-tune's inputs: base model, sample, recipe), and its
  weights are saved under ``<cache>/ifd-pre/<fingerprint>/model``, so a rerun loads them and trains nothing.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import os
import shutil
from dataclasses import dataclass
from typing import Annotated

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset
from ..models.loading import cache_root, load_causal_lm
from ..models.templates import Rendered, render_conversation
from ..signals.pooled_states import PooledStates
from ..train import TrainConfig, finetune, training_fingerprint
from ._passes import resolve_template
from .base import Context, register
from .faithfulness import Divergence
from .ifd import IFD, IFDConfig
from .params import Positive, Range, TrainMethod

log = logging.getLogger("tunesift")

ALPACA_SIZE = 52002        # the pool Cherry's 100 clusters x 10 were set for


Percent = Annotated[float, Range(0, 100)]


@dataclass
class IFDPreConfig(IFDConfig):
    clusters: Positive | None = None      # None: round(100 * n / 52,002) in [1, 100]
    per_cluster: Positive = 10            # pre_experience_selection.sh --sample_num
    low_pct: Percent = 25.0            # pre_experience_selection.sh --low_th
    high_pct: Percent = 75.0           # --up_th
    train_method: TrainMethod = "full"       # full (Cherry's trainer) | lora
    epochs: Annotated[float, Range(0, lo_open=True)] = 3.0
    learning_rate: float | None = 2e-5
    batch_size: Positive = 128
    micro_batch_tokens: int | None = None   # None: 1024 on a CPU, 4096 on a GPU (as the fine-tuning engine)

    def validate(self) -> None:
        if not self.low_pct <= self.high_pct:
            raise TunesiftError("ifd-pre: need low_pct <= high_pct")


def scaled_clusters(n: int) -> int:
    return int(min(100, max(1, round(100 * n / ALPACA_SIZE))))


def middle_band_sample(labels: np.ndarray, ppl: np.ndarray, n: int, low: float, high: float) -> np.ndarray:
    """Cherry's pre-experience sample (``data_by_cluster.py:41-76``), cluster by cluster."""
    picks = []
    for j in np.unique(labels):
        idx = np.flatnonzero(labels == j)
        if len(idx) < n:
            picks.append(idx)
            continue
        v = ppl[idx]
        mid = idx[(v >= np.percentile(v, low)) & (v <= np.percentile(v, high))]
        picks.append(mid if len(mid) < n else mid[:: len(mid) // n][:n])
    return np.concatenate(picks).astype(np.int64) if picks else np.zeros(0, dtype=np.int64)


def instruction_prompts(data: Dataset, template: str, tokenizer, turns: str) -> list[Rendered]:
    """The rendered prompt up to the (last) response, with no response: Cherry's ``instruct_i``."""
    out = []
    for e in data.examples:
        r = render_conversation(e, template, tokenizer, turns)
        p = r.text[: r.spans[-1][0]]
        out.append(Rendered(p, ((0, len(p)),), r.add_special_tokens))
    return out


@register
class IFDPre(IFD):
    name = "ifd-pre"
    cost = "1 prompt pass + 1 LM embedding per example, a short fine-tune on ~1k examples, then 2 LM passes per example"
    Config = IFDPreConfig
    code = "https://github.com/MingLiiii/Cherry_LLM (V1: pre_experience_*.sh, data_by_cluster.py)"
    summary = ("Cherry V1: prompt perplexity + mean embeddings from the base model, k-means, each cluster's "
               "middle perplexity band sampled evenly, a brief fine-tune, then IFD with that model.")
    faithfulness = tuple(d for d in IFD.faithfulness if d.topic != "model and prompt") + (
        Divergence(topic="pre-experience sample size",
                   official="scripts/pre_experience_selection.sh: --kmeans_num_clusters 100 --sample_num 10 "
                            "(about 1,000 of Alpaca's 52,002)",
                   default="ours",
                   parameter="clusters=100 (default: round(100 n / 52,002) in [1, 100], 10 per cluster)"),
        Divergence(topic="perplexity band",
                   official="scripts/pre_experience_selection.sh: --low_th 25 --up_th 75 (data_by_cluster.py:20-21's "
                            "argparse defaults are 1 and 99)",
                   default="official", parameter="low_pct=1 high_pct=99 for the argparse defaults"),
        Divergence(topic="pre-experience fine-tune",
                   official="README.md '3. Train Pre-Experienced Model': no recipe given; README Hyperparameters "
                            "(Cherry V1 Alpaca): batch 128, lr 2e-5, 3 epochs, max length 512, wd 0, warm-up 0.03, "
                            "training/stanford_alpaca/train.py (full, cosine, EOS after the response)",
                   paper="a brief training of the base model on the clustered sample",
                   default="ours",
                   parameter="reconstructed from the V1 table; epochs=, learning_rate=, batch_size=, train_method=lora"),
        Divergence(topic="k-means initialisations",
                   official="cherry_seletion/data_by_cluster.py:30: KMeans(n_clusters, random_state=0), the "
                            "installed scikit-learn's default n_init (10 before 1.4)",
                   default="ours", parameter="none (one k-means++ initialisation, seed --seed)"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        c = self.config
        lm = ctx.causal_lm()
        template = resolve_template(c.template, ctx)
        max_length = ctx.max_length or c.max_length
        prompts = instruction_prompts(data, template, lm.tokenizer, ctx.turns)
        ppl = ctx.engine(c.max_length).nll(prompts, desc=f"{self.name}: instruction perplexity").ppl
        ids = [lm.tokenizer(p.text, add_special_tokens=p.add_special_tokens, truncation=True,
                            max_length=max_length)["input_ids"] or [lm.tokenizer.eos_token_id or 0] for p in prompts]
        emb = PooledStates(lm, pooling="mean", normalize=False, batch_tokens=ctx.batch_tokens,
                           cache_dir=ctx.cache_dir, use_cache=ctx.use_cache, progress=ctx.progress,
                           runner=ctx.runner()).encode_ids(ids, desc=f"{self.name}: instruction embeddings")
        k = c.clusters or scaled_clusters(len(data))
        labels, _ = ctx.kmeans(np.asarray(emb, dtype=np.float32), k)
        picks = middle_band_sample(labels, ppl, c.per_cluster, c.low_pct, c.high_pct)
        self.pre_sample_ = picks
        log.info("%s: pre-experience sample of %d examples from %d clusters", self.name, len(picks), k)

        cuda = str(next(lm.model.parameters()).device).startswith("cuda")
        cfg = TrainConfig(method=c.train_method, template=template, epochs=float(c.epochs),
                          learning_rate=c.learning_rate, batch_size=c.batch_size,
                          micro_batch_tokens=c.micro_batch_tokens or (4096 if cuda else 1024),
                          max_length=max_length, warmup_ratio=0.03, lr_schedule="cosine", weight_decay=0.0,
                          turns=ctx.turns, seed=ctx.seed)
        sample = data.subset(picks.tolist())
        pre = self._pre_experienced(lm, sample, cfg, ctx, training_fingerprint(lm, sample, cfg))

        sub = copy.copy(ctx)          # the same run settings with the pre-experienced model
        sub.lm, sub.engines, sub.embedder_obj, sub.owns_runner = pre, {}, None, False
        table = super().score(data, sub)
        table["instruction_ppl"] = ppl
        table["cluster"] = labels
        table["pre_sample"] = np.isin(np.arange(len(data)), picks)
        return table

    def _pre_experienced(self, lm, sample: Dataset, cfg, ctx: Context, fp: str):
        """The fine-tuned model: loaded from the cache when this (base, sample, recipe) was trained before."""
        where = cache_root(ctx.cache_dir) / "ifd-pre" / fp / "model"
        if ctx.use_cache and where.is_dir():
            log.info("%s: pre-experienced model from %s", self.name, where)
            got = load_causal_lm(str(where), ctx.device, "float32", ctx.trust_remote_code)
            return dataclasses.replace(got, name=f"{lm.name}+pre-experienced", fingerprint=fp)
        tr = finetune(lm, sample, cfg, progress=ctx.progress)
        self.training_ = tr.summary()
        if ctx.use_cache:
            tmp = where.parent / f"tmp-{os.getpid()}"
            tr.lm.model.save_pretrained(str(tmp))
            tr.lm.tokenizer.save_pretrained(str(tmp))
            try:
                os.replace(tmp, where)
            except OSError:          # another run saved it first
                shutil.rmtree(tmp, ignore_errors=True)
        return dataclasses.replace(tr.lm, name=f"{lm.name}+pre-experienced", fingerprint=fp)
