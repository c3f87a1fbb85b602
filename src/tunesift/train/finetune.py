"""Supervised fine-tuning on a selection: LoRA (default) or full, loss on response tokens only.

A library component first: methods that train inside their selection loop (LESS warm-up,
DiverseEvol's rounds, MoDS's seed model) call ``finetune(lm, subset, TrainConfig(...))`` with an
in-memory ``Dataset`` and get the trained model back; ``tunesift train`` and ``tunesift bench`` are
thin layers over it.

Design choices, each a common SFT convention made explicit:
- Targets are located exactly as the likelihood engine locates them (``tokenize_targets``: token
  offsets against the template's response spans), so "what is trained" and "what is scored" are
  the same tokens.
- ``loss_weighting``: ``token`` (default) makes the step's loss the mean over every target token
  of the step, accumulated across micro-batches by token count.  The methods' official code ran the
  Hugging Face Trainer (before transformers 4.46), whose step loss is the mean over accumulation
  steps and devices of each device micro-batch's token mean: ``group`` reproduces that (the step's
  examples in a seeded random order, cut into groups of ``loss_group_size`` = the official
  per-device batch, each group's token mean, the mean over groups), and ``example`` is groups of one
  (per-device batch 1, as LESS).  The weighting is independent of how micro-batches are packed.
- Micro-batches are packed by a token budget from length-sorted examples, then the micro-batches
  are shuffled with the seed: little padding, still a random order of updates.
- Right padding and no attention mask: under causal attention padding placed after a sequence
  never reaches it, and padded positions carry no loss.
- The learning-rate schedule is ``transformers.get_scheduler``'s (the Trainer's, which the official
  recipes ran): linear warm-up from 0 over ``int(warmup_ratio * steps)`` steps, then linear or cosine
  decay to 0.
- LoRA weights are merged into the returned model (``merge_and_unload``), so evaluation runs on a
  plain model through the same fast engine; the adapter itself is saved when ``output_dir`` is set.
- ``sampler``: a method that selects while it trains (LEAD) passes a ``Sampler``, which names each
  step's examples and hears back their losses; the engine keeps the optimizer, schedule and loss.
  Without one, the epochs are planned up front as above (the default, unchanged).
"""
from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data.errors import TunesiftError
from ..data.fingerprint import Hasher, fingerprint
from ..data.io import Dataset, atomic_path
from ..models.heads import body_and_head, head_logits, head_reproduces_logits
from ..models.loading import LoadedLM, load_causal_lm
from ..models.progress import progress_bar
from ..models.templates import TEMPLATES, render_conversation
from ..report.svg import line_chart
from ..signals.batching import pad_id_of
from ..signals.tokenize import tokenize_targets

log = logging.getLogger("tunesift")


