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

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset, read_dataset
from ..models.templates import TEMPLATES, render_conversation, with_eos
from ._passes import resolve_template
from .base import Context, Method, choose, register

log = logging.getLogger("tunesift")


@dataclass
class LESSConfig:
    target: str | None = None         # the target task's examples: a dataset file (required)
    task_field: str | None = None     # a field of the target records naming its subtask (MMLU subject, BBH task)
    target_limit: int | None = None
    warmup_fraction: float = 0.05
    epochs: int = 4
    lora_r: int = 128
    lora_alpha: int = 512
    lora_dropout: float = 0.1
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj"
    learning_rate: float = 2e-5
    batch_size: int = 32
    max_length: int = 2048
    proj_dim: int = 8192
    subtask_score: str = "code"       # code: mean of per-example cosines | paper: cosine with the mean gradient
    template: str = "auto"
    grad_batch_tokens: int | None = None   # padded tokens per gradient batch; None: 1024 on a CPU, 4096 on a GPU

    def validate(self) -> None:
        choose(self.subtask_score, ("code", "paper"), "subtask_score")
        choose(self.template, TEMPLATES + ("auto",), "template")
        if not 0 < self.warmup_fraction <= 1 or self.epochs < 1 or self.proj_dim < 1:
            raise TunesiftError("less: warmup_fraction must be in (0, 1], epochs and proj_dim at least 1")


def _unit(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-30)


@register
class LESS(Method):
    name = "less"
    Config = LESSConfig
    paper = "LESS: Selecting Influential Data for Targeted Instruction Tuning"
    venue = "ICML 2024"
    code = "https://github.com/princeton-nlp/LESS"
    needs = ("causal_lm", "fine-tuning", "target_set")
    summary = "LoRA warm-up; cosine of Adam-preconditioned pool gradients with target-task gradients, LR-weighted."

    def _target(self, ctx: Context) -> tuple[Dataset, list[str]]:
        c = self.config
        if not c.target:
            raise TunesiftError("less selects for a target task: give its examples with -p target=PATH "
                                "(a dataset file, e.g. a few-shot set of the benchmark you care about)")
        tgt = read_dataset(c.target, limit=c.target_limit)
        if c.task_field is None:
            return tgt, ["all"] * len(tgt)
        tasks = []
        for e in tgt.examples:
            if c.task_field not in (e.raw or {}):
                raise TunesiftError(f"{c.target}: target example {e.id} has no field {c.task_field!r} (task_field)")
            tasks.append(str(e.raw[c.task_field]))
        return tgt, tasks

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        from ..signals.gradients import RademacherProjector, gradient_features, trainable_linears
        from ..train import TrainConfig, finetune
        c = self.config
        tgt, tasks = self._target(ctx)
        names = sorted(set(tasks))
        member = np.array([[t == n for t in tasks] for n in names], dtype=np.float64)   # [K, M]
        lm = ctx.causal_lm()
        template = resolve_template(c.template, ctx)
        max_length = ctx.max_length or c.max_length
        # the loss whose gradient is taken is the warm-up's training loss: response tokens and the EOS after them
        eos = lm.tokenizer.eos_token
        reqs = [with_eos(render_conversation(e, template, lm.tokenizer, ctx.turns), eos) for e in data.examples]
        treqs = [with_eos(render_conversation(e, template, lm.tokenizer, ctx.turns), eos) for e in tgt.examples]
        rng = np.random.default_rng(ctx.seed)
        warm = np.sort(rng.permutation(len(data))[:max(1, round(c.warmup_fraction * len(data)))])
        per_ckpt: list[np.ndarray] = []
        lrs: list[float] = []
        n_tok = np.zeros(len(data), dtype=np.int64)
        proj: list = []

        def checkpoint(snap) -> None:
            nonlocal n_tok
            if snap.epoch == 0:
                return
            if not proj:
                n = sum(m.weight.numel() for _, m in trainable_linears(snap.lm.model))
                proj.append(RademacherProjector(n, c.proj_dim, seed=0))
            # Backward keeps every layer's activations: on the 2-core CPU (default model) a 4,096-token
            # batch peaked at ~10 GB, as the fine-tuning engine's micro-batches did (1,024 there too).
            on_gpu = str(snap.lm.device).startswith("cuda")
            kw = dict(max_length=max_length, batch_tokens=c.grad_batch_tokens or (4096 if on_gpu else 1024),
                      progress=ctx.progress)
            G, n_tok = gradient_features(snap.lm, reqs, proj[0], optimizer=snap.optimizer, kind="adam",
                                         desc=f"pool gradients (checkpoint {snap.epoch})", **kw)
            V, v_tok = gradient_features(snap.lm, treqs, proj[0], kind="sgd",
                                         desc=f"target gradients (checkpoint {snap.epoch})", **kw)
            ok = v_tok > 0
            if not ok.any():
                raise TunesiftError(f"{c.target}: no target example has a response token within max_length")
            m = member * ok[None, :]
            T = _unit(G)
            if c.subtask_score == "code":
                S = (T @ _unit(V).T) @ (m / np.maximum(m.sum(1, keepdims=True), 1)).T       # mean cosine per task
            else:
                S = T @ _unit(m @ V / np.maximum(m.sum(1, keepdims=True), 1)).T             # cosine with mean gradient
            S[:, m.sum(1) == 0] = np.nan          # a subtask with no usable example scores nothing
            per_ckpt.append(S)
            lrs.append(snap.mean_lr)

        log.info("less: LoRA warm-up on %d of %d examples (%d epochs), gradients at each epoch's checkpoint",
                 len(warm), len(data), c.epochs)
        finetune(lm, data.subset(warm.tolist()),
                 TrainConfig(method="lora", template=template, epochs=float(c.epochs), learning_rate=c.learning_rate,
                             batch_size=c.batch_size, max_length=max_length, lr_schedule="linear", warmup_ratio=0.03,
                             lora_r=c.lora_r, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                             lora_targets=c.lora_targets, turns=ctx.turns, seed=ctx.seed),
                 progress=ctx.progress, on_epoch=checkpoint)
        w = np.asarray(lrs) / np.sum(lrs)
        S = sum(wi * Si for wi, Si in zip(w, per_ckpt))                                  # [N, K]
        ok = n_tok > 0
        best = np.nanargmax(np.where(np.isnan(S), -np.inf, S), axis=1)
        table = pd.DataFrame({"score": np.where(ok, np.nanmax(S, axis=1), np.nan)})
        table["eligible"] = ok
        table["reason"] = np.where(ok, "", "no response tokens within max_length")
        table["best_task"] = np.where(ok, np.asarray(names, dtype=object)[best], "")
        if len(names) <= 16:
            for k, n in enumerate(names):
                table[f"less_{n}"] = np.where(ok, S[:, k], np.nan)
        warm_mask = np.zeros(len(data), dtype=bool)
        warm_mask[warm] = True
        table["warmup"] = warm_mask
        self.checkpoint_weights_ = w.tolist()
        return table
