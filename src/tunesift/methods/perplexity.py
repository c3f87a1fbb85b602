"""Response perplexity: the common baseline of the data-selection literature.

PPL(A | Q) = exp(mean CE over response tokens given the prompt).  ``band`` picks which end is kept:
``low`` (most fluent under the model), ``high`` (hardest) or ``middle`` (closest to the median, the
band that Marion et al. 2023 found best for pre-training data pruning).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..data.io import Dataset
from ..selectors import band
from .base import Context, Method, register
from ._passes import conditioned, resolve_template
from .params import Template


@dataclass
class PerplexityConfig:
    band: Literal["low", "high", "middle"] = "low"
    template: Template = "auto"       # auto = the model's chat template if it has one, else alpaca
    max_length: int = 1024


@register
class Perplexity(Method):
    name = "perplexity"
    cost = "1 LM pass per example"
    Config = PerplexityConfig
    paper = "Response perplexity baseline (e.g. Marion et al. 2023, 'When Less is More')"
    venue = "baseline"
    needs = ("causal_lm",)
    summary = "Response perplexity given the prompt; keep the low, high or middle band."

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        c = self.config
        res = conditioned(data, ctx, resolve_template(c.template, ctx), c.max_length, "perplexity")
        ppl = res.ppl
        # Rank in log space so 'middle' is symmetric in loss, the quantity the model optimises.
        table = pd.DataFrame({"score": band(np.log(ppl), c.band), "ppl": ppl, "loss": res.mean_nll,
                              "n_response_tokens": res.n_tokens, "truncated": res.truncated})
        reason = np.where(res.n_tokens == 0, "no response tokens within max_length", "")
        table["eligible"] = reason == ""
        table["reason"] = reason
        return table
