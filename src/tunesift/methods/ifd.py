"""IFD: Instruction-Following Difficulty (Cherry LLM).

Li et al., "From Quantity to Quality: Boosting LLM Performance with Self-Guided Data Selection for
Instruction Tuning", NAACL 2024.  Official code: github.com/MingLiiii/Cherry_LLM
(``cherry_seletion/data_analysis.py`` scores, ``cherry_seletion/data_by_IFD.py`` selects).

IFD(Q, A) = s(A | Q) / s(A), where s is the mean cross-entropy over the response tokens: how much
the instruction helps the model predict the response.  Examples with IFD > 1 (the instruction does
not help) are discarded, then the highest IFD are kept.

What the default is: IFD from the given model directly (no pre-experienced model), with the
Alpaca prompt and max_length 512 of Cherry's ``scripts/cherry_analysis.sh`` /
``cherry_selection.sh``.  This is neither Cherry's V1 (IFD from a pre-experienced model, which
needs the fine-tuning engine first) nor its README's V2 (llama2 with Vicuna's prompt:
``template="vicuna"``, whose direct pass starts after "ASSISTANT:" as ``data_analysis_vic.py``'s).

Faithfulness notes (each also a ``Divergence`` row on the class):
- ``variant="loss_ratio"`` (default) is the paper's and Cherry code's ratio of mean losses.
  ``"ppl_ratio"`` is PPL(A|Q)/PPL(A) = exp(s(A|Q) - s(A)), used by the Superfiltering and
  Reflection-Tuning code.  They agree on the threshold 1 but rank differently.
- The conditioned text is the Alpaca prompt ending in "### Response:" followed directly by the
  response; the direct pass scores the response after "### Response:", so its first token has context.
- Long examples are kept: Cherry truncates the conditioned pass at max_length and the direct pass
  at max_length - len(prompt) + len("### Response:") tokens, so both score the same response
  prefix and its "truncated" check (``data_by_IFD.py`` line 100) never fires.  ``truncation="truncate"``
  (default) does the same; ``"drop"`` makes truncated examples ineligible (tunesift's old default).
- Ties: Cherry sorts (IFD, index) ascending and keeps the tail, so among equal IFDs the later
  example wins (``ties="last"``, default); ``ties="first"`` keeps the earlier one.
- The budget: a fraction here is of the input pool; Cherry's ``sample_rate`` applies to the
  survivors of its filters.  Use a count for an exact size.
- Precision: Cherry scores in fp32; tunesift loads bf16 on CUDA.  Examples whose IFD lies within
  ``precision_band`` (relative) of ``max_ifd`` could fall either side under fp32: when the model is in
  half precision they are flagged in ``near_threshold`` and counted in a log line; rerun with
  ``--dtype float32`` to settle them.
- The response span is located by token offsets, not by ``rfind`` of the response text.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.io import Dataset
from ..selectors import Budget, top_k
from .base import Context, Method, register
from .faithfulness import Divergence
from ._passes import conditioned, direct, resolve_template
from .params import Range, Template

log = logging.getLogger("tunesift")


IFDVariant = Literal["loss_ratio", "ppl_ratio"]
Truncation = Literal["drop", "truncate"]
Ties = Literal["last", "first"]
Band = Annotated[float, Range(0)]


@dataclass
class IFDConfig:
    variant: IFDVariant = "loss_ratio"      # loss_ratio (paper, Cherry code) | ppl_ratio (Superfiltering code)
    template: Template = "alpaca"
    direct_prefix: str | None = None  # text before the response in the direct pass; None = template's tag
    max_length: int = 512
    truncation: Truncation = "truncate"     # truncate (Cherry: same response prefix in both passes) | drop
    max_ifd: float = 1.0             # examples above this are ineligible
    strict: bool = False             # also drop IFD == max_ifd (Superfiltering keeps IFD < 1)
    ties: Ties = "last"               # last (Cherry: the later of equal IFDs wins) | first
    # Relative half-width around max_ifd flagged when scored in half precision.  bf16 vs fp32 on
    # SmolLM2-135M, 120 Alpagasus examples (CPU): the loss ratio moved by 2.8e-3 (median), 2.7e-2 (p99),
    # 3.3e-2 (max); PPL ratios move more (3-4e-2 at p90), hence 0.05 for Superfiltering and rifd.
    precision_band: Band = 0.03


def ifd_from(cond_mean: np.ndarray, direct_mean: np.ndarray, variant: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if variant == "loss_ratio":
            return cond_mean / direct_mean
        return np.exp(cond_mean - direct_mean)


def same_prefix_caps(cond) -> np.ndarray:
    """Per-example cap on the direct pass's target tokens: where the conditioned pass was truncated,
    the response tokens it kept (the authors' direct max_length of max_length - len(prompt) + len(tag)
    tokens), so both passes score the same prefix; -1 = no cap."""
    return np.where(cond.truncated, cond.n_tokens, -1)


def near_threshold(values: list[np.ndarray], threshold: float, band: float, ctx: Context, name: str) -> np.ndarray:
    """Which examples lie within ``band`` (relative) of ``threshold`` in any of ``values``, when the model
    runs in half precision (all False in fp32); a log line gives their count."""
    dtype = str(getattr(ctx.causal_lm(), "dtype", "float32"))
    near = np.zeros(len(values[0]), dtype=bool)
    if "float32" in dtype or "float64" in dtype:
        return near
    for v in values:
        with np.errstate(invalid="ignore"):
            near |= np.abs(v - threshold) <= band * abs(threshold)
    if near.any():
        log.warning("%s: %d example(s) within %.3g%% of the threshold %g under %s, which fp32 (the authors' "
                    "precision) could put on the other side; column near_threshold; --dtype float32 settles them",
                    name, int(near.sum()), 100 * band, threshold, dtype)
    return near


@register
class IFD(Method):
    name = "ifd"
    cost = "2 LM passes per example (prompt + response, response alone)"
    Config = IFDConfig
    paper = "From Quantity to Quality: Boosting LLM Performance with Self-Guided Data Selection for Instruction Tuning"
    venue = "NAACL 2024"
    code = "https://github.com/MingLiiii/Cherry_LLM"
    needs = ("causal_lm",)
    summary = ("IFD = mean CE(A|Q) / mean CE(A), long responses scored on the prefix that fits; "
               "drop IFD > 1; keep the highest.")
    faithfulness = (
        Divergence(topic="long examples",
                   official="cherry_seletion/data_analysis.py:150: direct pass truncated at max_length - "
                            "len(prompt) + 4 tokens ('### Response:' with BOS), so data_by_IFD.py:100's drop "
                            "check never fires: both passes score the first max_length - len(prompt) response tokens",
                   default="official", parameter="truncation=drop (truncated examples ineligible)"),
        Divergence(topic="ties at the budget's edge",
                   official="cherry_seletion/data_by_IFD.py:117-120: sorted((IFD, index)) ascending, keep the "
                            "last sample_number: the later of equal IFDs wins",
                   default="official", parameter="ties=first"),
        Divergence(topic="budget base",
                   official="cherry_seletion/data_by_IFD.py:119: sample_rate x the examples that survived the "
                            "IFD <= 1 and length filters",
                   default="ours", parameter="a count budget (e.g. 1000) gives an exact size"),
        Divergence(topic="model and prompt",
                   official="scripts/cherry_analysis.sh: Alpaca prompt, max_length 512, on a pre-experienced "
                            "model (V1, scripts/pre_experience_*.sh); README V2: llama2 directly, Vicuna's prompt",
                   paper="IFD from a model briefly pre-experienced on a clustered sample",
                   default="ours",
                   parameter="template=vicuna for V2's prompt; V1's pre-experienced model: fine-tune first (tunesift train)"),
        Divergence(topic="numeric precision",
                   official="cherry_seletion/data_analysis.py:93: from_pretrained with no dtype (fp32)",
                   default="ours",
                   parameter="--dtype float32 (bf16 on CUDA by default; near_threshold flags the examples it could flip)"),
        Divergence(topic="response span",
                   official="cherry_seletion/data_analysis.py:63: text.rfind(response) (wrong when the response "
                            "also ends the prompt's text)",
                   default="ours", parameter="none (token offsets)"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        c = self.config
        template = resolve_template(c.template, ctx)
        cond = conditioned(data, ctx, template, c.max_length, f"{self.name}: response | prompt")
        caps = same_prefix_caps(cond) if c.truncation == "truncate" else None
        dire = direct(data, ctx, c.direct_prefix, template, c.max_length, f"{self.name}: response alone", caps)
        ifd = ifd_from(cond.mean_nll, dire.mean_nll, c.variant)
        table = pd.DataFrame({
            "score": ifd, "ifd": ifd,
            "loss_cond": cond.mean_nll, "loss_direct": dire.mean_nll,
            "ppl_cond": cond.ppl, "ppl_direct": dire.ppl,
            "n_response_tokens": cond.n_tokens, "truncated": cond.truncated | dire.truncated,
            "near_threshold": near_threshold([ifd], c.max_ifd, c.precision_band, ctx, self.name),
        })
        reason = np.full(len(data), "", dtype=object)
        over = (ifd >= c.max_ifd) if c.strict else (ifd > c.max_ifd)
        reason[over] = f"ifd {'>=' if c.strict else '>'} {c.max_ifd:g}"
        reason[~np.isfinite(ifd)] = "ifd undefined (zero direct loss)"
        if c.truncation == "drop":
            reason[table["truncated"].to_numpy()] = "response truncated at max_length"
        elif ctx.turns == "all":    # no per-turn cap: the two passes would score different spans
            reason[table["truncated"].to_numpy()] = "response truncated at max_length (turns=all: no same-prefix cap)"
        reason[dire.n_tokens == 0] = "no response token to score in the direct pass (one-token response, no BOS)"
        reason[cond.n_tokens == 0] = "no response tokens within max_length"
        table["eligible"] = reason == ""
        table["reason"] = reason
        return table

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        if self.config.ties == "first":
            return super().select(table, budget, ctx)
        # top_k breaks ties by the lower index: rank the reversed table, map back.
        n = len(table)
        picks = top_k(table["score"].to_numpy()[::-1], budget, table["eligible"].to_numpy()[::-1],
                      self.higher_is_better)
        return (n - 1 - picks).astype(picks.dtype)
