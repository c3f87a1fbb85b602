"""IFD: Instruction-Following Difficulty (Cherry LLM).

Li et al., "From Quantity to Quality: Boosting LLM Performance with Self-Guided Data Selection for
Instruction Tuning", NAACL 2024.  Official code: github.com/MingLiiii/Cherry_LLM.

IFD(Q, A) = s(A | Q) / s(A), where s is the mean cross-entropy over the response tokens: how much
the instruction helps the model predict the response.  Examples with IFD > 1 (the instruction does
not help) are discarded, then the highest IFD are kept.

Faithfulness notes:
- ``variant="loss_ratio"`` (default) is the paper's and Cherry code's ratio of mean losses.
  ``"ppl_ratio"`` is PPL(A|Q)/PPL(A) = exp(s(A|Q) - s(A)), used by the Superfiltering and
  Reflection-Tuning code.  They agree on the threshold 1 but rank differently.
- Cherry's Alpaca mode (the default here): conditioned text = the Alpaca prompt ending in
  "### Response:" followed directly by the response; the direct pass scores the response after
  "### Response:", so its first token has context.  (Cherry's own script defaults to its 'wiz' prompt.)
- Cherry drops examples whose response would be truncated at max_length (512) and IFD > 1:
  ``truncation="drop"`` reproduces this; ``"truncate"`` scores the kept prefix in both passes.
- The budget: a fraction here is of the input pool; Cherry's ``sample_rate`` applies to the
  survivors of its filters.  Use a count for an exact size.
- The pre-experienced model phase (V1) needs the fine-tuning engine; this is the V2 setting
  (IFD from the given model directly), which the authors' README describes as their V2.
- The response span is located by token offsets, not by ``rfind`` of the response text.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.io import Dataset
from ..models.templates import TEMPLATES
from .base import Context, Method, choose, register
from ._passes import conditioned, direct, resolve_template


@dataclass
class IFDConfig:
    variant: str = "loss_ratio"      # loss_ratio (paper, Cherry code) | ppl_ratio (Superfiltering code)
    template: str = "alpaca"         # alpaca | vicuna | plain | chat | auto
    direct_prefix: str | None = None  # text before the response in the direct pass; None = template's tag
    max_length: int = 512
    truncation: str = "drop"         # drop (Cherry) | truncate
    max_ifd: float = 1.0             # examples above this are ineligible
    strict: bool = False             # also drop IFD == max_ifd (Superfiltering keeps IFD < 1)

    def validate(self) -> None:
        choose(self.variant, ("loss_ratio", "ppl_ratio"), "variant")
        choose(self.template, TEMPLATES + ("auto",), "template")
        choose(self.truncation, ("drop", "truncate"), "truncation")


def ifd_from(cond_mean: np.ndarray, direct_mean: np.ndarray, variant: str) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        if variant == "loss_ratio":
            return cond_mean / direct_mean
        return np.exp(cond_mean - direct_mean)


@register
class IFD(Method):
    name = "ifd"
    Config = IFDConfig
    paper = "From Quantity to Quality: Boosting LLM Performance with Self-Guided Data Selection for Instruction Tuning"
    venue = "NAACL 2024"
    code = "https://github.com/MingLiiii/Cherry_LLM"
    needs = ("causal_lm",)
    summary = "IFD = mean CE(A|Q) / mean CE(A); drop IFD > 1 and truncated responses; keep the highest."

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        c = self.config
        template = resolve_template(c.template, ctx)
        cond = conditioned(data, ctx, template, c.max_length, f"{self.name}: response | prompt")
        caps = None
        if c.truncation == "truncate":
            caps = np.where(cond.truncated, cond.n_tokens, -1)
        dire = direct(data, ctx, c.direct_prefix, template, c.max_length, f"{self.name}: response alone", caps)
        ifd = ifd_from(cond.mean_nll, dire.mean_nll, c.variant)
        table = pd.DataFrame({
            "score": ifd, "ifd": ifd,
            "loss_cond": cond.mean_nll, "loss_direct": dire.mean_nll,
            "ppl_cond": cond.ppl, "ppl_direct": dire.ppl,
            "n_response_tokens": cond.n_tokens, "truncated": cond.truncated | dire.truncated,
        })
        reason = np.full(len(data), "", dtype=object)
        over = (ifd >= c.max_ifd) if c.strict else (ifd > c.max_ifd)
        reason[over] = f"ifd {'>=' if c.strict else '>'} {c.max_ifd:g}"
        reason[~np.isfinite(ifd)] = "ifd undefined (zero direct loss)"
        if c.truncation == "drop":
            reason[table["truncated"].to_numpy()] = "response truncated at max_length"
        reason[dire.n_tokens == 0] = "no response token to score in the direct pass (one-token response, no BOS)"
        reason[cond.n_tokens == 0] = "no response tokens within max_length"
        table["eligible"] = reason == ""
        table["reason"] = reason
        return table
