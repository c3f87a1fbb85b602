"""Superfiltering.D: Superfiltering's IFD, then facility location for diversity.

Li et al., Superfiltering (ACL 2024), README "Superfiltering with Diversity"; official code
``code_diversity_fla/do_fla.py`` (github.com/tianyi-lab/Superfiltering).

1. Keep the top ``ifd_share`` of the data by Superfiltering's IFD (among IFD < 1): 20% by default.
2. Embed "instruction\\ninput\\noutput" with all-MiniLM-L6-v2 (mean pooled, L2-normalised).
3. Facility location with submodlib's Euclidean kernel exp(-||x - y|| / dim), lazy greedy, down to
   the budget (2% of the data by default).
The official code runs submodlib's dense kernel; above ``dense_limit`` examples tunesift switches to
a sparse k-nearest-neighbour kernel (``knn``) to keep memory bounded, and says so in the manifest.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.io import Dataset
from ..selectors import Budget, top_k
from ..selectors.submodular import facility_location, knn_similarity, similarity
from .base import Context, SetMethod, register
from .superfiltering import Superfiltering


@dataclass
class SuperfilteringDConfig:
    ifd_share: float = 0.2
    metric: str = "euclidean"     # submodlib's exp(-d/dim); or cosine
    dense_limit: int = 20000
    knn: int = 20
    knn_index: str = "auto"   # the k-NN graph: exact, ivf (inverted file), or auto (exact up to 60,000)


@register
class SuperfilteringD(SetMethod):
    name = "superfiltering-d"
    Config = SuperfilteringDConfig
    paper = "Superfiltering: Weak-to-Strong Data Filtering for Fast Instruction-Tuning (diversity variant)"
    venue = "ACL 2024"
    code = "https://github.com/tianyi-lab/Superfiltering"
    needs = ("causal_lm", "embedder")
    summary = "Top 20% by Superfiltering IFD, then facility location (exp(-d/dim) kernel) down to the budget."
    default_budget = "2%"

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        t = Superfiltering().score(data, ctx)
        self.ifd_ = t["ifd"].to_numpy()
        share = Budget.parse(float(self.config.ifd_share))
        top = top_k(t["score"].to_numpy(), share, t["eligible"].to_numpy(), n_pool=len(data))
        self.top_ = np.sort(top)
        sub = data.subset(self.top_)
        self.embeddings_ = ctx.embed(sub, "whole")
        reason = t["reason"].to_numpy(dtype=object).copy()
        in_top = np.zeros(len(data), bool)
        in_top[self.top_] = True
        reason[(reason == "") & ~in_top] = f"outside the top {self.config.ifd_share:.0%} by IFD"
        return pd.DataFrame({"score": np.nan, "ifd": self.ifd_, "eligible": in_top, "reason": reason})

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        k = self.budget_count(budget, len(table))
        X = self.embeddings_
        if len(X) <= self.config.dense_limit:
            local, gains = facility_location(similarity(X, metric=self.config.metric), k, return_gains=True)
        else:
            sp = knn_similarity(X, self.config.knn, self.config.metric, index=self.config.knn_index)
            local, gains = facility_location(sparse=sp, k=k, return_gains=True)
        return self.record(table, self.top_[local], gains)
