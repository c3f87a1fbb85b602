"""Superfiltering.D: Superfiltering's IFD, then facility location for diversity.

Li et al., Superfiltering (ACL 2024), README "Superfiltering with Diversity"; official code
``code_diversity_fla/do_fla.py`` (github.com/tianyi-lab/Superfiltering).

1. Keep the top ``ifd_share`` of the data by Superfiltering's IFD (among IFD < 1): 20% by default.
2. Embed the code's text (``combine_sentences``): "instruction\\ninput\\noutput" when the record has an
   ``input`` field (empty or not), "instruction\\noutput" when it has none; with all-MiniLM-L6-v2, mean
   pooled, L2-normalised, truncated where the tokenizer's own limit is (``truncation=True`` with no
   ``max_length``: 512 tokens for all-MiniLM-L6-v2, not the 256 of sentence-transformers' config,
   which the run's embedder uses).  Records without an instruction field use the last user turn.
3. Facility location with submodlib's Euclidean kernel exp(-||x - y|| / dim), lazy greedy, down to
   the budget (2% of the data by default).
The official code runs submodlib's dense kernel; above ``dense_limit`` examples tunesift switches to
a sparse k-nearest-neighbour kernel (``knn``) to keep memory bounded, and says so in the manifest.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..data.io import Dataset, Example
from ..selectors import Budget, top_k
from ..selectors.submodular import facility_location, knn_similarity, similarity
from ..signals.embeddings import Embedder
from .base import Context, SetMethod, register
from .faithfulness import Divergence
from .params import KnnIndex
from .superfiltering import Superfiltering


@dataclass
class SuperfilteringDConfig:
    ifd_share: float = 0.2
    metric: Literal["euclidean", "cosine"] = "euclidean"   # submodlib's exp(-d/dim); or cosine
    dense_limit: int = 20000
    knn: int = 20
    knn_index: KnnIndex = "auto"   # the k-NN graph: exact, ivf (inverted file), or auto (exact up to 60,000)
    embed_length: Literal["tokenizer", "run"] = "tokenizer"   # tokenizer: the encoder tokenizer's limit (official) | run: the run's embedder's
    text: Literal["code", "whole"] = "code"   # code: do_fla.py's text | whole: "instruction\ninput\noutput" always


def fla_text(e: Example, text: str = "code") -> str:
    """The text do_fla.py embeds: the input line only when the record has an input field."""
    ins = e.instruction if e.instruction is not None else e.prompt
    has_input = isinstance(e.raw, dict) and "input" in e.raw
    if text == "whole" or has_input:
        return ins + "\n" + (e.input or "") + "\n" + e.response
    return ins + "\n" + e.response


def tokenizer_limit(emb: Embedder) -> int:
    """What ``truncation=True`` without ``max_length`` cuts at, bounded by the encoder's positions
    (a tokenizer without a limit reports a huge sentinel)."""
    n = int(min(emb.tokenizer.model_max_length, 1 << 30))
    pos = getattr(emb.model.config, "max_position_embeddings", None)
    return min(n, pos) if pos else n


@register
class SuperfilteringD(SetMethod):
    name = "superfiltering-d"
    cost = "2 small-LM passes + 1 sentence embedding per example"
    Config = SuperfilteringDConfig
    paper = "Superfiltering: Weak-to-Strong Data Filtering for Fast Instruction-Tuning (diversity variant)"
    venue = "ACL 2024"
    code = "https://github.com/tianyi-lab/Superfiltering"
    needs = ("causal_lm", "embedder")
    summary = "Top 20% by Superfiltering IFD, then facility location (exp(-d/dim) kernel) down to the budget."
    default_budget = "2%"
    faithfulness = (
        Divergence(topic="embedding length",
                   official="code_diversity_fla/do_fla.py:94: truncation=True with no max_length: the tokenizer's "
                            "model_max_length, 512 for all-MiniLM-L6-v2",
                   default="official", parameter="embed_length=run (the run's embedder: 256 tokens, the old default)"),
        Divergence(topic="embedded text",
                   official="code_diversity_fla/do_fla.py:61-67: instruction\\ninput\\noutput if the record has "
                            "an input field, else instruction\\noutput",
                   default="official", parameter="text=whole (always instruction\\ninput\\noutput, the old text)"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        t, _ = Superfiltering().run(data, ctx)
        self.ifd_ = t["ifd"].to_numpy()
        share = Budget.parse(float(self.config.ifd_share))
        top = top_k(t["score"].to_numpy(), share, t["eligible"].to_numpy(), n_pool=len(data))
        self.top_ = np.sort(top)
        sub = data.subset(self.top_)
        self.embeddings_ = self._embedder(ctx).encode([fla_text(e, self.config.text) for e in sub.examples],
                                                      desc="embedding the top by IFD")
        reason = t["reason"].to_numpy(dtype=object).copy()
        in_top = np.zeros(len(data), bool)
        in_top[self.top_] = True
        reason[(reason == "") & ~in_top] = f"outside the top {self.config.ifd_share:.0%} by IFD"
        return pd.DataFrame({"score": np.nan, "ifd": self.ifd_, "eligible": in_top, "reason": reason})

    def _embedder(self, ctx: Context):
        emb = ctx.embedder()
        if self.config.embed_length == "run" or not isinstance(emb, Embedder):
            return emb   # LM embedders keep their own length
        n = tokenizer_limit(emb)
        if n == emb.max_length:
            return emb
        # the same encoder at the official length; its cache namespace carries the length
        return Embedder(encoder=emb.model, tokenizer=emb.tokenizer, device=str(emb.device), max_length=n,
                        normalize=emb.normalize, cache_dir=ctx.cache_dir, use_cache=ctx.use_cache,
                        progress=ctx.progress)

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        k = self.budget_count(budget, len(table))
        X = self.embeddings_
        if len(X) <= self.config.dense_limit:
            local, gains = facility_location(similarity(X, metric=self.config.metric), k, return_gains=True)
        else:
            c = self.config
            sp = knn_similarity(X, c.knn, c.metric, index=c.knn_index,
                                graph=(ctx or Context()).knn_graph(X, c.knn, c.metric, index=c.knn_index))
            local, gains = facility_location(sparse=sp, k=k, return_gains=True)
        return self.record(table, self.top_[local], gains)
