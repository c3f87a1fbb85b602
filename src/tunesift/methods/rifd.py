"""r-IFD: the scoring half of Selective Reflection-Tuning.

Li et al., "Selective Reflection-Tuning: Student-Selected Data Recycling for LLM Instruction-Tuning",
Findings of ACL 2024.  Official code: github.com/tianyi-lab/Reflection_Tuning (``selection_code/``).

Per (x, y), with the student model:
  IFD(x, y)   = PPL(y | x) / PPL(y)
  r-IFD(x, y) = PPL(x | reverse(y)) / PPL(x)
where reverse(y) asks the model to guess the instruction of response y (the paper's prompt, inside
the no-input template).  Low r-IFD: the response makes its instruction easy to guess (feasible).
The code's selection rule keeps a pair when IFD < 1 and r-IFD < 1 (the default budget, "all").

Faithfulness notes:
- Defaults follow ``selection_code/data_analysis.py``: Vicuna template, max_length 2048, PPL ratios
  (``variant="loss_ratio"`` gives the loss-ratio versions the code also stores).
- The code places the instruction and input directly after the reverse prompt and scores both;
  x alone is instruction + input with no template.  Same here.
- Long examples: each direct pass is capped at max_length - len(its conditioned prompt) + 1 tokens
  (``data_analysis.py`` lines 173-174, BOS included), so y alone and x alone score the same prefix
  their conditioned passes kept; here the direct passes take the conditioned passes' token counts
  as caps where those were truncated.
- The released code ranks nothing further; the paper's top-k for its ~1k-sample models is not in the
  repository [recalled, unverified].  With a count or fraction budget, tunesift ranks the rule's
  survivors by ``rank_by`` (lowest r-IFD by default).
- Precision: the code runs in fp32; on CUDA tunesift loads bf16.  Pairs whose IFD or r-IFD lies
  within ``precision_band`` of 1 are flagged in ``near_threshold`` (and counted in a log line).
- The rewriting half (the oracle's reflections and the selective choice among versions) is ``tunesift.recycle``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from ..data.io import Dataset
from ..models.templates import Rendered, _single, render_direct
from .base import Context, Method, register
from ._passes import conditioned, direct
from .faithfulness import Divergence
from .ifd import Band, IFDVariant, ifd_from, near_threshold, same_prefix_caps

REVERSE = ("Below is the response to an instruction, please guess the corresponding instruction for the given "
           "response.\n{response}\nGenerate the instruction for the above response.")


@dataclass
class RIFDConfig:
    template: Literal["vicuna", "alpaca", "plain"] = "vicuna"
    variant: IFDVariant = "ppl_ratio"
    max_length: int = 2048
    rank_by: Literal["rifd", "ifd"] = "rifd"   # rifd (lowest first) | ifd (highest first)
    precision_band: Band = 0.05  # band around 1 flagged in half precision (PPL ratios; see ifd)


def reverse_rendering(instruction: str, inp: str, response: str, template: str) -> Rendered:
    prompt = _single(template, REVERSE.format(response=response), "", None)
    target = instruction + inp
    return Rendered(prompt + target, ((len(prompt), len(prompt) + len(target)),))


@register
class RIFD(Method):
    name = "rifd"
    cost = "4 LM passes per example"
    Config = RIFDConfig
    paper = "Selective Reflection-Tuning: Student-Selected Data Recycling for LLM Instruction-Tuning"
    venue = "Findings of ACL 2024"
    code = "https://github.com/tianyi-lab/Reflection_Tuning"
    needs = ("causal_lm",)
    summary = "IFD and reversed IFD from the student model; keep pairs with IFD < 1 and r-IFD < 1."
    default_budget = "all"
    faithfulness = (
        Divergence(topic="long examples",
                   official="selection_code/data_analysis.py:173-174: x alone and y alone truncated at max_length - "
                            "len(reverse prompt) + 1 and max_length - len(prompt) + 1 tokens: the prefixes the "
                            "conditioned passes keep",
                   default="official", parameter="none"),
        Divergence(topic="ranking within the rule's survivors",
                   official="selection_code/get_select_data.py: keeps every pair that passes; no top-k in the code",
                   paper="top-k for the ~1k-sample models [recalled, unverified]",
                   default="official", parameter="a count or fraction budget ranks by rank_by"),
        Divergence(topic="numeric precision",
                   official="selection_code/data_analysis.py:105: from_pretrained with no dtype (fp32)",
                   default="ours",
                   parameter="--dtype float32 (bf16 on CUDA by default; near_threshold flags pairs within "
                             "precision_band of IFD = 1 or r-IFD = 1)"),
        Divergence(topic="response span",
                   official="selection_code/data_analysis.py:79: text.rfind(target)",
                   default="ours", parameter="none (token offsets)"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        c = self.config
        eng = ctx.engine(c.max_length)
        cond = conditioned(data, ctx, c.template, c.max_length, "rifd: response | instruction")
        dire = direct(data, ctx, "", c.template, c.max_length, "rifd: response alone", same_prefix_caps(cond))
        parts = [(e.instruction if e.instruction is not None else e.prompt, e.input or "", e.response)
                 for e in data.examples]
        rev = eng.nll([reverse_rendering(i, x, r, c.template) for i, x, r in parts], desc="rifd: instruction | reversed")
        ins_caps = [int(n) if n >= 0 else None for n in same_prefix_caps(rev)]
        ins = eng.nll([render_direct(i + x) for i, x, _ in parts], max_target_tokens=ins_caps,
                      desc="rifd: instruction alone")
        ifd = ifd_from(cond.mean_nll, dire.mean_nll, c.variant)
        rifd = ifd_from(rev.mean_nll, ins.mean_nll, c.variant)
        table = pd.DataFrame({"score": -rifd if c.rank_by == "rifd" else ifd, "ifd": ifd, "rifd": rifd,
                              "ppl_response_cond": cond.ppl, "ppl_response": dire.ppl,
                              "ppl_instruction_cond": rev.ppl, "ppl_instruction": ins.ppl,
                              "truncated": cond.truncated | rev.truncated,
                              "near_threshold": near_threshold([ifd, rifd], 1.0, c.precision_band, ctx, self.name)})
        reason = np.full(len(data), "", dtype=object)
        reason[~(rifd < 1)] = "r-ifd >= 1"
        reason[~(ifd < 1)] = "ifd >= 1"
        reason[(cond.n_tokens == 0) | (dire.n_tokens == 0) | (rev.n_tokens == 0) | (ins.n_tokens == 0)] = \
            "no target tokens within max_length"
        table["eligible"] = reason == ""
        table["reason"] = reason
        return table