@dataclass
class TrainConfig:
    method: str = "lora"              # lora | full
    template: str = "auto"            # auto (chat template if the tokenizer has one, else alpaca) | alpaca | ...
    epochs: float = 1.0
    learning_rate: float | None = None   # None: 2e-4 for LoRA, 2e-5 for full fine-tuning
    batch_size: int = 16              # examples per optimiser step: at least this, less than twice it
                                      # (micro-batches are whole; gradient accumulation fills the step)
    # padded tokens per forward/backward; None: 1024 on a CPU, 4096 on a GPU.  On the 2-core CPU,
    # default model, 32 Alpaca examples: 1024 took 24 s at 4.4 GB peak, 4096 took 41 s at 10.6 GB
    # (activation memory grows with the micro-batch, and the big ones ran slower too)
    micro_batch_tokens: int | None = None
    max_length: int = 1024
    warmup_ratio: float = 0.03
    lr_schedule: str = "linear"       # transformers.get_scheduler's linear | cosine (to 0; cosine is the Alpaca recipe's)
                                      # | exponential: lr x lr_decay ** (step // lr_decay_steps), no warm-up (LEAD)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0         # LLaMA-Factory's and PEFT's default; 0.05 cost 1.5x time, +3 GB here
    lora_targets: str = "all-linear"  # PEFT's "all-linear", or comma-separated module names
    packing: bool = False             # concatenate examples into max_length rows (cross-example attention, as TRL's classic packing)
    turns: str = "last"               # which assistant turns carry loss: last | all
    loss_weighting: str = "token"     # token: mean over the step's target tokens | example: mean of each
                                      # example's token mean | group: mean of token means of groups of
                                      # loss_group_size examples (HF Trainer: one group per device micro-batch)
    loss_group_size: int = 1          # examples per group with loss_weighting="group" (the official per-device batch)
    seed: int = 0
    bf16: bool | None = None          # None: bf16 autocast on a CUDA device that supports it
    lr_decay: float = 0.995           # lr_schedule="exponential" only
    lr_decay_steps: int = 8

    def validate(self) -> None:
        if self.method not in ("lora", "full"):
            raise TunesiftError(f"train method must be 'lora' or 'full', not {self.method!r}")
        if self.lr_schedule not in ("linear", "cosine", "exponential"):
            raise TunesiftError(f"lr_schedule must be 'linear', 'cosine' or 'exponential', not {self.lr_schedule!r}")
        if not 0 < self.lr_decay <= 1 or self.lr_decay_steps < 1:
            raise TunesiftError("lr_decay must be in (0, 1] and lr_decay_steps at least 1")
        if self.template != "auto" and self.template not in TEMPLATES:
            raise TunesiftError(f"unknown template {self.template!r}; choose auto or {', '.join(TEMPLATES)}")
        if self.epochs <= 0 or self.batch_size < 1 or (self.micro_batch_tokens or 16) < 16 or self.max_length < 8:
            raise TunesiftError("epochs, batch_size, micro_batch_tokens and max_length must be positive")
        if self.loss_weighting not in ("token", "example", "group"):
            raise TunesiftError(f"loss_weighting must be 'token', 'example' or 'group', not {self.loss_weighting!r}")
        if self.loss_group_size < 1:
            raise TunesiftError("loss_group_size must be at least 1")
        if self.packing and self.loss_weighting != "token":
            raise TunesiftError("packing mixes examples in a row: only loss_weighting='token' applies")

    @property
    def lr(self) -> float:
        return self.learning_rate if self.learning_rate is not None else (2e-4 if self.method == "lora" else 2e-5)


@dataclass
class EpochSnapshot:
    """What ``finetune``'s ``on_epoch`` hook sees: the model as it stands (eval mode, LoRA adapters
    active and not merged), its optimizer (Adam moments at this point: LESS reads them), and the
    mean learning rate of the epoch just finished (LESS weights its checkpoints by it)."""
    epoch: int                        # 0 before the first step, then 1, 2, ... after each whole epoch
    lm: LoadedLM
    optimizer: Any
    mean_lr: float | None             # None at epoch 0


@dataclass
class StepFeedback:
    """What a ``Sampler`` hears after each optimiser step it chose."""
    step: int                         # 1, 2, ...: optimiser steps taken so far
    indices: np.ndarray               # the step's examples (positions in the data)
    losses: np.ndarray                # each one's mean loss over its target tokens, from this step's
                                      # forward pass (before the update; dropout on, as trained)
    lr: float                         # the learning rate the step used
    model: Any                        # the network in training (LoRA adapters unmerged): read, never write


class Sampler:
    """Chooses the examples of each optimiser step while ``finetune`` trains (a method that selects as it
    trains, LEAD, subclasses it).  The engine calls ``start`` once, then alternately ``next_step`` (the
    next step's data positions; None or empty ends training) and ``feedback`` for that step.  Linear and
    cosine schedules need ``total_steps``; ``lr_schedule="exponential"`` needs no end."""

    total_steps: int | None = None

    def start(self, trainable: np.ndarray, model: Any) -> None:
        """``trainable[i]``: example i has a target token within max_length (only those may be named);
        ``model``: the network that will train (as in ``StepFeedback``)."""

    def next_step(self) -> Any:
        raise NotImplementedError

    def feedback(self, fb: StepFeedback) -> None:
        """Called after the step's update."""


