"""MIG: maximise the information gain of the selection in a semantic label space.

Chen et al., "MIG: Automatic Data Selection for Instruction Tuning by Maximizing Information Gain in
Semantic Space", Findings of ACL 2025 (arXiv 2504.13835; official code ``mig/``).

Each example carries labels (InsTag tags in the paper) and a quality s_i (DEITA quality x complexity).
1. Label graph: embed every label (normalised), W = cosine similarity with entries below
   ``sim_threshold`` (0.9) set to 0; P = diag(W) + prop_weight * offdiag(W), columns normalised.
2. Example vectors: v_i[j] = s_i on each of its labels (``norm=True``: s_i / |labels_i|; the CLI
   default is False); propagated u_i = v_i P.
3. Information of a set: sum over labels of phi(X_label), X = sum_{i in S} u_i, phi concave:
   ``phi="pow"``: phi'(x) = b (x + a)^(b - 1), a = 1e-6, b = 0.8 (default); ``"exp"``: alpha e^(-alpha x).
4. Greedy with the code's first-order gain: gain_i = u_i . phi'(X); pick the best; X += u_i.

Offline, tunesift has no InsTag tagger or DEITA scorers: ``labels_field`` reads the tags from each
record (the annotated pools carry them), ``quality`` names a record field or any tunesift method.
``labels_field="keywords"`` is a stand-in when records have no tags: the content words of the
instruction (lower-cased, stop words removed) -- a documented substitution, not the paper's tagger.

Valid tags: the official loader keeps only the tags in its whitelist (``mig/data.py``: exact string
match against ``--valid-tag-path``; the README passes ``configs/valid_tag_path.json``, 4,531 tags).
The code has no mode without a list (an empty path fails to open); tunesift does not ship the list,
so ``valid_tags`` (a JSON list file, a file with one tag per line, or a comma-separated list) is
needed to reproduce the official runs, and without it every tag is kept.

Label embedder: the official code embeds labels with a SentenceTransformer (README: e5-mistral-7b-
instruct) and keeps similarities >= 0.9.  ``label_embedder`` picks ours: the run's embedder (default,
the packaged MiniLM), ``lm-last`` (the run's causal LM, last-token state, the pooling e5-mistral
uses) or a local sentence-encoder path (mean pooled).  The 0.9 threshold was set for e5-mistral.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Literal
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset
from ..selectors import Budget
from ..signals.embeddings import Embedder, LastTokenEmbedder
from ._quality import quality_scores
from .base import Context, SetMethod, available_methods, register
from .faithfulness import Divergence

STOP = set("""a an the and or but if of to in on for with at by from as is are was were be been being this that these
those it its into about over under than then so such can could would should will shall may might must do does did
have has had not no yes you your i me my we our they their he she his her them what which who whom how why when where
there here all any each few more most other some own same too very just also please give write make create""".split())


@dataclass
class MIGConfig:
    labels_field: str = "tags"        # record field with a list of labels; "keywords": instruction content words
    quality: str | None = None        # record field or method name; None: s_i = 1
    sim_threshold: float = 0.9
    prop_weight: float = 1.0
    norm: bool = False
    phi: Literal["pow", "exp"] = "pow"
    a: float = 1e-6
    b: float = 0.8
    alpha: float = 1.0
    max_keywords: int = 8
    valid_tags: str | None = None     # whitelist: JSON list file, one-tag-per-line file or "a,b,c"; None: keep all
    label_embedder: str | None = None  # None: the run's embedder | lm-last: the run's causal LM | a local path

    def validate(self) -> None:
        if self.valid_tags is not None and not self.valid_tags.strip():
            raise TunesiftError("mig: valid_tags is empty; give a file or a comma-separated list of tags")


def read_valid_tags(spec: str) -> set[str]:
    """A tag whitelist from a JSON list file, a file of one tag per line, or a comma-separated list."""
    p = Path(spec)
    if p.is_file():
        text = p.read_text(encoding="utf-8")
        if p.suffix.lower() == ".json":
            tags = json.loads(text)
            if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
                raise TunesiftError(f"{spec}: valid tags must be a JSON list of strings")
            return set(tags)
        return {line.strip() for line in text.splitlines() if line.strip()}
    return {t.strip() for t in spec.split(",") if t.strip()}


def keywords(text: str, limit: int) -> list[str]:
    seen: list[str] = []
    for w in re.findall(r"[a-z][a-z\-]{2,}", text.lower()):
        if w not in STOP and w not in seen:
            seen.append(w)
    return seen[:limit]


def propagation(label_emb: np.ndarray, threshold: float, prop_weight: float) -> np.ndarray:
    W = label_emb @ label_emb.T
    W[W < threshold] = 0.0
    P = prop_weight * W
    np.fill_diagonal(P, np.diag(W))
    col = P.sum(axis=0)
    return P / np.where(col > 0, col, 1.0)


def mig_greedy(U: np.ndarray, k: int, phi: str = "pow", a: float = 1e-6, b: float = 0.8, alpha: float = 1.0):
    """The code's linearised greedy over propagated example vectors U (N x L); returns picks and gains."""
    X = np.zeros(U.shape[1])
    free = np.ones(len(U), dtype=bool)
    picks, gains = [], []
    for _ in range(min(k, len(U))):
        g = b * (X + a) ** (b - 1) if phi == "pow" else alpha * np.exp(-alpha * X)
        gain = U @ g
        gain[~free] = -np.inf
        i = int(np.argmax(gain))
        picks.append(i)
        gains.append(float(gain[i]))
        free[i] = False
        X += U[i]
    return np.asarray(picks, dtype=np.int64), np.asarray(gains)


