"""IterSelectTune: learn which instructions the base model finds hard, over a few judged rounds.

Song, Liu, Zhu, Rao, "IterSelectTune: An Iterative Training Framework for Efficient Instruction-Tuning
Data Selection", arXiv 2410.13464, 2024.  No official code is public; this follows the method notes
(abstract and secondary summaries), with the parts they mark as recalled exposed as parameters.

Each round: draw a batch of unlabelled instructions spread over k-means clusters of their embeddings
(round 1 at random within clusters; later rounds the ones the classifier finds most likely hard);
the base model answers them; a judge compares its answer with the dataset's response and labels the
instruction "hard" when the base answer is worse; a classifier is refit on all labels so far.
Finally every example is scored alpha * P(hard | x) + (1 - alpha) * max cosine similarity to the
instructions labelled hard; the top 20% are kept.

Substitutions (documented, by name): the judge is a local one -- ``judge="reward"`` compares reward
model scores r(x, y_ref) > r(x, y_base) (the notes' suggested small-scale judge), ``judge="rating"``
(default offline) compares the run's LM's expected ratings of the two answers; the classifier is an
L2-regularised logistic regression on the frozen sentence embeddings instead of a fine-tuned
BERT-base.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from ..data.errors import TunesiftError
from ..data.io import Dataset
from ..models.generate import prompts_of
from ..signals.generation import Generator
from ._judging import PairJudge, question_text
from .base import Context, Method, register
from .params import Positive, Range

log = logging.getLogger("tunesift")


@dataclass
class IterSelectTuneConfig:
    rounds: Positive = 3
    batch: Positive = 64                   # instructions judged per round
    alpha: Annotated[float, Range(0, 1)] = 0.5                # weight of the classifier probability vs similarity to the hard set
    judge: Literal["rating", "reward"] = "rating"   # rating (the run's LM) | reward (reward_model)
    reward_model: str | None = None
    n_clusters: int = 20
    max_new_tokens: int = 256
    l2: float = 1.0

    def validate(self) -> None:
        if self.judge == "reward" and not self.reward_model:
            raise TunesiftError("judge=reward needs reward_model")


def fit_logistic(X: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> np.ndarray:
    """L2-regularised logistic regression (penalty l2/2 |w|^2, none on the bias), scikit-learn's Newton
    solver to the optimum; returns weights with the bias last."""
    m = LogisticRegression(C=1 / l2 if l2 > 0 else np.inf, solver="newton-cholesky", tol=1e-10,
                           max_iter=max(iters, 100)).fit(np.asarray(X, np.float64), y)
    return np.append(m.coef_[0], m.intercept_[0])


def predict_logistic(w: np.ndarray, X: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-(X @ w[:-1] + w[-1])))


@register
class IterSelectTune(Method):
    name = "iterselecttune"
    cost = "per round: generation + 2 judge passes for a batch; 1 sentence embedding per example"
    Config = IterSelectTuneConfig
    paper = "IterSelectTune: An Iterative Training Framework for Efficient Instruction-Tuning Data Selection"
    venue = "arXiv 2024"
    code = ""
    needs = ("causal_lm", "embedder", "judge")
    test_params = dict(rounds=2, batch=3, n_clusters=2, max_new_tokens=4)
    stages = 2
    summary = "Judge labels hard instructions in rounds; a classifier + similarity to the hard set score the pool; top 20%."
    default_budget = "20%"

    def _judge_scores(self, ctx: Context, questions: list[str], answers: list[str]) -> np.ndarray:
        return PairJudge(self.config.reward_model if self.config.judge == "reward" else None)(ctx, questions, answers)

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        cfg = self.config
        rng = np.random.default_rng(ctx.seed)
        X = ctx.embed(data, "instruction_input")
        n = len(data)
        labels_c, _ = ctx.kmeans(X, min(cfg.n_clusters, n))
        lm = ctx.causal_lm()
        questions = [question_text(e) for e in data.examples]
        y = np.full(n, -1)                 # -1 unlabelled, 1 hard, 0 easy
        round_of = np.full(n, 0)
        w = None
        for r in range(cfg.rounds):
            free = np.flatnonzero(y < 0)
            if len(free) == 0:
                break
            prio = rng.random(n) if w is None else predict_logistic(w, X)
            batch = self._spread(free, labels_c, prio, min(cfg.batch, len(free)))
            prompts, _ = prompts_of(data.subset(batch.tolist()), "alpaca", None)
            base = Generator(lm, ctx.runner(), max_new_tokens=cfg.max_new_tokens)(prompts, progress=ctx.progress)
            ref = self._judge_scores(ctx, [questions[i] for i in batch], [data.examples[i].response for i in batch])
            gen = self._judge_scores(ctx, [questions[i] for i in batch], base)
            y[batch] = (gen < ref).astype(int)          # the base model's answer is worse: hard
            round_of[batch] = r + 1
            lab = np.flatnonzero(y >= 0)
            if len(set(y[lab])) == 2:
                w = fit_logistic(X[lab], y[lab].astype(float), cfg.l2)
            log.info("iterselecttune round %d: %d judged, %d hard so far", r + 1, len(batch), int((y == 1).sum()))
        hard = np.flatnonzero(y == 1)
        if w is not None:
            p = predict_logistic(w, X)
        else:   # one class only: the classifier cannot be fit; its probability is the observed rate
            p = np.full(n, float((y == 1).sum()) / max(int((y >= 0).sum()), 1))
        sim = (X @ X[hard].T).max(axis=1) if len(hard) else np.zeros(n)
        table = pd.DataFrame({"score": cfg.alpha * p + (1 - cfg.alpha) * sim, "p_hard": p, "sim_hard": sim,
                              "label": y, "round": round_of, "eligible": True, "reason": ""})
        return table

    @staticmethod
    def _spread(free: np.ndarray, clusters: np.ndarray, prio: np.ndarray, k: int) -> np.ndarray:
        """Round-robin over clusters, highest priority first within each."""
        by = {}
        for i in free[np.argsort(-prio[free], kind="stable")]:
            by.setdefault(int(clusters[i]), []).append(int(i))
        out: list[int] = []
        queues = [by[c] for c in sorted(by)]
        while len(out) < k:
            for q in queues:
                if q and len(out) < k:
                    out.append(q.pop(0))
        return np.asarray(out, dtype=np.int64)