@dataclass
class TrainResult:
    lm: LoadedLM                      # the trained model (LoRA merged), in eval mode
    config: TrainConfig
    log: list[dict] = field(default_factory=list)    # one row per optimiser step
    examples: int = 0
    target_tokens: int = 0
    skipped: dict = field(default_factory=dict)      # reason -> count (nothing dropped silently)
    seconds: float = 0.0
    output_dir: str | None = None

    def summary(self) -> dict:
        losses = [r["loss"] for r in self.log]
        return {"examples": self.examples, "target_tokens": self.target_tokens, "steps": len(self.log),
                "first_loss": losses[0] if losses else None, "last_loss": losses[-1] if losses else None,
                "seconds": self.seconds, "skipped": self.skipped, "config": asdict(self.config)}


def _fresh_model(model: Any, device: str | None, trust_remote_code: bool) -> LoadedLM:
    """A private copy to train: the caller's model (often a shared, cached one) is never modified."""
    if isinstance(model, LoadedLM):
        m = copy.deepcopy(model.model).float()
        return LoadedLM(m, model.tokenizer, model.name, model.fingerprint, model.device, "float32")
    return load_causal_lm(model, device=device or "auto", dtype="float32", trust_remote_code=trust_remote_code)


def _examples(lm: LoadedLM, data: Dataset, cfg: TrainConfig, positions: list | None = None):
    """(template, items (token ids, target positions), skipped counts); ``positions`` gets each item's
    position in ``data``."""
    template = cfg.template
    if template == "auto":
        template = "chat" if getattr(lm.tokenizer, "chat_template", None) else "alpaca"
    reqs = [render_conversation(e, template, lm.tokenizer, cfg.turns) for e in data.examples]
    prep = tokenize_targets(lm.tokenizer, reqs, cfg.max_length)
    eos = lm.tokenizer.eos_token_id
    items, skipped = [], {}
    for k, (p, r) in enumerate(zip(prep, reqs)):
        if len(p.pos) == 0:
            skipped["no_target_within_max_length"] = skipped.get("no_target_within_max_length", 0) + 1
            continue
        ids, pos = p.ids, p.pos
        # Teach the model to stop: EOS after the response, when the template did not write one.
        if eos is not None and r.add_special_tokens and ids[-1] != eos and len(ids) < cfg.max_length:
            ids = np.append(ids, eos)
            pos = np.append(pos, len(ids) - 1)
        if p.truncated:
            skipped["truncated_response_kept"] = skipped.get("truncated_response_kept", 0) + 1
        items.append((ids, pos))
        if positions is not None:
            positions.append(k)
    return template, items, skipped


def _micro_batches(items, cfg: TrainConfig, rng: np.random.Generator | None) -> list[list[int]]:
    order = sorted(range(len(items)), key=lambda i: -len(items[i][0]))
    out, cur, cur_len = [], [], 0
    for i in order:
        L = len(items[i][0])
        # at most a step's worth of examples, so a step overshoots batch_size by less than one micro-batch
        if cur and ((len(cur) + 1) * max(cur_len, L) > cfg.micro_batch_tokens or len(cur) >= cfg.batch_size):
            out.append(cur)
            cur = []
        cur_len = L if not cur else max(cur_len, L)
        cur.append(i)
    if cur:
        out.append(cur)
    if rng is not None:
        rng.shuffle(out)
    return out


