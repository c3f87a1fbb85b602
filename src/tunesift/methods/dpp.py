"""DPP selection and the log-determinant diversity measure.

Wang et al., "Diversity Measurement and Subset Selection for Instruction Tuning Datasets", 2024
(arXiv 2402.02318).  No official code was found.

Greedy MAP of a DPP with kernel L = diag(q) S diag(q), S the cosine similarity of sentence
embeddings and q an optional quality score (any method's score or a column, min-max scaled to
[eps, 1]); fast greedy (Chen, Zhang, Zhou, NeurIPS 2018).  The paper also uses gradient features;
tunesift has a gradient signal now (``signals.gradients``, LESS's projected per-example gradients)
but ``dpp`` does not read it yet: it embeds text only (``--embedder`` picks the encoder, ``lm`` the
run's causal LM).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.io import Dataset
from ..selectors import Budget
from ..selectors.submodular import dpp_greedy
from .base import Context, SetMethod, register
from .params import Field


@dataclass
class DPPConfig:
    field: Field = "whole"
    quality: str | None = None   # a method name (e.g. "ifd") or a numeric field of the records


@register
class DPP(SetMethod):
    name = "dpp"
    cost = "1 sentence embedding per example (+ the quality method's cost)"
    Config = DPPConfig
    paper = "Diversity Measurement and Subset Selection for Instruction Tuning Datasets"
    venue = "arXiv 2024"
    needs = ("embedder",)
    summary = "Greedy MAP of a (quality-weighted) DPP over sentence embeddings."

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        return self.embed(data, ctx, self.config.field, self.config.quality)

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        k = self.budget_count(budget, len(table))
        pool = self.pool(table)
        q = None if self.config.quality is None else self.quality_[pool]
        local = dpp_greedy(self.embeddings_[pool], k, quality=q)
        return self.record(table, pool[local], np.arange(len(local), 0, -1, dtype=float))
