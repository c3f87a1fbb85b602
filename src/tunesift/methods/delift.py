"""DELIFT: an in-context utility kernel from the run's model, then submodular selection.

Agarwal, Killamsetty, Popa, Danilevsky, "DELIFT: Data Efficient Language model Instruction
Fine-Tuning" (ICLR 2025, arXiv 2411.04425); official code github.com/agarwalishika/DELIFT:
``subset_selection/src/utils/dist_utils/get_icl_utility_kernel_no_vllm.py`` (the kernel) and
``subset_selection/subset_fl.py`` (the selection).

1. d(i | prompt) = ||1 - p||_2 / sqrt(T): p the teacher-forced probabilities of the T ground-truth
   tokens of y_i (the response and a closing EOS), prompt and response tokenised apart and joined
   with EOS (``signals.token_probs``).  Zero-shot prompt
   ``"Instruction: Please generate a response to the following query.\\n\\n\\nQuery: {x_i}\\n"``;
   one-shot prompt ``"Instruction:\\nUse the following example as a guide to answer the query in the
   same format and style, providing a clear and concise response.\\n\\n\\nExample:\\n{x_j}\\n{y_j}
   \\n\\n\\nQuery:\\n{x_i}\\n"``.
2. U_ij = d(i | zero-shot) - d(i | example j), for every j including j = i (as the code does),
   min-max scaled over the whole matrix to [0, 1].
3. Lazy greedy to 30% of the pool (``int(0.3 n)`` in the code): facility location
   sum_i max_{j in A} U_ij (default); with ``target=FILE`` submodlib's facility-location mutual
   information (FL1MI) sum_i min(max_{j in A} U_ij, eta max_q P_iq), P the kernel of target examples
   as shots for pool examples (eta = 1; not the FL2MI variant ``selectors.flmi``); with ``existing=FILE``
   facility-location conditional gain against the kernel of existing examples as shots for pool
   examples (nu = 1).  Each kernel is min-max scaled on its own, as subset_fl.py does.

Cost: n zero-shot passes plus n^2 one-shot passes (each (i, j) prompt is a different sequence: they
share no prefix worth caching), and n*m more for a target or existing set of m.  At 1,000 examples
that is a million forward passes.  ``neighbors=K`` (ours, not the paper's) scores only each i's K
nearest j by the run's embedder (plus j = i); the unscored U_ij take the smallest scored value, so
they are 0 after scaling.  With K = n - 1 it is the full kernel.
Each pair's distance is cached (model, max_length, prompt, response) as its chunk of passes ends,
so a killed run resumes where it stopped; the zero-shot distances are computed once per run, also
when a target or existing set adds its n*m.

Divergences (also in ``faithfulness``): the code tokenises each batch to the batch's longest
prompt + response without the two EOS, so the longest pair of each batch of 32 loses its last two
targets; we keep every target up to ``max_length``.  The HEAD commit scores with vLLM generation
(top-15 logprobs of sampled tokens); we follow the teacher-forced ``*_no_vllm`` file, as the paper's
definition does.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset, read_dataset
from ..selectors import Budget
from ..selectors.submodular import facility_location, flcg, flmi_saturated, similarity
from ..models.loading import cache_root
from ..signals.cache import ShardCache
from ..signals.token_probs import ground_truth_distances
from .base import Context, SetMethod, register
from .faithfulness import Divergence
from .params import Range

DISTANCE_VERSION = "1"   # bump when ground_truth_probs' layout or arithmetic changes
ZERO_SHOT = "Instruction: Please generate a response to the following query.\n\n\nQuery: {query}\n"
ONE_SHOT = ("Instruction:\nUse the following example as a guide to answer the query in the same format and "
            "style, providing a clear and concise response.\n\n\nExample:\n{shot_prompt}\n{shot_response}"
            "\n\n\nQuery:\n{query}\n")


@dataclass
class DeliftConfig:
    target: str | None = None      # FLMI with this target set (the code's benchmark case)
    existing: str | None = None    # FLCG against this existing data (the code's new-version case)
    neighbors: Annotated[int, Range(0)] = 0   # 0: every j (official); K: only each i's K nearest j (ours)
    eta: float = 1.0               # FL1MI's magnificationEta (submodlib default)
    nu: float = 1.0                # FLCG's privacyHardness (submodlib default)
    max_length: int = 2048         # tokenize_and_pad's max_length
    scaling: Literal["min-max", "none"] = "min-max"   # min-max (official) | none

    def validate(self) -> None:
        if self.target and self.existing:
            raise TunesiftError("delift: give target (FLMI) or existing (FLCG), not both")


def _minmax(U: np.ndarray) -> np.ndarray:
    lo, hi = float(U.min()), float(U.max())
    return (U - lo) / (hi - lo) if hi > lo else np.zeros_like(U)


def _cache(ctx: Context) -> ShardCache | None:
    """The run's distance cache, opened once per context (the kernels share it).  Keyed like the
    likelihood engine's: the model's files, its dtype, and the version of the probability pass."""
    if not ctx.use_cache:
        return None
    lm = ctx.causal_lm()
    ns = f"delift/{lm.fingerprint.replace('/', '_')}-{lm.dtype}-v{DISTANCE_VERSION}"
    return ctx.once(("delift-cache", ns), lambda: ShardCache(cache_root(ctx.cache_dir), ns, ("d",)))


def zero_shot_distances(ctx: Context, queries, max_length: int = 2048, stats: dict | None = None) -> np.ndarray:
    """d(y_i | x_i) under the zero-shot prompt, one per query."""
    return ground_truth_distances(ctx.causal_lm(), [ZERO_SHOT.format(query=x) for x, _ in queries],
                                  [y for _, y in queries], max_length, ctx.batch_tokens, _cache(ctx), stats,
                                  ctx.progress)


def utility_kernel(ctx: Context, queries, shots=None, neighbors: np.ndarray | None = None,
                   max_length: int = 2048, stats: dict | None = None, d0: np.ndarray | None = None) -> np.ndarray:
    """Unscaled U[i, j] = d(y_i | x_i) - d(y_i | x_j, y_j, x_i); ``queries`` and ``shots`` are
    lists of (prompt, response).  ``neighbors``: per query i, the shot indices to score (others NaN).
    ``d0``: the queries' zero-shot distances, when a kernel against another set reuses them."""
    shots = queries if shots is None else shots
    if d0 is None:
        d0 = zero_shot_distances(ctx, queries, max_length, stats)
    pairs = [(i, j) for i in range(len(queries))
             for j in (range(len(shots)) if neighbors is None else neighbors[i])]
    prompts = [ONE_SHOT.format(shot_prompt=shots[j][0], shot_response=shots[j][1], query=queries[i][0])
               for i, j in pairs]
    d = ground_truth_distances(ctx.causal_lm(), prompts, [queries[i][1] for i, _ in pairs], max_length,
                               ctx.batch_tokens, _cache(ctx), stats, ctx.progress)
    U = np.full((len(queries), len(shots)), np.nan)
    if pairs:
        ii, jj = np.asarray(pairs).T
        U[ii, jj] = d0[ii] - d
    return U


