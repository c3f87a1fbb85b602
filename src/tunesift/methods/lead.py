"""LEAD: selection inside the training loop, by a bandit over IFD clusters and a per-example utility.

Lin et al., "LEAD: Iterative Data Selection for Efficient LLM Instruction Tuning", arXiv 2505.07437
(PVLDB 2025).  Official code: github.com/HKUSTDial/LEAD (e5ef7534; its README: "still under
construction"): ``scripts/run_{warmup_training,scoring,lead}.sh``, ``src/offline/{difficulty_score,
iu_score,clustering}.py``, ``src/online/{run_lead,exp3,utilityChange}.py``.

Offline (``score``):
1. Warm-up: LoRA on a random slice of the pool (README: 6k of ~600k, i.e. 1%; ``warmup_fraction``),
   r 32, alpha 16, dropout 0.1, q/k/v/o/gate/up/down, lr 2e-5 decayed x0.998 every 8 steps
   (``run_training.py:696``'s LambdaLR; the script's linear/warm-up flags are unused), 4 epochs, 16 per
   step, per-device batch 1 (each example's token mean, ``loss_weighting="example"``), no clipping.
2. Difficulty: IFD (Cherry's loss ratio, ``ifd``'s passes) under the warm-up model; undefined or > 1
   becomes 0, not dropped (``difficulty_score.py``).
3. Initial utility: each example's mean response loss under the base model (``iu_score.py``).
4. 1-D k-means on IFD, K = 7 (``clustering.py``); the task is the example's source dataset
   (``task_field``, ``dataset`` in LEAD's pool; absent: one task).

Online (``select``): one LoRA fine-tune (r 64, alpha 16, dropout 0.1, lr 2e-5 x0.995 every 8 steps,
16 per step) whose examples the method names round by round through the engine's ``Sampler`` hook:
1. EXP3 over clusters (``exp3.py``): p_k = (1 - g) w_k / sum w + g / K, g = 0.1; draw a cluster c.
2. For each task in c, the candidates used fewer than ``use_cap`` (4) times, ranked by utility U,
   highest first; take floor(``sample_rate`` (0.015) x candidates).  The round trains them in order.
3. Each trained example's utility, from its own training loss l (no extra pass):
   U_hat = l - lr x dL_c; first visit of c: dL_c = theta_prev; a revisit: dL_c = theta_f b^2 +
   theta_p (1 - b)^2 + 2 b (1 - b) sqrt(theta_f theta_p) cos(phi), with b = (theta_p - a) / (theta_f +
   theta_p - 2a), a = sqrt(theta_f theta_p) cos(phi): the smallest combination of the update at c's
   first visit (theta_f) and the previous round's (theta_p), phi the angle between the two rounds'
   changes of the last layer's LoRA weights (``utilityChange.py``).  Then exponential smoothing:
   U = s U_old + (1 - s) U_hat, s = ``smoothing`` (0.1).
4. After the round: theta = the round's mean approximate loss minus its mean actual loss; the EXP3
   reward, the round's loss drop, normalised to [-1, 1] by the reward history's min and max; w_c x=
   exp((g / K) r / p_c).
5. Stop once the examples used reach the budget (unique examples, LEAD's ``selected_top_number``).

Selection: the examples used, in order of first use, cut at the budget.  Scores: each example's final
utility (never-used examples keep their initial one); ``first_round`` and ``uses`` say when and how often.

Reconstructions (the release would not run; each a ``Divergence`` row): the bandit's reward
(``run_lead.py:990`` sets it to 0 and never adds to it) is the round's loss drop: the mean, over its
examples, of the loss they had when last measured (the base model's before their first use) minus
their loss now.  theta's "actual" loss (``epoch_loss``, undefined at ``run_lead.py:1118``) is the
loss measured in the round and the "approximate" one the utility each example carried into it (read
literally, with the round's own losses on both sides, theta is -lr x dL and the term stays 0 from
its start at 0).  cos(phi) is taken between the two change vectors (the code takes it between two
L2 norms, always 1, and then the combination is exactly 0) and b is clipped to [0, 1] (a convex
combination); ``cosine="code"`` restores both.  The smoothing the paper describes is missing from the
code (it overwrites U; ``smoothing=0``).  EXP3's normalisation divides by zero when the history's
rewards are equal (here: 0).  A cluster with no candidate left is not drawn (the code would train on
an empty round and divide by zero); at least one example per (cluster, task) with candidates is taken
(floor(0.015 x n) is 0 below 67 candidates); training continues until the budget (the code stops
after ``num_train_epochs`` = 20 rounds: ``max_rounds``).  One template for every stage (the code uses
ChatML for IFD, Tulu's tags for the initial utility and role-less text for training).  Draws use the
run's seed (the code's ``np.random.choice`` is unseeded); with a cluster left out, the draw and the
update use the probabilities renormalised over the rest.  Only the paper's abstract was at hand: the
smoothing's weights (history 0.1, from ``--b 0.1``) follow the code's variable, not the paper's
equation.  Scale: lr x dL is lr (2e-5) times a loss-sized theta, so at LEAD's learning rate the
ranking is in effect by the smoothed training loss, as in the code.
"""
from __future__ import annotations

