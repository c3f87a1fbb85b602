"""G2IS: gradient-based graph instruction selection for a target task.

Zhao et al., "Beyond Similarity: A Gradient-based Graph Method for Instruction Tuning Data
Selection", ACL 2025 (arXiv 2502.11062; github.com/zy125413/G2IS: the walk alone, over precomputed LESS
gradients and a precomputed graph).

1. Gradient features as LESS (``tunesift.methods.less``: LoRA warm-up, Adam pool features, plain
   target features, projected), with LESS's official rules (every assistant turn carries loss, no EOS
   in the target loss, the warm-up's per-example weighting), as G2IS's README says it follows LESS.  With several checkpoints, each example's feature is the
   concatenation of sqrt(w_i) x its unit feature at checkpoint i (w_i the checkpoints' mean
   learning rates, summing to 1): a unit vector whose dot products are LESS's weighted cosines.
2. Core knowledge: scikit-learn's PCA of the target features, as the code: keep the fewest components
   whose explained variance exceeds ``val_k`` (0.5) (``pca_mode="count_ratio"``: int(dimension x
   val_k) components, capped at min(examples, dimension), where the code's scikit-learn call would
   fail), weighted by their variance ratios.  Each component's sign is scikit-learn's (``svd_flip``),
   which the signed anchor and fallback rankings below depend on.
3. The budget is split over components by those weights (largest remainders).
4. A cosine k-NN graph of the pool's features (``graph_k`` neighbours: the paper's graph is not in
   its code, and it gives no k).
5. Per component, the gradient walk (``tunesift.selectors.graph_walk``): an anchor from the
   ``anchor_pool`` (1,000) best-aligned examples, then neighbours of the last pick that conflict with
   no pick (every cosine >= 0) and keep the set's summed gradient aligned (|cos| >= ``delta`` = 0.8 of
   before); when no neighbour qualifies, the best-aligned example that does; else the component stops
   short (a warning; the selection can be under budget, as in the code).

Scores: each pick's dot product with the component it was picked for (``g2is_component``).
The ``faithfulness`` rows list the divergences from the code.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.io import Dataset
from ..selectors import Budget
from ..selectors.graph_walk import component_budgets, gradient_walk, principal_directions
from ._influence import TINY, InfluenceConfig, InfluenceLoss, PoolTurns, base_table, influence, unit
from .base import Context, SetMethod, register
from .faithfulness import Divergence
from .params import Fixture, Positive, Range

log = logging.getLogger("tunesift")


@dataclass
class G2ISConfig(InfluenceConfig):
    val_k: Annotated[float, Range(0, 1, lo_open=True)] = 0.5                # variance share (or component share) of the target's PCA kept
    pca_mode: Literal["variance", "count_ratio"] = "variance"   # variance | count_ratio
    delta: Annotated[float, Range(0, 1)] = 0.8                # the code's "ways": how much alignment a step may lose
    graph_k: Positive = 100                # neighbours per node of the pool's gradient graph
    anchor_pool: int = 1000
    # G2IS's README: "the gradient extraction pipeline follows the setting introduced in LESS", so it
    # takes LESS's official rules, as BIDS does.
    pool_turns: PoolTurns = "all"
    target_eos: bool = False
    loss_weighting: InfluenceLoss = "example"


@register
class G2IS(SetMethod):
    name = "g2is"
    cost = "as LESS: a LoRA warm-up + 4 per-example gradients; a k-NN graph walk"
    revision = 1   # a default changed: see the faithfulness rows
    Config = G2ISConfig
    paper = "Beyond Similarity: A Gradient-based Graph Method for Instruction Tuning Data Selection (G2IS)"
    venue = "ACL 2025"
    code = "https://github.com/zy125413/G2IS"
    needs = ("causal_lm", "fine-tuning", "target_set")
    test_params = dict(target=Fixture("target"), graph_k=3, **TINY)
    summary = "LESS gradients; per principal direction of the target's, a graph walk that keeps the set aligned."
    default_budget = "1%"
    faithfulness = (
        Divergence(topic="gradient features",
                   official="README (Training and Gradient Setting): the gradients follow LESS's pipeline (LoRA "
                            "warm-up, Adam-adjusted training gradients, plain validation gradients, random "
                            "projection); the repository ships only the walk",
                   default="official", parameter="LESS's own switches apply: target_eos, pool_turns, "
                                                 "loss_weighting (before revision 1: the run's turns, EOS in the target "
                                                 "loss, token weighting)"),
        Divergence(topic="PCA solver",
                   official="gradient_walk.py:42,49: PCA(n_components=...) with scikit-learn's default 'auto' solver "
                            "(an unseeded randomized SVD for large count_ratio fits)",
                   default="ours", parameter="none: the exact ('full') solver, deterministic; same components "
                                             "and signs up to the randomized approximation"),
        Divergence(topic="count_ratio beyond the rank",
                   official="gradient_walk.py:48-49: int(dimension x val_k) components; scikit-learn raises when "
                            "that exceeds min(examples, dimension)",
                   default="ours", parameter="none: capped at min(examples, dimension)"),
        Divergence(topic="a single target example",
                   official="gradient_walk.py:42-45: PCA of one row (its variance ratio is undefined)",
                   default="ours", parameter="none: that example's direction, weight 1"),
        Divergence(topic="gradient graph",
                   official="gradient_walk.py:234,250: a precomputed graph.npy (neighbours by descending cosine), "
                            "not built in the repository",
                   paper="a similarity graph of the training gradients; no neighbour count given",
                   default="ours", parameter="graph_k=N (cosine k-NN over the pool's features; 100 by default)"),
        Divergence(topic="several checkpoints",
                   official="gradient_walk.py:232-233: one training and one validation gradient file",
                   default="ours",
                   parameter="none: with several LESS checkpoints, the concatenation of sqrt(w_i) x unit feature "
                             "(LESS's weighted cosine as a dot product)"),
        Divergence(topic="budget rounding and ties",
                   official="gradient_walk.py:105: int(N x train_k) (floor); :21 and :276-280: remainder seats and "
                            "equal anchor similarities ordered by a reversed argsort (the later index first)",
                   default="ours",
                   parameter="a count budget gives the code's floor; ties go to the lower index (no parameter)"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        c = self.config
        inf = influence(data, ctx, c, self.name, lambda T, V, ok, tasks: (T, unit(V[ok])))
        w = np.sqrt(inf.weights)
        self.features_ = np.concatenate([wi * T for wi, (T, _) in zip(w, inf.reduced)], axis=1)
        self.val_features_ = np.concatenate([wi * U for wi, (_, U) in zip(w, inf.reduced)], axis=1)
        self.components_, self.component_weights_ = principal_directions(self.val_features_, c.val_k, c.pca_mode)
        return base_table(inf)

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        c = self.config
        pool = self.pool(table)
        k = min(self.budget_count(budget, len(table)), len(pool))
        F = self.features_[pool]
        nb, _ = (ctx or Context()).knn_graph(F, min(c.graph_k + 1, len(pool)), metric="cosine")   # the run's shared graph
        B = component_budgets(self.component_weights_, k)
        local, comp = gradient_walk(F, self.components_, B, nb, c.delta, c.anchor_pool)
        picks = pool[local]
        table["g2is_component"] = -1
        table.loc[picks, "g2is_component"] = comp
        return self.record(table, picks, np.einsum("ij,ij->i", F[local], self.components_[comp]))
