"""RECOST: external-knowledge-guided relative predictive entropy, then diversity-consistent sampling.

Zhang, Zhang, Wang, Zhao, "RECOST: External Knowledge Guided Data-efficient Instruction Tuning",
Findings of ACL 2024 (arXiv 2402.17355).  No code is public and the paper body could not be read when
this was written, so this module implements the abstract's procedure with the reconstruction the
method notes give (marked there "recall: verify"); every choice below is a parameter:

1. For each example, retrieve the ``k`` nearest items of a trusted corpus the user provides
   (``corpus``: any dataset tunesift reads; cosine similarity of sentence embeddings of the
   instruction against the corpus items' instruction + response).
2. H(y|x): the base model's mean token NLL of the response given the prompt (the predictive entropy
   as the abstract uses it); H_K(y|x): the same with the retrieved items placed before the prompt.
   Relative score R = H - H_K: how much the trusted knowledge supports the response.
3. Rank aggregation: rank by H (informative, higher first) and by R (knowledge-consistent, higher
   first); the combined order is the sum of the two ranks (``combine="rank_sum"``).
4. Diversity-consistent sampling with a sliding window: walk the combined order in windows of
   ``window`` examples and, within each window, take the examples whose k-means cluster is furthest
   below its share of the budget (the pool's cluster proportions), until the budget is met.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset, read_dataset
from ..models.templates import Rendered, render_conversation
from ..selectors import Budget
from ..signals.embeddings import text_of
from .base import Context, SetMethod, register
from .params import Fixture, Positive


@dataclass
class RECOSTConfig:
    corpus: str | None = None         # trusted knowledge: a dataset file (required)
    k: Positive = 2                        # retrieved items per example
    template: str = "alpaca"
    max_length: int = 2048
    window: Positive = 100                 # sliding-window size over the combined ranking
    n_clusters: Positive = 20
    max_item_chars: int = 1500        # each retrieved item is cut to this many characters


def knowledge_prefix(items: list[str]) -> str:
    return "".join(f"Reference {i + 1}:\n{t}\n\n" for i, t in enumerate(items))


def with_knowledge(r: Rendered, prefix: str) -> Rendered:
    return Rendered(prefix + r.text, tuple((a + len(prefix), b + len(prefix)) for a, b in r.spans), r.add_special_tokens)


def window_sample(order: np.ndarray, labels: np.ndarray, k: int, window: int) -> np.ndarray:
    """Walk ``order`` in windows; in each, prefer the clusters furthest below their quota."""
    valid = labels[labels >= 0]           # -1: rows outside the pool
    n_clusters = int(valid.max()) + 1 if len(valid) else 0
    share = np.bincount(valid, minlength=n_clusters) / max(len(valid), 1)
    quota = share * k
    taken = np.zeros(n_clusters)
    picks: list[int] = []
    for s in range(0, len(order), window):
        win = list(order[s:s + window])
        while win and len(picks) < k:
            deficit = [quota[labels[i]] - taken[labels[i]] for i in win]
            j = int(np.argmax(deficit))            # ties: the better-ranked example (earlier in the window)
            if deficit[j] <= 0 and s + window < len(order):
                break                              # every cluster here is at quota: move the window on
            i = win.pop(j)
            picks.append(int(i))
            taken[labels[i]] += 1
        if len(picks) >= k:
            break
    return np.asarray(picks, dtype=np.int64)


@register
class RECOST(SetMethod):
    name = "recost"
    cost = "2 LM passes per example (with and without retrieved knowledge) + retrieval embeddings"
    Config = RECOSTConfig
    paper = "RECOST: External Knowledge Guided Data-efficient Instruction Tuning"
    venue = "Findings of ACL 2024"
    code = ""
    needs = ("causal_lm", "embedder", "target_set")
    test_params = dict(corpus=Fixture("corpus"), window=4, n_clusters=2)
    summary = "Entropy with vs without retrieved trusted knowledge, two-rank aggregation, sliding-window diverse sampling."
    default_budget = "1%"

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        cfg = self.config
        if not cfg.corpus:
            raise TunesiftError("recost needs a trusted knowledge corpus: -p corpus=PATH (any dataset file)")
        corpus = read_dataset(cfg.corpus)
        items = [(text_of(e, "instruction_input") + "\n" + e.response)[:cfg.max_item_chars] for e in corpus.examples]
        q = ctx.embed(data, "instruction_input")
        kv = ctx.embedder().encode(items, desc="embedding corpus")
        k = min(cfg.k, len(items))
        sims = q @ kv.T                                    # unit vectors: cosine
        nn = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        tok = ctx.causal_lm().tokenizer
        plain = [render_conversation(e, cfg.template, tok, ctx.turns) for e in data.examples]
        knowing = [with_knowledge(r, knowledge_prefix([items[j] for j in nn[i]])) for i, r in enumerate(plain)]
        eng = ctx.engine(cfg.max_length)
        H = eng.nll(plain, desc="recost H(y|x)").mean_nll
        HK = eng.nll(knowing, desc="recost H(y|K,x)").mean_nll
        R = H - HK
        ok = np.isfinite(H) & np.isfinite(HK)
        # two ranks, higher better for both; combined = rank sum (lower is better)
        rank_h = pd.Series(np.where(ok, H, -np.inf)).rank(ascending=False, method="first").to_numpy()
        rank_r = pd.Series(np.where(ok, R, -np.inf)).rank(ascending=False, method="first").to_numpy()
        self.embeddings_ = q
        table = pd.DataFrame({"score": -(rank_h + rank_r), "entropy": H, "entropy_with_knowledge": HK,
                              "relative": R, "eligible": ok, "reason": np.where(ok, "", "no response token scored")})
        table["neighbours"] = [",".join(corpus.examples[j].id for j in row) for row in nn]
        return table

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        k = self.budget_count(budget, len(table))
        pool = self.pool(table)
        order = pool[np.lexsort((pool, -table["score"].to_numpy()[pool]))]
        labels_pool, _ = (ctx or Context()).kmeans(self.embeddings_[pool], min(self.config.n_clusters, len(pool)))
        labels = np.full(len(table), -1, dtype=int)
        labels[pool] = labels_pool
        table["cluster"] = labels
        picks = window_sample(order, labels, min(k, len(pool)), self.config.window)
        return self.record(table, picks, table["score"].to_numpy()[picks])