import copy
import logging
import math
import re
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset
from ..selectors import Budget
from ..selectors.cluster import kmeans
from ..train import Sampler, StepFeedback, TrainConfig, finetune
from ._influence import renderings
from ._passes import conditioned, direct, resolve_template
from .base import Context, Method, register
from .faithfulness import Divergence
from .params import Positive, Range, Template
from .ifd import ifd_from, same_prefix_caps

log = logging.getLogger("tunesift")

LEAD_TARGETS = "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"


@dataclass
class LEADConfig:
    template: Template = "auto"       # every stage's prompt (the code: three different ones)
    max_length: Annotated[int, Range(8)] = 1024   # the code: per source, 512 (Alpaca) to 3,080 (ShareGPT)
    task_field: str | None = "dataset"   # the record field naming its source task; absent: one task
    clusters: Positive = 7            # K of the 1-D k-means on IFD
    # warm-up (run_warmup_training.sh, run_training.py)
    warmup_fraction: Annotated[float, Range(0, 1, lo_open=True)] = 0.01   # README: 6k random examples of ~600k
    warmup_epochs: Annotated[float, Range(0, lo_open=True)] = 4.0
    warmup_lora_r: Positive = 32
    warmup_lr_decay: Annotated[float, Range(0, 1, lo_open=True)] = 0.998
    # the online fine-tune (run_lead.sh)
    lora_r: Positive = 64
    lora_alpha: Positive = 16
    lora_dropout: Annotated[float, Range(0, 1, hi_open=True)] = 0.1
    lora_targets: str = LEAD_TARGETS
    learning_rate: Annotated[float, Range(0, lo_open=True)] = 2e-5
    lr_decay: Annotated[float, Range(0, 1, lo_open=True)] = 0.995    # lr x lr_decay ** (step // lr_decay_steps)
    lr_decay_steps: Positive = 8
    batch_size: Positive = 16         # 2 GPUs x 1 per device x 8 accumulation
    # selection
    sample_rate: Annotated[float, Range(0, 1, lo_open=True)] = 0.015   # of each (cluster, task)'s candidates per round
    use_cap: Positive = 4             # an example is used at most this many times
    gamma: Annotated[float, Range(0, 1, lo_open=True)] = 0.1    # EXP3 exploration (the scripts' --beta)
    smoothing: Annotated[float, Range(0, 1, hi_open=True)] = 0.1   # weight of the old utility (--b); 0: the code's overwrite
    cosine: Literal["vectors", "code"] = "vectors"   # vectors (the paper) | code (cosine of two norms, b unclipped)
    max_rounds: Positive | None = None   # None: until the budget (the code: num_train_epochs = 20)


