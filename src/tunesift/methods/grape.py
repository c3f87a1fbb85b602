"""GRAPE: keep, per instruction, the response the target model already fits best.

Zhang, Dai, Peng, "The Best Instruction-Tuning Data are Those That Fit", 2025 (arXiv 2502.04194).
No official code was found.

For each instruction with several candidate responses, score each candidate by its length-normalised
log-probability under the target (base) model, (1/|y|) sum_t log p(y_t | x, y_<t) = -mean NLL, and
keep the argmax.  Candidates are grouped by identical prompt messages (everything before the scored
assistant turn).  The default budget keeps one response per instruction; a count or fraction then
keeps the best-fitting instructions.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.io import Dataset
from .base import Context, Method, register
from .params import Template
from ._passes import conditioned, resolve_template


@dataclass
class GrapeConfig:
    template: Template = "auto"   # the template SFT will use: auto = the model's chat template, else alpaca
    max_length: int = 2048


def prompt_groups(data: Dataset) -> np.ndarray:
    keys: dict[str, int] = {}
    out = np.empty(len(data), dtype=np.int64)
    for i, e in enumerate(data.examples):
        last = max(j for j, m in enumerate(e.messages) if m["role"] == "assistant")
        k = json.dumps(e.messages[:last], sort_keys=True, ensure_ascii=False)
        out[i] = keys.setdefault(k, len(keys))
    return out


@register
class Grape(Method):
    name = "grape"
    cost = "1 LM pass per candidate response"
    Config = GrapeConfig
    paper = "The Best Instruction-Tuning Data are Those That Fit"
    venue = "arXiv 2025"
    needs = ("causal_lm",)
    summary = "Per instruction, keep the candidate response with the highest length-normalised log-prob."
    default_budget = "all"

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        c = self.config
        res = conditioned(data, ctx, resolve_template(c.template, ctx), c.max_length, "grape")
        fit = -res.mean_nll
        groups = prompt_groups(data)
        best = np.zeros(len(data), dtype=bool)
        order = np.lexsort((np.arange(len(data)), np.where(np.isnan(fit), np.inf, -fit), groups))
        first = np.ones(len(order), dtype=bool)
        first[1:] = groups[order][1:] != groups[order][:-1]
        best[order[first]] = True
        reason = np.full(len(data), "", dtype=object)
        reason[~best] = "another response to this instruction fits better"
        reason[np.isnan(fit)] = "no response tokens within max_length"
        table = pd.DataFrame({"score": fit, "logprob_per_token": fit, "group": groups,
                              "group_size": np.bincount(groups)[groups], "truncated": res.truncated,
                              "eligible": reason == "", "reason": reason})
        return table
