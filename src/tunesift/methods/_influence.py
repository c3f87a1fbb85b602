"""The LESS pipeline that influence-based methods share (LESS, BIDS, ROSE, G2IS): a LoRA warm-up on a random
slice of the pool, and at each epoch's checkpoint the pool's Adam-preconditioned gradient features
and the target set's plain gradient features, reduced by the method as they come (a pool's worth of
8,192-dimensional features per checkpoint would not all fit in memory at scale).  With the cache on,
each checkpoint's features also go to disk as they come (LESS's own pipeline stores them too), so
methods that share the warm-up, pool and target (LESS, BIDS and G2IS under LESS's rules) pay for it
once."""
from __future__ import annotations

import json
import logging
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Callable, Literal

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.fingerprint import fingerprint
from ..data.io import Dataset, atomic_path, read_dataset
from ..models.loading import cache_root
from ..models.templates import render_conversation, with_eos
from ..signals.gradients import RademacherProjector, gradient_features, trainable_linears
from ..train import TrainConfig, finetune, training_fingerprint
from ._passes import resolve_template
from .base import Context
from .params import Positive, Range, Template

log = logging.getLogger("tunesift")


# The influence methods' conformance-test settings: a tiny warm-up and projection.
TINY = dict(epochs=2, lora_r=4, lora_alpha=8, proj_dim=32, warmup_fraction=0.5, learning_rate=1e-2, batch_size=2)
PoolTurns = Literal["run", "all", "last"]
InfluenceLoss = Literal["token", "example"]


@dataclass
class InfluenceConfig:
    target: str | None = None         # the target task's examples: a dataset file (required)
    task_field: str | None = None     # a field of the target records naming its subtask (MMLU subject, BBH task)
    target_limit: int | None = None
    warmup_fraction: Annotated[float, Range(0, 1, lo_open=True)] = 0.05
    epochs: Positive = 4
    lora_r: int = 128
    lora_alpha: int = 512
    lora_dropout: float = 0.1
    lora_targets: str = "q_proj,k_proj,v_proj,o_proj"
    learning_rate: float = 2e-5
    batch_size: int = 32
    max_length: int = 2048
    proj_dim: Positive = 8192
    template: Template = "auto"
    grad_batch_tokens: int | None = None   # padded tokens per gradient batch; None: 1024 on a CPU, 4096 on a GPU
    # The pool side (warm-up and pool features): which assistant turns carry loss (run: the run's --turns)
    pool_turns: PoolTurns = "run"
    target_eos: bool = True           # the target examples' loss includes the EOS after the response
    loss_weighting: InfluenceLoss = "token"     # the warm-up's step loss (TrainConfig.loss_weighting; groups of one)


@dataclass
class Influence:
    reduced: list = field(default_factory=list)   # what ``reduce`` returned, per checkpoint
    weights: np.ndarray | None = None             # checkpoint weights: mean learning rates, summing to 1
    n_tokens: np.ndarray | None = None            # pool examples' scored tokens (0: no gradient)
    warmup: np.ndarray | None = None              # pool examples the warm-up trained on
    tasks: list[str] = field(default_factory=list)   # each target example's subtask


def unit(X: np.ndarray) -> np.ndarray:
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-30)


