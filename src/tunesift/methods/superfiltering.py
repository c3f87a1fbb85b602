"""Superfiltering: weak-to-strong data filtering.

Li et al., "Superfiltering: Weak-to-Strong Data Filtering for Fast Instruction-Tuning", ACL 2024.
Official code: github.com/tianyi-lab/Superfiltering.

IFD computed by a small filter model as a perplexity ratio PPL(A|Q) / PPL(A), prompt
"{instruction}\\n{input}\\n" with no system text, the bare response in the direct pass,
max_length 1024, keep IFD < 1, top-k by IFD.

Faithfulness notes:
- The paper's filter model is GPT-2 (124M); offline, tunesift's default is SmolLM2-135M-Instruct
  (pass ``--model gpt2`` or a local GPT-2 path for the paper's setting).
- The official ``select_data.py`` sizes the budget as int(52002 * rate), Alpaca's size hard-coded;
  here a fraction applies to the given data.
- The official scorer maps any exception to IFD 0 (silently excluded); here such examples are
  ineligible with a stated reason.
- Long examples: the official code truncates (it does not drop); so does this default, scoring the
  same response prefix in both passes (``data_analysis.py`` line 132 caps the bare response at
  max_length - len(prompt) + 1 tokens, GPT-2 having no BOS).
- Ties: ``select_data.py`` sorts with ``reverse=True``, which Python keeps stable, so the earlier of
  equal IFDs wins (``ties="first"``, unlike Cherry's).
"""
from __future__ import annotations

from dataclasses import dataclass

from .base import register
from .faithfulness import Divergence
from .ifd import IFD, Band, IFDConfig, IFDVariant, Ties, Truncation
from .params import Template


@dataclass
class SuperfilteringConfig(IFDConfig):
    variant: IFDVariant = "ppl_ratio"
    template: Template = "plain"
    direct_prefix: str | None = ""
    max_length: int = 1024
    truncation: Truncation = "truncate"
    max_ifd: float = 1.0
    strict: bool = True
    ties: Ties = "first"
    precision_band: Band = 0.05     # PPL ratios move more under bf16 than loss ratios (see ifd)


@register
class Superfiltering(IFD):
    name = "superfiltering"
    cost = "2 passes of a small LM per example"
    Config = SuperfilteringConfig
    paper = "Superfiltering: Weak-to-Strong Data Filtering for Fast Instruction-Tuning"
    venue = "ACL 2024"
    code = "https://github.com/tianyi-lab/Superfiltering"
    summary = "IFD as PPL(A|Q)/PPL(A) from a small filter model, plain prompt, keep IFD < 1, top-k."
    faithfulness = (
        Divergence(topic="filter model", official="scripts/step1_select_data_analysis_gpt2.sh: gpt2",
                   default="ours", parameter="--model gpt2 (or a local GPT-2 path)"),
        Divergence(topic="budget base", official="code_ifd/select_data.py:24: int(52002 * sample_rate)",
                   default="ours", parameter="a count budget"),
        Divergence(topic="scoring errors", official="code_ifd/data_analysis.py:48,72: any exception scores 0",
                   default="ours", parameter="none (ineligible with a reason)"),
    )