def _sampled_steps(sampler: Sampler, position: list[int], items, cfg: TrainConfig):
    """The sampler's steps as the engine's: each step's examples in length-packed micro-batches (no
    shuffle: a step's gradient does not depend on their order).  Asked lazily, after the previous
    step's feedback."""
    item_of = {p: i for i, p in enumerate(position)}
    one_step = dataclasses.replace(cfg, batch_size=10 ** 9)    # the token budget alone cuts micro-batches
    while True:
        chosen = sampler.next_step()
        if chosen is None or len(chosen) == 0:
            return
        bad = [int(j) for j in chosen if int(j) not in item_of]
        if bad:
            raise TunesiftError(f"the sampler chose example(s) {bad[:5]} with no target token within "
                                f"max_length={cfg.max_length} (or outside the data)")
        sub = [items[item_of[int(j)]] for j in chosen]
        order = [item_of[int(j)] for j in chosen]
        yield [[order[k] for k in mb] for mb in _micro_batches(sub, one_step, None)]


def _pack(items, max_length: int):
    """Concatenate examples (in their given order) into rows of at most ``max_length`` tokens."""
    rows, ids, pos = [], [], []
    for a, p in items:
        if ids and len(ids) + len(a) > max_length:
            rows.append((np.asarray(ids), np.asarray(pos)))
            ids, pos = [], []
        pos.extend((p + len(ids)).tolist())
        ids.extend(a.tolist())
    if ids:
        rows.append((np.asarray(ids), np.asarray(pos)))
    return rows


def step_weights(sizes: list[int], cfg: TrainConfig, rng: np.random.Generator) -> np.ndarray:
    """Each example's per-token loss weight in a step of examples with ``sizes`` target tokens, so
    that the weighted token sum is the step's loss under ``cfg.loss_weighting``."""
    n = len(sizes)
    sizes = np.asarray(sizes, dtype=np.float64)
    if cfg.loss_weighting == "token":
        return np.full(n, 1.0 / sizes.sum())
    g = 1 if cfg.loss_weighting == "example" else cfg.loss_group_size
    order = rng.permutation(n) if g > 1 else np.arange(n)
    groups = [order[a:a + g] for a in range(0, n, g)]
    w = np.empty(n)
    for grp in groups:
        w[grp] = 1.0 / (len(groups) * sizes[grp].sum())
    return w


def _loss_sum(net, ids, labels, fast: bool, weight=None, row_means: list | None = None):
    """Next-token cross-entropy over the labelled positions, summed with each row's ``weight`` (one
    per row; None: 1).  ``fast``: the LM head only at those positions.  Full logits are (tokens x vocab) floats with several copies alive through
    backward; on 64 examples at 4,096-token micro-batches the head at targets alone took the 135M
    default's peak from 17.5 to 15.0 GB and its time from 110 to 92 s (measured).
    ``row_means``: each row's mean target-token loss is appended to it (detached)."""
    import torch
    F = torch.nn.functional
    if not fast:
        logits = net(input_ids=ids, use_cache=False).logits
        ce = F.cross_entropy(logits[:, :-1].float().reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                             ignore_index=-100, reduction="none").reshape(labels.shape[0], -1)
        if row_means is not None:
            n = (labels[:, 1:] != -100).sum(1).clamp(min=1)
            row_means.extend((ce.detach().sum(1) / n).tolist())
        return ce.sum() if weight is None else (ce.sum(1) * weight).sum()
    body, head, cap = body_and_head(net)
    h = body(input_ids=ids, use_cache=False)[0]
    rows, cols = (labels[:, 1:] != -100).nonzero(as_tuple=True)   # position t predicts token t + 1
    ce = F.cross_entropy(head_logits(head, h[rows, cols], cap), labels[rows, cols + 1], reduction="none")
    if row_means is not None:
        B = labels.shape[0]
        sums = torch.zeros(B, device=ce.device).index_add_(0, rows, ce.detach().float())
        row_means.extend((sums / torch.bincount(rows, minlength=B).clamp(min=1)).tolist())
    return ce.sum() if weight is None else (ce * weight[rows]).sum()


