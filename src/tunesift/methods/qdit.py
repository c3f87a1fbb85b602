"""QDIT: quality-diversity instruction tuning.

Bukharin et al., "Data Diversity Matters for Robust Instruction Tuning", Findings of EMNLP 2024
(arXiv 2311.14736).  No official code was found; the procedure below follows the paper's
description as recorded in ``shared/methods`` (parts of it recalled, unverified).

Greedy: add argmax_a  alpha * q(a) + (1 - alpha) * [d(A + a) - d(A)], with d the facility-location
coverage of sentence embeddings normalised by the pool size, d(A) = (1/|V|) sum_v max_{a in A}
cos(v, a) (negative similarities count as 0), so d and q both lie in [0, 1] and alpha trades them
off on one scale; q is the quality in [0, 1] (any method's score, min-max scaled, or a numeric
record field).  alpha = 1 is pure quality, alpha = 0 pure coverage.  ``diversity_scale="sum"``
keeps the unnormalised sum over the pool (tunesift's earlier rule), under which any intermediate
alpha is dominated by coverage as the pool grows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.io import Dataset
from ..selectors import Budget
from ..selectors.submodular import facility_location, knn_similarity, similarity
from .base import Context, SetMethod, register
from .faithfulness import Divergence
from .params import Field, KnnIndex, Range


@dataclass
class QDITConfig:
    quality: str = "ifd"       # a method name or a numeric record field
    alpha: Annotated[float, Range(0, 1)] = 0.5
    field: Field = "instruction_input"
    dense_limit: int = 20000
    knn: int = 20
    knn_index: KnnIndex = "auto"   # the k-NN graph: exact, ivf (inverted file), or auto (exact up to 60,000)
    diversity_scale: Literal["mean", "sum"] = "mean"   # mean: coverage / pool size, on q's [0, 1] scale | sum: unnormalised


@register
class QDIT(SetMethod):
    name = "qdit"
    cost = "the quality method's cost + 1 sentence embedding per example"
    Config = QDITConfig
    paper = "Data Diversity Matters for Robust Instruction Tuning"
    venue = "Findings of EMNLP 2024"
    needs = ("embedder", "quality")
    summary = "Greedy on alpha * quality + (1 - alpha) * facility-location gain (coverage per pool example)."
    faithfulness = (
        Divergence(topic="scale of the diversity term",
                   official="no official code",
                   paper="f(A) = (1 - alpha) d(A) + alpha sum_a q(a), d = facility location with d and q on [0, 1] "
                         "(shared/methods notes, QDIT (a).3 and (a).5: d / |V|; recalled, unverified)",
                   default="paper", parameter="diversity_scale=sum (unnormalised coverage, the old rule)"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        return self.embed(data, ctx, self.config.field, self.config.quality)

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        c = self.config
        k = self.budget_count(budget, len(table))
        pool = self.pool(table)
        X = self.embeddings_[pool]
        w = (1 - c.alpha) / (len(pool) if c.diversity_scale == "mean" else 1)
        if len(pool) <= c.dense_limit:
            S = w * similarity(X, metric="cosine")
            local, gains = facility_location(S, k, modular=c.alpha * self.quality_[pool], return_gains=True)
        else:
            ip, rows, vals = knn_similarity(X, c.knn, "cosine", index=c.knn_index,
                                            graph=(ctx or Context()).knn_graph(X, c.knn, "cosine", index=c.knn_index))
            local, gains = facility_location(sparse=(ip, rows, w * vals), k=k,
                                             modular=c.alpha * self.quality_[pool], return_gains=True)
        return self.record(table, pool[local], gains)
