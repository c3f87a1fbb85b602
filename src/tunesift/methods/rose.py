"""ROSE: LESS with a preference (DPO) loss on the target side.

Wu et al., "ROSE: A Reward-Oriented Data Selection Framework for LLM Task-Specific Instruction
Tuning", arXiv 2412.00631 (Findings of EMNLP 2025; github.com/YANGWU001/ROSE).

The pool side is LESS's (``tunesift.methods.less``: LoRA warm-up on 5%, 4 checkpoints, Adam
features projected to 8,192, checkpoint weights = mean learning rates).  The target is a few-shot
*preference* set of (prompt, chosen, rejected) triples, and each triple's feature is the gradient of
its DPO loss at the checkpoint:

    L = -log sigmoid(beta * [(log pi(y_w|x) - log pi(y_l|x)) - (log ref(y_w|x) - log ref(y_l|x))])

with log-probabilities summed over the response tokens (and EOS), beta = 0.1, pi the checkpoint and
ref the base model (the code hard-codes the base model as reference).  Since
grad L = beta sigmoid(-z) (grad NLL(y_w) - grad NLL(y_l)), tunesift takes the two summed-NLL
gradients from its batched per-example pass and combines them with that exact factor.  Score: the
LR-weighted cosine, the mean over each subtask's triples (``subtask_score="code"``; ``paper``: cosine
with the subtask's mean gradient), the max over subtasks; top 5%.

The target file (JSON, JSONL, Parquet or CSV) holds one triple per record, fields ``prompt``,
``chosen``, ``rejected`` (non-empty strings; a record without them is an error naming file, line and
field) and optionally the ``task_field``.  Prompts and responses are rendered with ``template``
like the pool.  Divergences: the code truncates prompts to 256 tokens (``keep_end`` for HH) before
the 2,048 limit; tunesift applies ``max_length`` to the whole rendering and scores whatever response
tokens fit.  Under the default ``code`` rule the reference model and beta do not change the scores
(each triple's gradient is only rescaled, and cosines ignore scale); they matter for ``paper``.

Tokenisation of the triples (``rose/dpo_gradient.py`` ``tokenize_batch_element``): the code tokenises
prompt, chosen and rejected separately with ``add_special_tokens=False`` (no BOS), appends EOS to
each response *and to the prompt* (unless one is already there), and concatenates the ids, so every
sequence reads prompt, EOS, response, EOS.  tunesift renders prompt and response together with the
``template`` (BOS as the tokenizer adds it, no EOS between prompt and response, EOS after the
response): the response tokens see a different context, and BPE merges across the prompt-response
boundary can differ.  There is no parameter for the code's layout.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.errors import DataError, TunesiftError
from ..data.io import Dataset, from_records, iter_raw
from ..signals.gradients import gradient_features
from ._influence import TINY, InfluenceConfig, InfluenceLoss, influence, max_over_tasks, per_task, renderings
from ._passes import resolve_template
from .base import Context, Method, register
from .faithfulness import Divergence
from .params import Fixture, Range


@dataclass
class ROSEConfig(InfluenceConfig):
    beta: Annotated[float, Range(0, lo_open=True)] = 0.1
    subtask_score: Literal["code", "paper"] = "code"   # code: mean of per-triple cosines | paper: cosine with the mean gradient
    # ROSE's warm-up (run/base_training_args.sh, run_from_start.sh): per-device batch 1, no accumulation,
    # 4 GPUs, so 4 examples a step, each its own token mean (DDP averages the devices' gradients)
    batch_size: int = 4
    loss_weighting: InfluenceLoss = "example"


def preference_set(path: str, task_field: str | None, limit: int | None) -> tuple[list[dict], list[str]]:
    """(records with prompt / chosen / rejected, their subtasks) from a file; bad records are errors."""
    _, _, it = iter_raw(path)
    recs, tasks = [], []
    for line, rec in it:
        if isinstance(rec, DataError):
            raise rec
        if not isinstance(rec, dict):
            raise DataError(path, line, None, "not_an_object", "a preference triple must be an object")
        for key in ("prompt", "chosen", "rejected") + ((task_field,) if task_field else ()):
            if key not in rec or rec[key] is None or (key != task_field and not str(rec[key]).strip()):
                raise DataError(path, line, key, "missing_field", f"field {key!r} is missing or empty "
                                "(a ROSE target record is a preference triple: prompt, chosen, rejected)")
        recs.append(rec)
        tasks.append(str(rec[task_field]) if task_field else "all")
        if limit is not None and len(recs) >= limit:
            break
    if not recs:
        raise TunesiftError(f"{path}: no preference triple")
    return recs, tasks


@register
class ROSE(Method):
    name = "rose"
    cost = "as LESS, with DPO-loss gradients of the preference target set"
    revision = 1   # a default changed: see the faithfulness rows
    Config = ROSEConfig
    paper = "ROSE: A Reward-Oriented Data Selection Framework for LLM Task-Specific Instruction Tuning"
    venue = "Findings EMNLP 2025"
    code = "https://github.com/YANGWU001/ROSE"
    needs = ("causal_lm", "fine-tuning", "target_set")   # its target set is preference pairs
    test_params = dict(target=Fixture("preferences"), task_field="task", **TINY)
    summary = "LESS with DPO-loss gradients of a few-shot preference set as the target direction."
    faithfulness = (
        Divergence(topic="warm-up step",
                   official="run/base_training_args.sh: per-device batch 1, gradient_accumulation_steps 1; "
                            "run/run_from_start.sh: devices \"0 1 2 3\": 4 examples a step, the mean of their "
                            "token means (LESS: 1 x 32 accumulation)",
                   default="official", parameter="batch_size=32 (LESS's), loss_weighting=token"),
        Divergence(topic="pool loss turns",
                   official="rose/model_training.py and rose/build_storage.py, which the run scripts call, are not "
                            "in the published repository",
                   default="ours", parameter="pool_turns=run (the run's --turns; the default) or all (LESS's rule)"),
        Divergence(topic="target triple tokenisation",
                   official="rose/dpo_gradient.py:103-118: prompt, chosen, rejected tokenised apart without special "
                            "tokens (no BOS); EOS appended to the prompt and to each response",
                   default="ours",
                   parameter="none: tunesift renders prompt + response with the template (BOS, no EOS after "
                             "the prompt, EOS after the response)"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        c = self.config
        if not c.target:
            raise TunesiftError("rose selects for a preference target: give (prompt, chosen, rejected) triples "
                                "with -p target=PATH")
        recs, tasks = preference_set(c.target, c.task_field, c.target_limit)
        template = resolve_template(c.template, ctx)
        side = {k: renderings(from_records([{"instruction": r["prompt"], "input": "", "output": r[k]} for r in recs],
                                           name=c.target), ctx, template) for k in ("chosen", "rejected")}
        # the reference model's log-probabilities: the base model's, once (cached by the engine)
        eng = ctx.engine(ctx.max_length or c.max_length)
        ref = {k: eng.nll(v, desc=f"reference log-probabilities ({k})").sum_nll for k, v in side.items()}
        self.dpo_loss_: list[np.ndarray] = []

        def target(snap, proj, **kw):
            got = {k: gradient_features(snap.lm, v, proj, kind="sgd", loss="sum", return_loss=True,
                                        desc=f"target {k} gradients (checkpoint {snap.epoch})", **kw)
                   for k, v in side.items()}
            (Gw, nw, Lw), (Gl, nl, Ll) = got["chosen"], got["rejected"]
            # log pi = -NLL: z = beta * [(-Lw + Ll) - (-Rw + Rl)]
            z = c.beta * ((Ll - Lw) - (ref["rejected"] - ref["chosen"]))
            self.dpo_loss_.append(np.logaddexp(0.0, -z))             # -log sigmoid(z)
            scale = c.beta / (1.0 + np.exp(z))                        # beta * sigmoid(-z)
            return (scale[:, None] * (Gw - Gl)).astype(np.float32), (nw > 0) & (nl > 0)

        inf = influence(data, ctx, c, self.name, per_task(c.subtask_score), target=target, tasks=tasks)
        self.checkpoint_weights_ = inf.weights.tolist()
        return max_over_tasks(inf, "rose")
