"""Random selection: the seeded baseline every comparison needs (and that is hard to beat)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.io import Dataset
from .base import Context, Method, register


@dataclass
class RandomConfig:
    seed: int | None = None   # None = the run's seed


@register
class Random(Method):
    name = "random"
    cost = "nothing"
    Config = RandomConfig
    paper = "Uniform random sample (baseline)"
    venue = "baseline"
    summary = "A seeded uniform random subset; same seed and data, same selection."

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        seed = ctx.seed if self.config.seed is None else self.config.seed
        # A seeded permutation turned into scores; keyed on ids so row order does not matter.
        rng = np.random.default_rng(seed)
        draws = rng.random(len(data))
        order = np.argsort([e.id for e in data.examples], kind="stable")
        score = np.empty(len(data))
        score[order] = draws
        return pd.DataFrame({"score": score, "eligible": True, "reason": ""})