class EXP3:
    """``exp3.py``'s EXP3: mixed probabilities, rewards normalised to [-1, 1] by the history's range
    (raw while it has fewer than two), the chosen arm's weight times exp((g / K) r / p).  ``allowed``
    draws among some arms only (renormalised; the update divides by that probability)."""

    def __init__(self, k: int, gamma: float, rng: np.random.Generator):
        self.k, self.gamma, self.rng = k, gamma, rng
        self.weights = np.ones(k)
        self.history: list[float] = []

    def probabilities(self, allowed: np.ndarray | None = None) -> np.ndarray:
        p = (1 - self.gamma) * self.weights / self.weights.sum() + self.gamma / self.k
        if allowed is not None:
            p = np.where(allowed, p, 0.0)
            p = p / p.sum()
        return p

    def draw(self, allowed: np.ndarray | None = None) -> tuple[int, float]:
        p = self.probabilities(allowed)
        arm = int(self.rng.choice(self.k, p=p))
        return arm, float(p[arm])

    def normalised(self, reward: float) -> float:
        if len(self.history) < 2:
            return reward
        lo, hi = min(self.history), max(self.history)
        return 2 * (reward - lo) / (hi - lo) - 1 if hi > lo else 0.0   # the code divides by zero here

    def update(self, arm: int, reward: float, p: float) -> float:
        self.history.append(reward)
        r = self.normalised(reward)
        self.weights[arm] *= math.exp(self.gamma / self.k * r / p)
        return r


def loss_change(theta_first: float | None, theta_prev: float, cos: float, clip: bool) -> tuple[float, float]:
    """(dL, b): theta_prev on a cluster's first visit, else the min-norm combination of the two updates."""
    if theta_first is None:
        return theta_prev, 1.0
    root = math.sqrt(max(theta_first * theta_prev, 0.0))     # the code's math.sqrt fails on a negative product
    a = root * cos
    den = theta_first + theta_prev - 2 * a
    b = (theta_prev - a) / den if den != 0 else 0.0
    if clip:
        b = min(max(b, 0.0), 1.0)
    return theta_first * b * b + theta_prev * (1 - b) ** 2 + 2 * b * (1 - b) * root * cos, b


def last_layer_vector(net) -> np.ndarray:
    """The trainable (LoRA) weights of the highest-numbered layer, flattened (``get_model_params_vector``);
    every trainable weight when no name carries a layer number."""
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    layer = {n: int(m[-1]) for n, _ in named if (m := re.findall(r"\.(\d+)\.", n))}
    top = max(layer.values()) if layer else None
    parts = [p.detach().float().reshape(-1).cpu().numpy() for n, p in named if top is None or layer.get(n) == top]
    return np.concatenate(parts) if parts else np.zeros(0)


def vector_cosine(u: np.ndarray, v: np.ndarray) -> float:
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if nu < 1e-10 or nv < 1e-10:
        return 0.0
    return float(np.clip(np.dot(u, v) / (nu * nv), -1.0, 1.0))


def scalar_cosine(u: np.ndarray, v: np.ndarray) -> float:
    """The code's cosine: between the two changes' L2 norms (scalars), so 1 unless one is ~0."""
    return vector_cosine(np.array([np.linalg.norm(u)]), np.array([np.linalg.norm(v)]))


