"""LESS: keep the examples whose gradients point where the target task's gradients point.

Xia, Malladi, Gururangan, Arora, Chen, "LESS: Selecting Influential Data for Targeted Instruction
Tuning", ICML 2024 (arXiv 2402.04333; github.com/princeton-nlp/LESS).

1. Warm-up: LoRA fine-tune of the model on a random 5% of the pool, 4 epochs (r 128, alpha 512,
   dropout 0.1 on q/k/v/o; lr 2e-5 linear after 3% warm-up; 32 examples per step), one checkpoint
   per epoch with its Adam state.  The step's loss is the mean of the 32 examples' own mean token
   losses (the code's Trainer: per-device batch 1 x 32 accumulation, on one GPU), which sets the
   Adam moments that precondition the features (``loss_weighting``).
2. At each checkpoint i: every pool example's gradient of its mean loss over every assistant turn
   and the EOS after it (``concat_messages`` labels each assistant message and its EOS;
   ``pool_turns``), w.r.t. the LoRA weights, as LESS's Adam feature m' / sqrt(v' + eps) (the
   checkpoint's moments, no bias correction); every target example's plain (SGD) gradient of its
   mean loss over the answer alone, no EOS (``get_validation_dataset.tokenize`` encodes prompt +
   answer and appends nothing; ``target_eos``); both projected to ``proj_dim`` (8,192) by a
   Rademacher matrix and L2-normalised.  ``tunesift.signals.gradients`` computes each batch's
   per-example gradients in one backward pass (the code: one backward per example).
3. Score = sum_i w_i cos(train, target), w_i = checkpoint i's mean learning rate, normalised to sum
   1; per target subtask (``task_field``), the mean over its examples; the example's score is the
   maximum over subtasks.  Top-k, 5% by default.

Code vs paper, by name (``subtask_score``): ``code`` (default) averages the per-example cosines
within a subtask, as ``matching.py`` does; ``paper`` takes the cosine with the gradient of the
subtask's average loss (the mean of its projected, unnormalised gradients: projection is linear).
Other divergences (the ``faithfulness`` rows): the code projects with TRAK's CUDA projector;
tunesift's Rademacher matrix has the same distribution but not the same draws, so scores agree with
the code's up to projection noise (about 1/sqrt(proj_dim) per cosine), not digit for digit.  The
code formats examples with Tulu's chat format (an EOS after every assistant message); tunesift
renders with ``template`` (the model's chat template if it has one; with Alpaca's only the last
response is followed by EOS).  The warm-up draw uses the run's seed (the code: ``--data_seed 3``).
The engine builds each step from length-sorted micro-batches (the code: a random draw of 32).
The target set is any dataset file: the paper's are few-shot MMLU (5 per subject), BBH (3 per
task), TyDiQA (1 per language).  Nothing is cached between runs: the warm-up is retrained (the
features depend on it).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd

from ..data.io import Dataset
from ._influence import TINY, InfluenceConfig, InfluenceLoss, PoolTurns, influence, max_over_tasks, per_task
from .base import Context, Method, register
from .faithfulness import Divergence
from .params import Fixture


@dataclass
class LESSConfig(InfluenceConfig):
    subtask_score: Literal["code", "paper"] = "code"   # code: mean of per-example cosines | paper: cosine with the mean gradient
    pool_turns: PoolTurns = "all"           # every assistant turn carries loss (concat_messages) | last | run (--turns)
    target_eos: bool = False          # the validation loss has no EOS (get_validation_dataset.tokenize)
    loss_weighting: InfluenceLoss = "example"   # per-device batch 1 x 32 accumulation: the mean of per-example means | token


@register
class LESS(Method):
    name = "less"
    cost = "a 4-epoch LoRA warm-up on 5% + 1 per-example gradient (forward + backward) per checkpoint (4)"
    Config = LESSConfig
    paper = "LESS: Selecting Influential Data for Targeted Instruction Tuning"
    venue = "ICML 2024"
    code = "https://github.com/princeton-nlp/LESS"
    needs = ("causal_lm", "fine-tuning", "target_set")
    test_params = dict(target=Fixture("target"), **TINY)
    summary = "LoRA warm-up; cosine of Adam-preconditioned pool gradients with target-task gradients, LR-weighted."
    faithfulness = (
        Divergence(topic="target loss tokens",
                   official="less/data_selection/get_validation_dataset.py:33-48: encode(prompt + answer), "
                            "labels = the answer's tokens, no EOS appended",
                   parameter="target_eos=true (the answer and an EOS)"),
        Divergence(topic="pool loss turns",
                   official="less/data_selection/get_training_dataset.py:144-165,186-187: every assistant "
                            "message (and the EOS after it) is labelled, only user/system text is masked",
                   parameter="pool_turns=last (the last assistant turn) or pool_turns=run (the run's --turns)"),
        Divergence(topic="warm-up loss weighting",
                   official="less/scripts/train/base_training_args.sh:4,33-34: one GPU, per-device batch 1 x "
                            "32 accumulation, HF Trainer (transformers 4.36.2, requirement.txt:2): the step's "
                            "loss is the mean of 32 per-example token means",
                   parameter="loss_weighting=token (the mean over the step's tokens)"),
        Divergence(topic="subtask score",
                   official="less/data_selection/matching.py:78-79: reshape to subtasks, mean over a subtask's "
                            "examples, max over subtasks",
                   paper="the cosine with the gradient of the subtask's average loss",
                   parameter="subtask_score=paper"),
        Divergence(topic="projection",
                   official="less/data_selection/collect_grad_reps.py:160-163,209-210: TRAK projector, Rademacher, "
                            "seed 0, block size 128",
                   default="ours",
                   parameter="none: tunesift's own seeded Rademacher matrix (same distribution, other draws)"),
        Divergence(topic="chat format",
                   official="less/data_selection/get_training_dataset.py:178-190: Tulu <|user|>/<|assistant|> "
                            "with an EOS after every assistant message",
                   default="ours", parameter="template=NAME (default: the model's chat template, else Alpaca)"),
        Divergence(topic="warm-up sample seed",
                   official="less/scripts/train/warmup_lora_train.sh:32: --data_seed 3 (numpy permutation)",
                   default="ours", parameter="the run's --seed"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        inf = influence(data, ctx, self.config, self.name, per_task(self.config.subtask_score))
        self.checkpoint_weights_ = inf.weights.tolist()
        return max_over_tasks(inf, "less")