def target_set(c: InfluenceConfig, name: str) -> tuple[Dataset, list[str]]:
    if not c.target:
        raise TunesiftError(f"{name} selects for a target task: give its examples with -p target=PATH "
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


def renderings(data: Dataset, ctx: Context, template: str, turns: str | None = None, eos: bool = True) -> list:
    """Texts with their loss spans: the assistant ``turns`` (None: the run's), and the EOS after the
    response when ``eos`` (the warm-up's training texts have it)."""
    tok = ctx.causal_lm().tokenizer
    reqs = [render_conversation(e, template, tok, turns or ctx.turns) for e in data.examples]
    return [with_eos(r, tok.eos_token) for r in reqs] if eos else reqs


def influence(data: Dataset, ctx: Context, c: InfluenceConfig, name: str, reduce: Callable[..., np.ndarray],
              target: Callable | None = None, tasks: list[str] | None = None) -> Influence:
    """Run the warm-up; at each checkpoint call ``reduce(T, V, v_ok, tasks)`` with the pool's unit-norm
    Adam features T [N, d], the target's raw projected gradients V [M, d], which target examples had a
    token to score, and each target example's subtask; keep what it returns.  ``target(snap,
    projector, **kw) -> (V, v_ok)`` replaces the default target features (each target example's
    plain gradient of its mean response loss) and then ``tasks`` names their subtasks."""
    template = resolve_template(c.template, ctx)
    max_length = ctx.max_length or c.max_length
    turns = ctx.turns if c.pool_turns == "run" else c.pool_turns
    custom_target = target
    if target is None:
        tgt, tasks = target_set(c, name)
        treqs = renderings(tgt, ctx, template, eos=c.target_eos)

        def target(snap, proj, **kw):
            V, v_tok = gradient_features(snap.lm, treqs, proj, kind="sgd",
                                         desc=f"target gradients (checkpoint {snap.epoch})", **kw)
            return V, v_tok > 0
    lm = ctx.causal_lm()
    rng = np.random.default_rng(ctx.seed)
    warm = np.sort(rng.permutation(len(data))[:max(1, round(c.warmup_fraction * len(data)))])
    out = Influence(tasks=list(tasks))
    out.warmup = np.zeros(len(data), dtype=bool)
    out.warmup[warm] = True
    tcfg = TrainConfig(method="lora", template=template, epochs=float(c.epochs), learning_rate=c.learning_rate,
                       batch_size=c.batch_size, max_length=max_length, lr_schedule="linear", warmup_ratio=0.03,
                       lora_r=c.lora_r, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                       lora_targets=c.lora_targets, turns=turns, loss_weighting=c.loss_weighting, seed=ctx.seed)
    # LESS, BIDS and G2IS (LESS's rules, one target set) compute the same features: cache them per
    # checkpoint, keyed by the warm-up, the pool, the target and the projection.  A custom target
    # (ROSE's preference gradients) is not cached here.
    store = None
    if ctx.use_cache and custom_target is None:
        # the target is rendered with the run's turns, the pool with ``turns``; the subtasks only
        # group the stored features (in ``reduce``), so they are not part of the key
        key = fingerprint(FEATURES_VERSION, training_fingerprint(lm, data.subset(warm.tolist()), tcfg),
                          lm.dtype, data.fingerprint, tgt.fingerprint, ctx.turns, c.target_eos, c.proj_dim,
                          max_length, template, turns, length=24)
        store = FeatureStore(cache_root(ctx.cache_dir) / "influence" / key)
        if store.complete() and store.readable():
            log.info("%s: gradient features of this warm-up, pool and target from %s", name, store.where)
            got = []
            for G, V, v_ok, out.n_tokens, lr in store.checkpoints():
                out.reduced.append(reduce(G, V, v_ok, np.asarray(tasks)))
                got.append(lr)
            out.weights = np.asarray(got) / np.sum(got)
            return out
    reqs = renderings(data, ctx, template, turns)   # the pool, tokenised only when its features are computed
    lrs: list[float] = []
    proj: list = []

    def checkpoint(snap) -> None:
        if snap.epoch == 0:
            return
        if not proj:
            n = sum(m.weight.numel() for _, m in trainable_linears(snap.lm.model))
            proj.append(RademacherProjector(n, c.proj_dim, seed=0))
        # Backward keeps every layer's activations: on the 2-core CPU (default model) a 4,096-token
        # batch peaked at ~10 GB, as the fine-tuning engine's micro-batches did (1,024 there too).
        on_gpu = str(snap.lm.device).startswith("cuda")
        kw = dict(max_length=max_length, batch_tokens=c.grad_batch_tokens or (4096 if on_gpu else 1024),
                  progress=ctx.progress, runner=ctx.runner())   # the features run on the run's workers
        G, out.n_tokens = gradient_features(snap.lm, reqs, proj[0], optimizer=snap.optimizer, kind="adam",
                                            desc=f"pool gradients (checkpoint {snap.epoch})", **kw)
        V, v_ok = target(snap, proj[0], **kw)
        if not v_ok.any():
            raise TunesiftError(f"{c.target}: no target example has a response token within max_length")
        G = unit(G)
        if store is not None:
            store.put(snap.epoch, G, V, v_ok, out.n_tokens, snap.mean_lr)
        out.reduced.append(reduce(G, V, v_ok, np.asarray(tasks)))
        lrs.append(snap.mean_lr)

    log.info("%s: LoRA warm-up on %d of %d examples (%d epochs), gradients at each epoch's checkpoint",
             name, len(warm), len(data), c.epochs)
    finetune(lm, data.subset(warm.tolist()), tcfg, progress=ctx.progress, on_epoch=checkpoint)
    if store is not None:
        store.finish(len(lrs))
    out.weights = np.asarray(lrs) / np.sum(lrs)
    return out


FEATURES_VERSION = "influence-features-v1"


class FeatureStore:
    """One warm-up's checkpoints on disk: the pool's unit Adam features, the target's gradients, which
    target examples had a token, the pool's token counts and the checkpoint's mean learning rate, one
    .npz a checkpoint as it is computed; ``done.json``, written last, marks the set complete (a killed
    warm-up cannot resume mid-run, so a partial set is recomputed)."""

    def __init__(self, where: Path):
        self.where = where

    def complete(self) -> bool:
        return (self.where / "done.json").is_file()

    def readable(self) -> bool:
        """Every checkpoint the set names opens; a damaged set is dropped (and recomputed), not an error."""
        try:
            n = json.loads((self.where / "done.json").read_text())["checkpoints"]
            for e in range(1, n + 1):
                with np.load(self.where / f"checkpoint{e}.npz") as z:
                    if set(z.files) != {"G", "V", "v_ok", "n_tokens", "lr"}:
                        raise ValueError(f"checkpoint{e}.npz holds {sorted(z.files)}")
            return True
        except (OSError, ValueError, KeyError, zipfile.BadZipFile) as e:
            log.warning("influence features in %s are damaged (%s): computing them again", self.where, e)
            (self.where / "done.json").unlink(missing_ok=True)
            return False

    def put(self, epoch: int, G, V, v_ok, n_tokens, lr: float) -> None:
        self.where.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.where / f"checkpoint{epoch}.npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, G=np.asarray(G, dtype=np.float32), V=np.asarray(V), v_ok=np.asarray(v_ok),
                         n_tokens=np.asarray(n_tokens), lr=np.float64(lr))

    def finish(self, n: int) -> None:
        with atomic_path(self.where / "done.json") as tmp:
            Path(tmp).write_text(json.dumps({"checkpoints": n, "version": FEATURES_VERSION}))

    def checkpoints(self):
        n = json.loads((self.where / "done.json").read_text())["checkpoints"]
        for e in range(1, n + 1):
            with np.load(self.where / f"checkpoint{e}.npz") as z:
                yield z["G"], z["V"], z["v_ok"], z["n_tokens"], float(z["lr"])