def training_fingerprint(lm: LoadedLM, data: Dataset, cfg: TrainConfig) -> str:
    # Keyed by what produced it (base model, data, config): a tensor hash of a large model samples a
    # few tensors only, which a LoRA merge may leave unchanged, and scores must never be shared.
    # The decay settings apply to the exponential schedule only: left out otherwise, so fingerprints
    # (and caches) of runs made before they existed stay valid.
    c = asdict(cfg)
    if cfg.lr_schedule != "exponential":
        c.pop("lr_decay"), c.pop("lr_decay_steps")
    return "sft-" + fingerprint(lm.fingerprint, data.fingerprint, c, length=24)


def _trainable(net, cfg: TrainConfig):
    """The network to train: LoRA adapters on ``net`` (PEFT), or ``net`` itself with every weight trainable."""
    if cfg.method == "full":
        net.requires_grad_(True)   # a model that came out of an earlier fine-tune is frozen
    if cfg.method == "lora":
        from peft import LoraConfig, get_peft_model   # heavy: loaded when a LoRA run starts
        targets = cfg.lora_targets if cfg.lora_targets == "all-linear" else [t.strip() for t in cfg.lora_targets.split(",")]
        net = get_peft_model(net, LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                                             target_modules=targets, task_type="CAUSAL_LM"))
    net.train()
    return net


def _plan_steps(items, cfg: TrainConfig, rng: np.random.Generator):
    """Each epoch's examples in micro-batches, grouped into steps of ~batch_size examples: (the steps,
    the epoch (1, 2, ...) of each step, {index of an epoch's last step: that whole epoch's number})."""
    epochs_full, frac = int(cfg.epochs), cfg.epochs - int(cfg.epochs)
    plan: list[list[list[int]]] = []
    epoch_ends: dict[int, int] = {}
    step_epoch: list[int] = []
    for ep in range(math.ceil(cfg.epochs)):
        mbs = _micro_batches(items, cfg, rng)
        if ep == epochs_full and frac > 0:
            mbs = mbs[:max(1, round(frac * len(mbs)))]
        step, n = [], 0
        for mb in mbs:
            step.append(mb)
            n += len(mb)
            if n >= cfg.batch_size:
                plan.append(step)
                step, n = [], 0
        if step:
            plan.append(step)
        if ep < epochs_full and plan:
            epoch_ends[len(plan) - 1] = ep + 1
        step_epoch += [ep + 1] * (len(plan) - len(step_epoch))
    return plan, step_epoch, epoch_ends


def _step_loss(net, items, step, w: dict, pad: int, dev, use_bf16: bool, fast_box: list,
               losses: dict | None = None) -> float:
    """Forward and backward over a step's micro-batches; returns the step's (weighted) loss.
    ``losses``: filled with each item's mean target-token loss (for a sampler)."""
    import torch
    loss_sum = 0.0
    for mb in step:
        B, L = len(mb), max(len(items[i][0]) for i in mb)
        ids = torch.full((B, L), pad, dtype=torch.long)
        labels = torch.full((B, L), -100, dtype=torch.long)
        for r, i in enumerate(mb):
            a, p = items[i]
            ids[r, :len(a)] = torch.from_numpy(a)
            labels[r, p] = torch.from_numpy(a[p])
        ids, labels = ids.to(dev), labels.to(dev)
        if fast_box[0] is None:
            fast_box[0] = head_reproduces_logits(net, ids[:1, :64])
        weight = torch.tensor([w[i] for i in mb], dtype=torch.float32, device=dev)
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=use_bf16):
            # per-token losses weighted so that the step's loss is an exact mean (``step_weights``)
            means = [] if losses is not None else None
            loss = _loss_sum(net, ids, labels, fast_box[0], weight, means)
        loss.backward()
        if losses is not None:
            losses.update(zip(mb, means))
        loss_sum += float(loss.detach())
    return loss_sum