def knn_shots(X: np.ndarray, k: int) -> np.ndarray:
    """Each row's k most cosine-similar other rows, plus itself (the code scores j = i too)."""
    S = similarity(X)
    np.fill_diagonal(S, np.inf)
    k = min(k, len(X) - 1)
    return np.argsort(-S, axis=1, kind="stable")[:, : k + 1]


@register
class Delift(SetMethod):
    name = "delift"
    cost = "n + n^2 LM passes (n + n*K with neighbors=K)"
    Config = DeliftConfig
    paper = "DELIFT: Data Efficient Language model Instruction Fine-Tuning"
    venue = "ICLR 2025"
    code = "https://github.com/agarwalishika/DELIFT"
    needs = ("causal_lm",)
    summary = ("In-context utility kernel (one-shot gain in ground-truth token probabilities, n^2 passes); "
               "facility location, FLMI with a target set or FLCG against existing data; 30%.")
    default_budget = "30%"
    faithfulness = (
        Divergence(topic="utility scoring",
                   official="subset_selection/src/utils/dist_utils/get_icl_utility_kernel_no_vllm.py:28-72: "
                            "teacher-forced probabilities of the ground-truth tokens, ||p - 1|| / sqrt(T) (HEAD's "
                            "get_icl_utility_kernel.py instead reads top-15 logprobs of vLLM-sampled tokens)",
                   default="official", parameter="(no other mode: vLLM sampling is not reproduced)"),
        Divergence(topic="truncation of the longest pair",
                   official="get_icl_utility_kernel_no_vllm.py:120-123,148: the batch length omits the two EOS, "
                            "so the longest pair of each batch of 32 loses its last two targets",
                   default="ours", parameter="(none: every target up to max_length is kept)"),
        Divergence(topic="fractional budget",
                   official="subset_selection/subset_fl.py:24: budget=int(k * n), floor (other tunesift methods "
                            "round a fraction)",
                   default="official", parameter="(a count budget, -b N, gives any other size)"),
        Divergence(topic="k-nearest-neighbour restriction",
                   official="get_icl_utility_kernel_no_vllm.py:253: every j for every i (n^2 passes)",
                   default="official", parameter="neighbors=K (ours: only each i's K nearest j by the run's "
                                                 "embedder; unscored utilities become 0 after scaling)"),
    )

    def _pairs(self, data: Dataset):
        return [(e.prompt, e.response) for e in data.examples]

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        cfg = self.config
        pool = self._pairs(data)
        n = len(pool)
        self.stats_: dict = {}
        nbr = None
        if cfg.neighbors:
            nbr = knn_shots(ctx.embed(data, "whole"), cfg.neighbors)
        d0 = zero_shot_distances(ctx, pool, cfg.max_length, self.stats_)   # once, also for a target or existing set
        U = utility_kernel(ctx, pool, neighbors=nbr, max_length=cfg.max_length, stats=self.stats_, d0=d0)
        U[np.isnan(U)] = np.nanmin(U)
        self.kernel_ = self._scale(U)
        self.side_ = None
        other = cfg.target or cfg.existing
        if other:
            ds = read_dataset(other)
            if not len(ds):
                raise TunesiftError(f"{other}: empty")
            # the code's private_sijs: the other set's examples as shots for pool examples (n x m)
            P = utility_kernel(ctx, pool, self._pairs(ds), max_length=cfg.max_length, stats=self.stats_, d0=d0)
            self.side_ = self._scale(P)
        return pd.DataFrame({"score": np.nan, "eligible": np.ones(n, bool), "reason": ""})

    def _scale(self, U: np.ndarray) -> np.ndarray:
        return _minmax(U) if self.config.scaling == "min-max" else U

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        n = len(table)
        # subset_fl.py's budget is int(k * n) (floor); tunesift's fractions round
        k = int(budget.value * n) if budget.kind == "fraction" else self.budget_count(budget, n)
        k = min(k, n)
        cfg = self.config
        if cfg.target:
            picks, gains = flmi_saturated(self.kernel_, self.side_, k, eta=cfg.eta, return_gains=True)
        elif cfg.existing:
            picks, gains = flcg(self.kernel_, self.side_, k, nu=cfg.nu, return_gains=True)
        else:
            picks, gains = facility_location(self.kernel_, k, return_gains=True)
        return self.record(table, picks, gains)
