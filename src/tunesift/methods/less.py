"""LESS: keep the examples whose gradients point where the target task's gradients point.

Xia, Malladi, Gururangan, Arora, Chen, "LESS: Selecting Influential Data for Targeted Instruction
Tuning", ICML 2024 (arXiv 2402.04333; github.com/princeton-nlp/LESS).

1. Warm-up: LoRA fine-tune of the model on a random 5% of the pool, 4 epochs (r 128, alpha 512,
   dropout 0.1 on q/k/v/o; lr 2e-5 linear after 3% warm-up; 32 examples per step), one checkpoint
   per epoch with its Adam state.
2. At each checkpoint i: every pool example's gradient of its mean loss over the response and EOS
   (the warm-up's training loss) w.r.t. the LoRA
   weights, as LESS's Adam feature m' / sqrt(v' + eps) (the checkpoint's moments, no bias
   correction); every target example's plain (SGD) gradient; both projected to ``proj_dim`` (8,192)
   by a Rademacher matrix and L2-normalised.  ``tunesift.signals.gradients`` computes each batch's
   per-example gradients in one backward pass (the code: one backward per example).
3. Score = sum_i w_i cos(train, target), w_i = checkpoint i's mean learning rate, normalised to sum
   1; per target subtask (``task_field``), the mean over its examples; the example's score is the
   maximum over subtasks.  Top-k, 5% by default.

Code vs paper, by name (``subtask_score``): ``code`` (default) averages the per-example cosines
within a subtask, as ``matching.py`` does; ``paper`` takes the cosine with the gradient of the
subtask's average loss (the mean of its projected, unnormalised gradients: projection is linear).
Other divergences: the code projects with TRAK's CUDA projector; tunesift's Rademacher matrix has
the same distribution but not the same draws, so scores agree with the code's up to projection
noise (about 1/sqrt(proj_dim) per cosine), not digit for digit.  The code formats examples with
Tulu's chat format; tunesift renders with ``template`` (the model's chat template if it has one).
The warm-up draw uses the run's seed (the code: ``--data_seed 3``).  The target set is any dataset
file: the paper's are few-shot MMLU (5 per subject), BBH (3 per task), TyDiQA (1 per language).
Nothing is cached between runs: the warm-up is retrained (the features depend on it).
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from ..data.io import Dataset
from ._influence import InfluenceConfig, influence, max_over_tasks, per_task
from .base import Context, Method, choose, register


@dataclass
class LESSConfig(InfluenceConfig):
    subtask_score: str = "code"       # code: mean of per-example cosines | paper: cosine with the mean gradient

    def validate(self) -> None:
        super().validate()
        choose(self.subtask_score, ("code", "paper"), "subtask_score")


@register
class LESS(Method):
    name = "less"
    Config = LESSConfig
    paper = "LESS: Selecting Influential Data for Targeted Instruction Tuning"
    venue = "ICML 2024"
    code = "https://github.com/princeton-nlp/LESS"
    needs = ("causal_lm", "fine-tuning", "target_set")
    summary = "LoRA warm-up; cosine of Adam-preconditioned pool gradients with target-task gradients, LR-weighted."

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        inf = influence(data, ctx, self.config, self.name, per_task(self.config.subtask_score))
        self.checkpoint_weights_ = inf.weights.tolist()
        return max_over_tasks(inf, "less")
