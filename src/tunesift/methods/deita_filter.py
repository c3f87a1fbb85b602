"""Score-first diversity filter (the rule DEITA published).

Liu et al., "What Makes Good Data for Alignment? A Comprehensive Study of Automatic Data Selection in
Instruction Tuning" (DEITA), ICLR 2024.

Walk the examples from the highest score down and keep one if its cosine similarity to the nearest
example *already kept* is below ``threshold`` (DEITA: 0.9), until the budget is reached.  Some
reimplementations compare against the whole pool instead of the kept set, which is wrong.  The
score is any registered method's score or a numeric field of the records (e.g. DEITA's own scores).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset
from ..selectors import Budget
from ..selectors.cluster import score_first_filter
from ..signals.embeddings import FIELDS
from .base import Context, SetMethod, choose, register


@dataclass
class DeitaFilterConfig:
    score: str = "ifd"          # a method name or a numeric record field
    threshold: float = 0.9
    field: str = "whole"

    def validate(self) -> None:
        choose(self.field, FIELDS, "field")
        if not -1 <= self.threshold <= 1:
            raise TunesiftError("threshold is a cosine similarity in [-1, 1]")


@register
class DeitaFilter(SetMethod):
    name = "deita-filter"
    Config = DeitaFilterConfig
    paper = "What Makes Good Data for Alignment? (DEITA) - score-first diversity filter"
    venue = "ICLR 2024"
    code = "https://github.com/hkust-nlp/deita"
    needs = ("embedder", "quality")
    summary = "Highest score first; skip an example too similar (cosine >= 0.9) to one already kept."

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        return self.embed(data, ctx, self.config.field, self.config.score)

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        pool = self.pool(table)
        k = budget.count(len(table))
        local = score_first_filter(self.embeddings_[pool], self.quality_[pool], k, self.config.threshold)
        return self.record(table, pool[local], self.quality_[pool][local])