def weighted(inf: Influence) -> np.ndarray:
    """sum_i w_i reduced_i: the checkpoint-weighted combination."""
    return sum(w * r for w, r in zip(inf.weights, inf.reduced))


def per_task(rule: str) -> Callable[..., np.ndarray]:
    """A ``reduce`` giving [pool, subtask] scores: ``code`` the mean of the per-example cosines within
    each subtask (LESS's matching.py), ``paper`` the cosine with the subtask's mean gradient (the
    gradient of its average loss; projection is linear).  A subtask with no usable example: NaN."""
    def reduce(T: np.ndarray, V: np.ndarray, v_ok: np.ndarray, tasks: np.ndarray) -> np.ndarray:
        member = (np.unique(tasks)[:, None] == tasks[None, :]) * v_ok[None, :]     # [K, M], tasks sorted
        counts = member.sum(1, keepdims=True)
        if rule == "code":
            S = (T @ unit(V).T) @ (member / np.maximum(counts, 1)).T
        else:
            S = T @ unit(member @ V / np.maximum(counts, 1)).T
        S[:, counts[:, 0] == 0] = np.nan
        return S
    return reduce


def max_over_tasks(inf: Influence, prefix: str) -> pd.DataFrame:
    """The scores table of a LESS-style method: the checkpoint-weighted [pool, subtask] scores, the
    max over subtasks as the score, the subtask that gave it, one column per subtask (up to 16)."""
    S = weighted(inf)
    names = sorted(set(inf.tasks))
    table = base_table(inf)
    ok = table["eligible"].to_numpy()
    best = np.argmax(np.where(np.isnan(S), -np.inf, S), axis=1)
    table["score"] = np.where(ok, np.nanmax(S, axis=1), np.nan)
    table["best_task"] = np.where(ok, np.asarray(names, dtype=object)[best], "")
    if len(names) <= 16:
        for k, n in enumerate(names):
            table[f"{prefix}_{n}"] = np.where(ok, S[:, k], np.nan)
    return table


def base_table(inf: Influence) -> pd.DataFrame:
    """score (NaN: the method fills it), eligible (the example had a token to take a gradient of),
    reason, and whether the warm-up trained on it."""
    ok = inf.n_tokens > 0
    return pd.DataFrame({"score": np.nan, "eligible": ok,
                         "reason": np.where(ok, "", "no response tokens within max_length"), "warmup": inf.warmup})