class LEADSampler(Sampler):
    """The online stage as the fine-tuning engine's sampler: rounds of (bandit draw, per-task top
    utility, train), utilities updated from each step's losses, until ``budget`` unique examples."""

    def __init__(self, c: LEADConfig, clusters: np.ndarray, tasks: np.ndarray, utility: np.ndarray,
                 eligible: np.ndarray, budget: int, rng: np.random.Generator):
        self.c, self.cl, self.tasks, self.budget = c, clusters, tasks, budget
        self.U = utility.astype(np.float64).copy()
        self.last_loss = utility.astype(np.float64).copy()     # each example's last measured loss
        self.eligible = eligible
        self.uses = np.zeros(len(utility), dtype=np.int64)
        self.first_round = np.full(len(utility), -1, dtype=np.int64)
        self.order: list[int] = []                               # unique examples, in order of first use
        self.k = int(clusters[eligible].max()) + 1 if eligible.any() else 1
        self.bandit = EXP3(self.k, c.gamma, rng)
        self.theta_prev, self.theta_first, self.change_first = 0.0, {}, {}
        self.change_prev: np.ndarray | None = None
        self.rounds: list[dict] = []
        self.queue: list[np.ndarray] = []
        self.cur: dict | None = None
        self.net = None

    def start(self, trainable: np.ndarray, model) -> None:
        self.eligible = self.eligible & trainable
        self.net = model

    def candidates(self, c: int) -> np.ndarray:
        return self.eligible & (self.cl == c) & (self.uses < self.c.use_cap)

    def pick(self, c: int) -> np.ndarray:
        """Per task in c (in task order): the top floor(sample_rate x candidates) by utility (at least 1)."""
        cand = self.candidates(c)
        out = []
        for t in np.unique(self.tasks[cand]):
            idx = np.flatnonzero(cand & (self.tasks == t))
            n = max(1, int(len(idx) * self.c.sample_rate))
            out.append(idx[np.lexsort((idx, -self.U[idx]))][:n])     # highest utility, ties to the lower index
        return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)

    def next_step(self):
        if self.queue:
            return self.queue.pop(0)
        if self.cur is not None:
            self.end_round()
        if len(self.order) >= self.budget or (self.c.max_rounds and len(self.rounds) >= self.c.max_rounds):
            return None
        allowed = np.array([self.candidates(k).any() for k in range(self.k)])
        if not allowed.any():
            return None                    # every example used use_cap times
        arm, p = self.bandit.draw(allowed)
        chosen = self.pick(arm)
        r = len(self.rounds)
        for i in chosen:
            if self.uses[i] == 0:
                self.order.append(int(i))
                self.first_round[i] = r
        self.uses[chosen] += 1
        # the loss-change estimate for this round (run_lead.py:912-933), fixed before it trains
        if arm in self.theta_first and self.change_prev is not None:
            cos_of = vector_cosine if self.c.cosine == "vectors" else scalar_cosine
            cos = cos_of(self.change_first[arm], self.change_prev)
            dL, beta = loss_change(self.theta_first[arm], self.theta_prev, cos, self.c.cosine == "vectors")
        else:
            cos, (dL, beta) = None, loss_change(None, self.theta_prev, 1.0, False)
        self.cur = {"round": r, "cluster": arm, "p": p, "examples": chosen, "approx_in": self.U[chosen].copy(),
                    "last_in": self.last_loss[chosen].copy(), "losses": {}, "dL": dL, "beta": beta, "cos": cos,
                    "params": last_layer_vector(self.net) if self.net is not None else None}
        bs = self.c.batch_size
        self.queue = [chosen[a:a + bs] for a in range(0, len(chosen), bs)]
        return self.queue.pop(0)

    def feedback(self, fb: StepFeedback) -> None:
        s = self.c.smoothing
        for i, loss in zip(fb.indices, fb.losses):
            approx = float(loss) - fb.lr * self.cur["dL"]
            self.U[i] = s * self.U[i] + (1 - s) * approx
            self.last_loss[i] = float(loss)
            self.cur["losses"][int(i)] = float(loss)

    def end_round(self) -> None:
        cur, self.cur = self.cur, None
        ex = cur["examples"]
        actual = np.array([cur["losses"][int(i)] for i in ex])
        theta = float(np.mean(cur["approx_in"]) - np.mean(actual))
        reward = float(np.mean(cur["last_in"] - actual))
        change = (last_layer_vector(self.net) - cur["params"]) if cur["params"] is not None else np.zeros(0)
        arm = cur["cluster"]
        if arm not in self.theta_first:
            self.theta_first[arm], self.change_first[arm] = theta, change
        self.theta_prev, self.change_prev = theta, change
        r_norm = self.bandit.update(arm, reward, cur["p"])
        self.rounds.append({"round": cur["round"], "cluster": int(arm), "p": cur["p"], "examples": int(len(ex)),
                            "used": int(len(self.order)), "reward": reward, "reward_normalised": r_norm,
                            "theta": theta, "dL": cur["dL"], "beta": cur["beta"], "cos": cur["cos"],
                            "weights": self.bandit.weights.tolist()})


def tasks_of(data: Dataset, field: str | None) -> np.ndarray:
    """Each example's task id: its ``field`` value's rank among the sorted values (``clustering.py``);
    examples without the field share one task."""
    names = [str((e.raw or {}).get(field, "")) if field else "" for e in data.examples]
    _, ids = np.unique(np.asarray(names, dtype=object).astype(str), return_inverse=True)
    return ids.astype(np.int64)


