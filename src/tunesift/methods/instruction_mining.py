"""Instruction Mining: a linear rule over quality indicators predicts the fine-tuned model's loss.

Cao, Kang, Wang, Sun, "Instruction Mining: Instruction Data Selection for Tuning Large Language
Models", arXiv 2307.06290 (COLM 2024).  No official code is public.

Indicators per example (tunesift computes those it has models for):
``input_len`` and ``output_len`` (tokens), ``reward`` (a reward model's score of the pair; without
``reward_model``, the run's LM reading a rating prompt gives the expected rating 1-5), ``ppl``
(response perplexity given the prompt, through the likelihood engine), ``mtld`` (lexical
diversity of the response, McCarthy & Jarvis 2010), ``knn6`` (mean Euclidean distance to the 6
nearest neighbours among the pool's sentence embeddings).  The paper's UniEval indicators
(naturalness, coherence, understandability: ``nat``, ``coh``, ``und``) need UniEval, which no
offline package carries: supply them as fields of the records (``indicator_fields``) to use them.

The rule: log L_eval = b0 + sum_k b_k I_k; lower predicted loss = better example; top-k.
- ``rule="paper"``: the published rule over reward, understandability, naturalness and coherence.
  Its coefficients here are as the method notes recall them (log L ~ 0.0274 - 0.0078 rew + 0.4421 und
  - 0.3212 nat - 0.1520 coh) and are marked there "verify against the paper's Eq. 4": treat them as
  provisional.  It needs und/nat/coh from ``indicator_fields``.
- ``rule_file``: a JSON rule ``{"intercept": b0, "coef": {"reward": b, ...}}``, e.g. one fitted by
  ``fit_rule`` from (subset, evaluation loss) pairs -- such as the cells of ``tunesift bench``:
  each subset's mean indicators and its fine-tuned model's held-out NLL, fitted by least squares.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset
from ..selectors.neighbors import knn_graph
from ._judging import PairJudge, question_text
from ._passes import conditioned
from .base import Context, Method, register
from .params import Fixture

PAPER_RULE = {"intercept": 0.0274, "coef": {"reward": -0.0078, "und": 0.4421, "nat": -0.3212, "coh": -0.1520}}


@dataclass
class InstructionMiningConfig:
    rule: Literal["paper", "file"] = "paper"   # file: then rule_file
    rule_file: str | None = None
    reward_model: str | None = None
    indicator_fields: str = ""        # record fields to read as indicators, e.g. "und,nat,coh"
    template: str = "alpaca"
    max_length: int = 1024
    k_neighbours: int = 6

    def validate(self) -> None:
        if self.rule == "file" and not self.rule_file:
            raise TunesiftError("rule=file needs rule_file (a JSON rule, e.g. from fit_rule)")


def mtld(text: str, threshold: float = 0.72) -> float:
    """Measure of Textual Lexical Diversity: mean of the forward and backward factor counts."""
    words = re.findall(r"[a-z0-9']+", text.lower())
    if not words:
        return 0.0

    def one_way(ws: list[str]) -> float:
        factors, types, count = 0.0, set(), 0
        for w in ws:
            count += 1
            types.add(w)
            if len(types) / count <= threshold:
                factors += 1
                types, count = set(), 0
        if count:
            ttr = len(types) / count
            factors += (1 - ttr) / (1 - threshold) if ttr < 1 else 0.0
        return len(ws) / factors if factors else float(len(ws))

    return (one_way(words) + one_way(words[::-1])) / 2


def knn_distance(X: np.ndarray, k: int = 6, chunk: int = 2048, index: str = "auto", graph=None) -> np.ndarray:
    """Mean Euclidean distance of each row to its k nearest other rows: exact up to 60,000 rows, an
    inverted-file index above (``knn_graph``), so the indicator stays usable on a large pool.
    ``graph``: what builds the graph (a run's ``Context.knn_graph``, shared); default ``knn_graph``."""
    X = np.asarray(X, dtype=np.float32)
    k = min(k, len(X) - 1)
    if k <= 0:
        return np.zeros(len(X))
    nbr, dist = (graph or knn_graph)(X, k + 1, metric="euclidean", index=index, chunk=chunk, distances=True)
    # drop each row itself (usually first; with exact duplicates it may sit anywhere, or be absent)
    own = nbr == np.arange(len(X))[:, None]
    drop = np.where(own.any(1), own.argmax(1), k)
    keep = np.ones_like(own)
    keep[np.arange(len(X)), drop] = False
    return dist[keep].reshape(len(X), k).astype(np.float64).mean(1)


def fit_rule(indicators: pd.DataFrame, losses: np.ndarray, columns: list[str] | None = None) -> dict:
    """Least squares of log(loss) on the (mean) indicators of each subset: the paper's fitting step.
    ``indicators``: one row per subset (mean indicator values); ``losses``: its evaluation loss."""
    cols = columns or list(indicators.columns)
    A = np.column_stack([np.ones(len(indicators))] + [indicators[c].to_numpy(float) for c in cols])
    y = np.log(np.asarray(losses, dtype=float))
    if len(y) <= len(cols):
        raise TunesiftError(f"fitting {len(cols)} coefficients needs more than {len(cols)} subsets, got {len(y)}")
    beta, *_ = np.linalg.lstsq(A, y, rcond=None)
    resid = y - A @ beta
    r2 = 1 - (resid ** 2).sum() / max(((y - y.mean()) ** 2).sum(), 1e-300)
    return {"intercept": float(beta[0]), "coef": {c: float(b) for c, b in zip(cols, beta[1:])}, "r2": float(r2),
            "n_subsets": int(len(y))}


@register
class InstructionMining(Method):
    name = "instruction-mining"
    cost = "1 rating or reward pass + 1 LM pass + 1 sentence embedding per example"
    Config = InstructionMiningConfig
    paper = "Instruction Mining: Instruction Data Selection for Tuning Large Language Models"
    venue = "COLM 2024"
    code = ""
    needs = ("causal_lm", "embedder")
    test_params = dict(rule="file", rule_file=Fixture("rule"))
    summary = "Linear rule over indicators (reward, lengths, perplexity, MTLD, kNN distance) predicting eval loss."
    higher_is_better = False

    def rule(self) -> dict:
        if self.config.rule == "paper":
            return PAPER_RULE
        r = json.loads(Path(self.config.rule_file).read_text())
        if "coef" not in r:
            raise TunesiftError(f"{self.config.rule_file}: a rule needs 'intercept' and 'coef'")
        return r

    def indicators(self, data: Dataset, ctx: Context, needed: set[str]) -> pd.DataFrame:
        cfg = self.config
        tok = ctx.causal_lm().tokenizer
        ind = pd.DataFrame(index=range(len(data)))
        fields = [f.strip() for f in cfg.indicator_fields.split(",") if f.strip()]
        for f in fields:
            vals = []
            for e in data.examples:
                v = e.raw.get(f) if isinstance(e.raw, dict) else None
                if not isinstance(v, (int, float)):
                    raise TunesiftError(f"{data.path}, line {e.line}, field '{f}': indicator must be a number, got {v!r}")
                vals.append(float(v))
            ind[f] = vals
        ind["input_len"] = [len(tok(e.prompt, add_special_tokens=False).input_ids) for e in data.examples]
        ind["output_len"] = [len(tok(e.response, add_special_tokens=False).input_ids) for e in data.examples]
        ind["mtld"] = [mtld(e.response) for e in data.examples]
        if "ppl" in needed:
            ind["ppl"] = conditioned(data, ctx, cfg.template, cfg.max_length, "instruction-mining ppl").ppl
        if "reward" in needed:
            ind["reward"] = self._reward(data, ctx)
        if "knn6" in needed:
            ind["knn6"] = knn_distance(ctx.embed(data, "instruction_input"), cfg.k_neighbours, graph=ctx.knn_graph)
        return ind

    def _reward(self, data: Dataset, ctx: Context) -> np.ndarray:
        return PairJudge(self.config.reward_model, self.config.max_length)(
            ctx, [question_text(e) for e in data.examples], [e.response for e in data.examples])

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        rule = self.rule()
        needed = set(rule["coef"])
        ind = self.indicators(data, ctx, needed)
        missing = needed - set(ind.columns)
        if missing:
            raise TunesiftError(f"instruction-mining: the rule uses {sorted(missing)}, which tunesift cannot compute "
                                "offline (UniEval); give them as record fields with -p indicator_fields=und,nat,coh, "
                                "or use a fitted rule (rule=file)")
        pred = rule["intercept"] + sum(b * ind[c].to_numpy(float) for c, b in rule["coef"].items())
        ok = np.isfinite(pred)
        table = pd.DataFrame({"score": pred, "eligible": ok, "reason": np.where(ok, "", "indicator undefined")})
        for c in ind.columns:
            table[c] = ind[c].to_numpy()
        return table