def _finish(net, lm: LoadedLM, cfg: TrainConfig, output_dir: str | Path | None):
    """The trained network as a plain, frozen model (LoRA merged), saved under ``output_dir`` when set."""
    net.eval()
    if cfg.method == "lora":
        if output_dir is not None:
            net.save_pretrained(str(Path(output_dir) / "adapter"))
        net = net.merge_and_unload()
    elif output_dir is not None:
        net.save_pretrained(str(Path(output_dir) / "model"))
        lm.tokenizer.save_pretrained(str(Path(output_dir) / "model"))
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def _write_log(out: Path, res: TrainResult, template: str, base_name: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "training_log.json") as tmp:
        Path(tmp).write_text(json.dumps({"summary": res.summary(), "template": template, "base_model": base_name,
                                         "steps": res.log}, indent=1, default=str))
    with atomic_path(out / "loss.svg") as tmp:
        Path(tmp).write_text(line_chart({"training loss": [(r["step"], r["loss"]) for r in res.log]},
                                        title="Training loss", xlabel="step", ylabel="loss"))


def finetune(model: Any, data: Dataset, config: TrainConfig | None = None, *, output_dir: str | Path | None = None,
             device: str | None = None, trust_remote_code: bool = False, progress: bool = True,
             on_epoch: Callable[[EpochSnapshot], None] | None = None,
             sampler: Sampler | None = None) -> TrainResult:
    """Fine-tune ``model`` (a ``LoadedLM``, a path, a hub id, or None for the default model) on ``data``.

    ``on_epoch(snapshot)`` is called before the first step (epoch 0) and after each whole epoch with an
    ``EpochSnapshot``: methods that measure training dynamics (learning percentage, LESS) score the
    model there.  It must not change the model or the optimizer; training resumes after it.
    ``sampler``: it chooses every step's examples instead of the epochs (``cfg.epochs`` is then unused;
    only ``on_epoch``'s epoch 0 is called); see ``Sampler``."""
    import torch   # heavy: torch and transformers load when training starts
    from transformers import get_scheduler

    cfg = config or TrainConfig()
    cfg.validate()
    if len(data) == 0:
        raise TunesiftError("nothing to train on: the selection is empty")
    t0 = time.perf_counter()
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)     # one stream, drawn in order: packing, micro-batches, step weights
    lm = _fresh_model(model, device, trust_remote_code)
    dev = next(lm.model.parameters()).device
    if cfg.micro_batch_tokens is None:     # resolved here, so the run's summary records the value used
        cfg = dataclasses.replace(cfg, micro_batch_tokens=4096 if dev.type == "cuda" else 1024)
    position: list[int] = []        # each item's position in ``data`` (a sampler speaks in those)
    template, items, skipped = _examples(lm, data, cfg, position)
    if not items:
        raise TunesiftError(f"no example has a response token within max_length={cfg.max_length}")
    if sampler is not None and cfg.packing:
        raise TunesiftError("a sampler names examples, packing merges them into rows: use one or the other")
    if cfg.packing:
        perm = rng.permutation(len(items))
        items = _pack([items[i] for i in perm], cfg.max_length)
    net = _trainable(lm.model, cfg)
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if sampler is None:
        plan, step_epoch, epoch_ends = _plan_steps(items, cfg, rng)
        total = len(plan)
    else:
        total, epoch_ends = sampler.total_steps, {}
        if total is None and cfg.lr_schedule != "exponential":
            raise TunesiftError(f"lr_schedule={cfg.lr_schedule!r} decays to 0 at a last step: the sampler must "
                                "give total_steps, or use lr_schedule='exponential'")
        trainable = np.zeros(len(data), dtype=bool)
        trainable[position] = True
        plan, step_epoch = _sampled_steps(sampler, position, items, cfg), None
        sampler.start(trainable, net)
    if cfg.lr_schedule == "exponential":
        # LEAD's LambdaLR (run_lead.py): no warm-up, a constant decay every lr_decay_steps steps
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: cfg.lr_decay ** (t // cfg.lr_decay_steps))
    else:
        # The Hugging Face Trainer's schedule (the official recipes' trainer): linear warm-up from 0 over
        # int(warmup_ratio * steps) steps, then linear or cosine decay to 0.
        sched = get_scheduler(cfg.lr_schedule, opt, num_warmup_steps=int(cfg.warmup_ratio * total),
                              num_training_steps=total)

    use_bf16 = cfg.bf16 if cfg.bf16 is not None else (dev.type == "cuda" and torch.cuda.is_bf16_supported())
    pad = pad_id_of(lm.tokenizer)
    history: list[dict] = []
    n_tokens = 0
    fast_box = [None]     # whether the LM head alone reproduces the logits: found on the first batch

    def at_epoch(epoch: int) -> None:
        if on_epoch is None:
            return
        net.eval()
        snap = LoadedLM(net, lm.tokenizer, f"{lm.name}+{cfg.method}@epoch{epoch}",
                        f"{training_fingerprint(lm, data, cfg)}-epoch{epoch}", str(dev), "float32")
        lrs = [r["lr"] for r in history if r["epoch"] == epoch]
        on_epoch(EpochSnapshot(epoch, snap, opt, float(np.mean(lrs)) if lrs else None))
        net.train()

    trained: set[int] = set()      # the items a sampler named
    chosen = Hasher()              # and its steps, in order: part of the trained model's fingerprint
    at_epoch(0)
    # a bar on a terminal, a line every ~30 s in a log (a Slurm job's fine-tune is not silent)
    bar = progress_bar(total=total, desc="fine-tuning", unit="step", disable=not progress, dynamic_ncols=True)
    try:
        for s, step in enumerate(plan):
            lr = opt.param_groups[0]["lr"]
            step_tokens = sum(len(items[i][1]) for mb in step for i in mb)
            members = [i for mb in step for i in mb]
            w = dict(zip(members, step_weights([len(items[i][1]) for i in members], cfg, rng)))
            losses = {} if sampler is not None else None
            loss_sum = _step_loss(net, items, step, w, pad, dev, use_bf16, fast_box, losses)
            gnorm = float(torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm))
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            n_tokens += step_tokens
            history.append({"step": s + 1, "epoch": step_epoch[s] if step_epoch else 0, "loss": loss_sum, "lr": lr,
                            "grad_norm": gnorm, "tokens": step_tokens, "seconds": time.perf_counter() - t0})
            if sampler is not None:
                trained.update(members)
                chosen.update(sorted(position[i] for i in members))
                sampler.feedback(StepFeedback(s + 1, np.asarray([position[i] for i in members], dtype=np.int64),
                                              np.asarray([losses[i] for i in members]), lr, net))
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum:.3f}", refresh=False)
            if s in epoch_ends:
                at_epoch(epoch_ends[s])
    finally:
        bar.close()

    net = _finish(net, lm, cfg, output_dir)
    examples = len(trained) if sampler is not None else len(data) - sum(
        v for k, v in skipped.items() if k != "truncated_response_kept")
    fp = training_fingerprint(lm, data, cfg) + (f"-sampled-{chosen.hexdigest(16)}" if sampler is not None else "")
    model_out = LoadedLM(net, lm.tokenizer, f"{lm.name}+{cfg.method}", fp, str(dev), "float32")
    res = TrainResult(model_out, cfg, history, examples=examples,
                      target_tokens=n_tokens, skipped=skipped, seconds=time.perf_counter() - t0,
                      output_dir=str(output_dir) if output_dir is not None else None)
    if output_dir is not None:
        _write_log(Path(output_dir), res, template, lm.name)
    return res