@register
class LEAD(Method):
    name = "lead"
    Config = LEADConfig
    paper = "LEAD: Iterative Data Selection for Efficient LLM Instruction Tuning"
    venue = "arXiv 2025 (PVLDB)"
    code = "https://github.com/HKUSTDial/LEAD (incomplete: reward, theta and smoothing reconstructed)"
    needs = ("causal_lm", "fine-tuning")
    test_params = dict(lora_targets="all-linear", warmup_fraction=0.5, learning_rate=1e-2, batch_size=2)
    default_budget = "2.5%"
    summary = ("LoRA warm-up; IFD under it, k-means (K=7) on IFD; one LoRA fine-tune whose rounds an EXP3 bandit "
               "over clusters feeds with each task's highest-utility examples (loss minus a gradient-approximated "
               "change, smoothed); stop at the budget of unique examples.")
    cost = ("1 LM pass per example (base loss), a LoRA warm-up on 1%, 2 LM passes per example (IFD), then one "
            "LoRA fine-tune on the selection's rounds (no further passes)")
    faithfulness = (
        Divergence(topic="bandit reward",
                   official="src/online/run_lead.py:990,1137: current_reward = 0, never incremented: every reward is 0",
                   paper="the cluster's contribution to lowering the loss",
                   default="ours",
                   parameter="reconstructed: the round's mean loss drop (each example's last measured loss, the "
                             "base model's at first, minus its loss in the round); no other"),
        Divergence(topic="loss-change statistic theta",
                   official="src/online/run_lead.py:1118-1127: theta = mean approximate loss - epoch_loss / n, "
                            "epoch_loss undefined; previous_approx_avg_loss never reset between rounds",
                   default="ours",
                   parameter="reconstructed: the mean utility the round's examples carried in (approximate) minus "
                             "their mean loss in the round (actual), per round; no other"),
        Divergence(topic="angle between updates",
                   official="src/online/run_lead.py:917 calculate_cosine_similarity of two scalar L2 norms (always 1, "
                            "so the combination is 0); b not clipped",
                   paper="cosine between the two parameter-update vectors; a convex combination",
                   default="paper", parameter="cosine=code"),
        Divergence(topic="utility smoothing",
                   official="src/online/run_lead.py:1026,1041: acc_loss overwritten with the new estimate; "
                            "gamma = 1 - b computed (:849) and unused",
                   paper="exponential smoothing of historical loss signals, b = 0.1 (run_lead.sh --b 0.1)",
                   default="paper", parameter="smoothing=0 (weight of the old utility; 0.1 by default, reconstructed)"),
        Divergence(topic="empty rounds and small pools",
                   official="src/online/run_lead.py:953: int(n x 0.015) examples per (cluster, task), 0 below 67 "
                            "candidates; an exhausted cluster is still drawn; an empty round divides by zero (:1118); "
                            "exp3.py:29 divides by zero when the reward history is flat",
                   default="ours",
                   parameter="at least 1 per (cluster, task) with candidates; exhausted clusters not drawn; a flat "
                             "history normalises to 0"),
        Divergence(topic="rounds",
                   official="scripts/run_lead.sh: --num_train_epochs 20 rounds, stop after the round that reaches "
                            "--selected_top_number 15000 unique examples",
                   default="ours", parameter="max_rounds=20 (default: until the budget; the selection is cut at it)"),
        Divergence(topic="warm-up size",
                   official="README.md Step 1: 6k random examples of the ~600k pool",
                   default="ours", parameter="warmup_fraction (1% by default: 6k of 600k)"),
        Divergence(topic="templates and lengths",
                   official="difficulty_score.py: ChatML, max length per source (512-3,080); iu_score.py: Tulu tags, "
                            "4,096; template.py: role-less text with EOS (training)",
                   default="ours", parameter="one template= and max_length= for every stage"),
        Divergence(topic="random draws",
                   official="src/online/exp3.py:6 np.random.choice, unseeded; clustering.py KMeans random_state 42",
                   default="ours", parameter="the run's --seed for the bandit, the warm-up sample and k-means"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        c = self.config
        template = resolve_template(c.template, ctx)
        max_length = ctx.max_length or c.max_length
        self.data_, self.template_, self.max_length_ = data, template, max_length
        lm = ctx.causal_lm()
        # initial utility: the base model's mean loss over the trained tokens (response + EOS)
        base = ctx.engine(max_length).nll(renderings(data, ctx, template), desc=f"{self.name}: base-model loss")
        eligible = base.n_tokens > 0
        if not eligible.any():
            raise TunesiftError(f"lead: no example has a response token within max_length={max_length}")
        pool = np.flatnonzero(eligible)
        rng = np.random.default_rng(ctx.seed)
        warm = np.sort(rng.permutation(pool)[:max(1, round(c.warmup_fraction * len(pool)))])
        log.info("%s: LoRA warm-up on %d of %d examples (%g epochs)", self.name, len(warm), len(data), c.warmup_epochs)
        tr = finetune(lm, data.subset(warm.tolist()),
                      TrainConfig(method="lora", template=template, epochs=c.warmup_epochs, learning_rate=c.learning_rate,
                                  batch_size=c.batch_size, max_length=max_length, lr_schedule="exponential",
                                  lr_decay=c.warmup_lr_decay, lr_decay_steps=c.lr_decay_steps, max_grad_norm=1e9,
                                  lora_r=c.warmup_lora_r, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                                  lora_targets=c.lora_targets, turns=ctx.turns, loss_weighting="example", seed=ctx.seed),
                      progress=ctx.progress)
        sub = copy.copy(ctx)              # the same run settings with the warm-up model
        sub.lm, sub.engines, sub.embedder_obj, sub.owns_runner = tr.lm, {}, None, False
        cond = conditioned(data, sub, template, max_length, f"{self.name}: response | prompt (warm-up model)")
        dire = direct(data, sub, None, template, max_length, f"{self.name}: response alone (warm-up model)",
                      same_prefix_caps(cond))
        raw = ifd_from(cond.mean_nll, dire.mean_nll, "loss_ratio")
        ifd = np.where(np.isfinite(raw) & (raw <= 1), raw, 0.0)          # difficulty_score.py: invalid or > 1 -> 0
        labels = np.full(len(data), -1, dtype=np.int64)
        labels[pool], _ = kmeans(ifd[pool, None].astype(np.float32), c.clusters, seed=ctx.seed)
        return pd.DataFrame({
            "score": np.where(eligible, base.mean_nll, np.nan), "eligible": eligible,
            "reason": np.where(eligible, "", "no response tokens within max_length"),
            "initial_utility": base.mean_nll, "ifd": ifd, "ifd_raw": raw, "cluster": labels,
            "task": tasks_of(data, c.task_field), "warmup": np.isin(np.arange(len(data)), warm),
        })

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        c = self.config
        k = budget.count(len(table))
        if k is None:
            raise TunesiftError(f"{self.name} stops at a number of unique examples: give a count or a fraction, "
                                f"not {budget}")
        eligible = table["eligible"].to_numpy()
        k = min(k, int(eligible.sum()))
        sampler = LEADSampler(c, table["cluster"].to_numpy(), table["task"].to_numpy(),
                              table["initial_utility"].to_numpy(), eligible, k, np.random.default_rng(ctx.seed))
        if k > 0:
            log.info("%s: training while selecting %d of %d examples", self.name, k, len(table))
            tr = finetune(ctx.causal_lm(), self.data_,
                          TrainConfig(method="lora", template=self.template_, learning_rate=c.learning_rate,
                                      batch_size=c.batch_size, max_length=self.max_length_, lr_schedule="exponential",
                                      lr_decay=c.lr_decay, lr_decay_steps=c.lr_decay_steps, max_grad_norm=1e9,
                                      lora_r=c.lora_r, lora_alpha=c.lora_alpha, lora_dropout=c.lora_dropout,
                                      lora_targets=c.lora_targets, turns=ctx.turns, loss_weighting="example",
                                      seed=ctx.seed),
                          progress=ctx.progress, sampler=sampler)
            self.training_ = tr.summary()
        self.rounds_ = sampler.rounds
        table["score"] = np.where(eligible, sampler.U, np.nan)
        table["uses"] = sampler.uses
        table["first_round"] = sampler.first_round
        return np.asarray(sampler.order[:k], dtype=np.int64)