def _number(e, field: str, data: Dataset) -> float:
    v = e.raw.get(field) if isinstance(e.raw, dict) else None
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        raise TunesiftError(f"{data.path}, line {e.line}, field '{field}': quality must be a number")
    return float(v)


@register
class MIG(SetMethod):
    name = "mig"
    cost = "1 embedding per distinct label; no model pass per example"
    Config = MIGConfig
    paper = "MIG: Automatic Data Selection for Instruction Tuning by Maximizing Information Gain in Semantic Space"
    venue = "Findings of ACL 2025"
    code = "https://github.com/yichengchen24/MIG"
    needs = ("embedder",)
    test_params = dict(labels_field="keywords")
    summary = "Label graph propagation + concave information over labels; greedy by the linearised gain."
    faithfulness = (
        Divergence(topic="valid-tag whitelist",
                   official="mig/data.py:53: labels = tags found exactly in the --valid-tag-path list (README: "
                            "configs/valid_tag_path.json, 4,531 tags); data.py:33 has no mode without a list",
                   default="ours",
                   parameter="valid_tags=FILE or a,b,c (the official list is not shipped; without one every "
                             "tag is kept)"),
        Divergence(topic="label embedder",
                   official="mig/label.py:139,152: SentenceTransformer --embedding-model, normalised "
                            "(README: e5-mistral-7b-instruct), threshold 0.9 (cli.py:33)",
                   default="ours",
                   parameter="label_embedder=lm-last (the run's causal LM, last token) or a local encoder "
                             "path; default: the run's embedder (MiniLM)"),
        Divergence(topic="examples without a valid label",
                   official="mig/sampler.py:154-168: kept in the pool with a zero vector (zero gain)",
                   default="ours", parameter="none: tunesift marks them ineligible ('no labels')"),
    )

    def _labels(self, data: Dataset) -> list[list[str]]:
        f = self.config.labels_field
        valid = read_valid_tags(self.config.valid_tags) if self.config.valid_tags is not None else None
        out = []
        for e in data.examples:
            if f == "keywords":
                ls = keywords(e.prompt, self.config.max_keywords)
                out.append([t for t in ls if t in valid] if valid is not None else ls)
                continue
            v = e.raw.get(f) if isinstance(e.raw, dict) else None
            if not isinstance(v, list) or not all(isinstance(t, str) for t in v):
                raise TunesiftError(f"{data.path}, line {e.line}, field '{f}': mig needs a list of label strings "
                                    "(e.g. InsTag tags); or -p labels_field=keywords for the content-word stand-in")
            if valid is not None:   # the official loader matches the raw tag string exactly
                v = [t for t in v if t in valid]
            out.append(list(dict.fromkeys(t.strip().lower() for t in v if t.strip())))
        return out

    def _label_embedder(self, ctx: Context):
        which = self.config.label_embedder
        if which is None:
            return ctx.embedder()
        if which == "lm-last":
            return LastTokenEmbedder(ctx.causal_lm(), batch_tokens=ctx.batch_tokens, cache_dir=ctx.cache_dir,
                                     use_cache=ctx.use_cache, progress=ctx.progress, runner=ctx.runner())
        return Embedder(which, device=ctx.device, cache_dir=ctx.cache_dir, use_cache=ctx.use_cache,
                        progress=ctx.progress, runner=ctx.runner())

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        cfg = self.config
        labels = self._labels(data)
        vocab = sorted({t for ls in labels for t in ls})
        if not vocab:
            raise TunesiftError("mig: no example has any label")
        index = {t: j for j, t in enumerate(vocab)}
        E = self._label_embedder(ctx).encode(vocab, desc="embedding labels")
        P = propagation(E.astype(np.float64), cfg.sim_threshold, cfg.prop_weight)
        if cfg.quality is None or cfg.quality in available_methods():
            q, eligible, reason = quality_scores(data, ctx, cfg.quality)   # a method's score, scaled to (0, 1]
        else:   # a record field (DEITA quality x complexity in the annotated pools): used as is, since
            # the concave phi is not scale-invariant
            q = np.array([_number(e, cfg.quality, data) for e in data.examples])
            eligible = np.isfinite(q) & (q >= 0)
            reason = np.where(eligible, "", f"{cfg.quality} is not a non-negative number").astype(object)
        V = np.zeros((len(data), len(vocab)))
        for i, ls in enumerate(labels):
            for t in ls:
                V[i, index[t]] = q[i] / (len(ls) if cfg.norm else 1.0)
        self.U_ = V @ P
        has = np.array([len(ls) > 0 for ls in labels])
        eligible = eligible & has
        reason = np.where(has, reason, "no labels")
        return pd.DataFrame({"score": np.nan, "quality": q, "n_labels": [len(ls) for ls in labels],
                             "eligible": eligible, "reason": reason})

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        pool = self.pool(table)
        k = self.budget_count(budget, len(table))
        c = self.config
        local, gains = mig_greedy(self.U_[pool], k, c.phi, c.a, c.b, c.alpha)
        return self.record(table, pool[local], gains)
