"""Cluster sampling: "Maybe Only 0.5% Data is Needed" (low training data instruction tuning).

Chen et al., arXiv 2305.09246, 2023.  No official code was found.

Embed every example, run k-means, split the budget across clusters in proportion to their size, and
keep the examples nearest each centroid.  The paper embeds with the LLM's mean-pooled last hidden
state: ``--embedder lm`` does that with the run's causal LM (``signals.embeddings.LMEmbedder``);
tunesift's default is the packaged sentence encoder, shared by every diversity method.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.io import Dataset
from ..selectors import Budget
from ..selectors.cluster import cluster_representatives
from .base import Context, SetMethod, register
from .params import Field


@dataclass
class ClusterConfig:
    n_clusters: int = 100
    field: Field = "instruction_input"


@register
class Cluster(SetMethod):
    name = "cluster"
    cost = "1 sentence embedding per example; k-means"
    Config = ClusterConfig
    paper = "Maybe Only 0.5% Data is Needed: A Preliminary Exploration of Low Training Data Instruction Tuning"
    venue = "arXiv 2023"
    needs = ("embedder",)
    summary = "k-means on embeddings; per-cluster quotas by size; examples nearest each centroid."

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        return self.embed(data, ctx, self.config.field)

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        k = self.budget_count(budget, len(table))
        picks, labels = cluster_representatives(self.embeddings_, k, self.config.n_clusters, seed=ctx.seed)
        table["cluster"] = labels
        d = np.linalg.norm(self.embeddings_[picks] - self.embeddings_[picks].mean(0), axis=1) if len(picks) else []
        return self.record(table, picks, -np.asarray(d, dtype=float))
