"""The method contract and the context methods draw models from (the registry: ``registry``).

A method is a class with a config dataclass (its parameters, nothing else), registered by name:

    @register
    class MyMethod(Method):
        name = "my-method"
        Config = MyConfig
        def score(self, data, ctx) -> pd.DataFrame: ...

``score`` returns one row per example, aligned with ``data.examples``, with at least ``score``
(higher = better unless ``higher_is_better`` is False), ``eligible`` and ``reason`` (why an
example is ineligible, '' otherwise), plus any signal columns.  ``select`` turns that table and a
budget into indices; the default is top-k over eligible examples, deterministic on ties.
``run`` (the base class's, not overridden) calls the two in that order and checks the table.
"""
from __future__ import annotations

import copy
import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.fingerprint import digest, fingerprint
from ..data.io import Dataset
from ..models.loading import LoadedLM, load_causal_lm, resolve_device
from ..selectors import Budget, top_k
from ..selectors.cluster import kmeans
from ..selectors.neighbors import knn_graph
from ..signals.distributed import RayRunner, Runner, Slice
from ..signals.embeddings import Embedder, LastTokenEmbedder, LMEmbedder, text_of
from ..signals.likelihood import LikelihoodEngine
from ._quality import quality_scores
from .faithfulness import Divergence
from .params import check, specs
from .registry import REGISTRY, available_methods, get_method, register  # noqa: F401  (re-exported)


@dataclass
class Context:
    """Run-wide settings and lazily loaded models, shared by every method in a run."""

    model: str | None = None
    device: str | None = "auto"
    dtype: str | None = "auto"
    batch_tokens: int = 16384
    max_length: int | None = None    # overrides a method's own default when set
    cache_dir: str | None = None
    use_cache: bool = True
    progress: bool = True
    trust_remote_code: bool = False
    turns: str = "last"
    seed: int = 0
    lm: LoadedLM | None = None
    engines: dict = field(default_factory=dict)
    embedder_model: str | None = None    # sentence encoder path; None = packaged all-MiniLM-L6-v2
    embedder_obj: Any = None
    engine_options: dict = field(default_factory=dict)   # extra LikelihoodEngine parameters
    # Scale-out: per-example passes on this many Ray workers (at ray_address; None = a local cluster),
    # and/or only this --shard slice of them.  A method never sees either: its signals get the runner.
    workers: int = 0
    ray_address: str | None = None
    threads_per_worker: int | None = None
    shard: Slice | None = None
    runner_obj: Runner | None = None
    owns_runner: bool = True     # False for a runner the caller made (and closes)
    # Run-level shared intermediates (embed, knn_graph, kmeans): each computed once per run and
    # reused by every method (and quality method) that asks for the same one: shared arrays, so a
    # method copies one before changing it in place.
    memo: dict = field(default_factory=dict)

    def runner(self) -> Runner | None:
        """Where per-example batches run; None = in process (the default)."""
        if self.runner_obj is None and (self.workers or self.ray_address):
            self.runner_obj = RayRunner(workers=self.workers or None, address=self.ray_address,
                                        device=self.device if self.device not in (None, "auto") else resolve_device(None),
                                        threads=self.threads_per_worker,
                                        part=self.shard)
        elif self.runner_obj is None and self.shard is not None:
            self.runner_obj = Runner(self.shard)
        return self.runner_obj

    def close(self) -> None:
        if self.runner_obj is not None and self.owns_runner:
            self.runner_obj.close()
            self.runner_obj = None

    def embedder(self):
        if self.embedder_obj is None and self.embedder_model == "lm":
            # the run's causal LM, mean-pooled
            self.embedder_obj = LMEmbedder(self.causal_lm(), cache_dir=self.cache_dir, use_cache=self.use_cache,
                                           progress=self.progress, runner=self.runner())
        if self.embedder_obj is None and self.embedder_model == "lm-last":
            # the run's causal LM, last token (DEITA)
            self.embedder_obj = LastTokenEmbedder(self.causal_lm(), max_length=self.max_length or 2048,
                                                  batch_tokens=self.batch_tokens, cache_dir=self.cache_dir,
                                                  use_cache=self.use_cache, progress=self.progress,
                                                  runner=self.runner())
        if self.embedder_obj is None:
            self.embedder_obj = Embedder(self.embedder_model, device=self.device, cache_dir=self.cache_dir,
                                         use_cache=self.use_cache, progress=self.progress, runner=self.runner())
        if getattr(self.embedder_obj, "runner", False) is None and self.runner() is not None:
            # a caller's encoder object: a copy that runs on this run's workers (the caller's stays local)
            self.embedder_obj = copy.copy(self.embedder_obj)
            self.embedder_obj.runner = self.runner()
        return self.embedder_obj

    def once(self, key: tuple, compute):
        """``compute()`` the first time ``key`` is asked for in this run, the same object after."""
        if key not in self.memo:
            self.memo[key] = compute()
        return self.memo[key]

    def embed(self, data: Dataset, field: str) -> np.ndarray:
        """Embeddings of ``field`` of every example, per (data, field, encoder) once in the run."""
        emb = self.embedder()
        self.memo[("encoder", id(emb))] = emb    # held, so that its id keys only this encoder
        return self.once(("embed", data.fingerprint, field, id(emb)),
                          lambda: emb.encode([text_of(e, field) for e in data.examples], desc=f"embedding {field}"))

    def knn_graph(self, X: np.ndarray, k: int, metric: str = "cosine", index: str = "auto",
                  **options) -> tuple[np.ndarray, np.ndarray]:
        """``selectors.neighbors.knn_graph`` of X, per (X's content, k, metric, index, options) once in the run."""
        key = ("knn", digest(X), k, metric, index, fingerprint(options))
        return self.once(key, lambda: knn_graph(X, k=k, metric=metric, index=index, **options))

    def kmeans(self, X: np.ndarray, k: int, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """``selectors.cluster.kmeans`` of X (labels, centroids), per (X's content, k, seed) once in the run."""
        seed = self.seed if seed is None else seed
        return self.once(("kmeans", digest(X), k, seed), lambda: kmeans(X, k, seed=seed))

    def causal_lm(self) -> LoadedLM:
        if self.lm is None:
            # Converted models live in the shared model cache ($TUNESIFT_CACHE or ~/.cache/tunesift),
            # not in the per-run score cache, so a new --cache-dir does not convert the model again.
            # With remote workers the driver only tokenises: its weights load if a step needs them here.
            remote = self.runner() is not None and self.runner().remote
            self.lm = load_causal_lm(self.model, self.device, self.dtype, self.trust_remote_code, lazy=remote)
        return self.lm

    def engine(self, max_length: int):
        max_length = self.max_length or max_length
        if max_length not in self.engines:
            self.engines[max_length] = LikelihoodEngine(
                self.causal_lm(), max_length=max_length, batch_tokens=self.batch_tokens,
                cache_dir=self.cache_dir, use_cache=self.use_cache, progress=self.progress,
                runner=self.runner(), **self.engine_options)
        return self.engines[max_length]

    def engine_stats(self) -> dict:
        return {str(k): dataclasses.asdict(e.stats) for k, e in self.engines.items()}


class Method:
    """Base class: parameters in ``Config``, measurements in ``score``, choice in ``select``."""

    name: ClassVar[str] = ""
    Config: ClassVar[type] = type("EmptyConfig", (), {})
    paper: ClassVar[str] = ""
    venue: ClassVar[str] = ""
    code: ClassVar[str] = ""
    needs: ClassVar[tuple[str, ...]] = ()    # words of registry.NEEDS, checked at register
    stages: ClassVar[int | None] = None      # algorithm stages; None: derived from needs at register
    summary: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    default_budget: ClassVar[str | None] = "5%"
    # Where the default differs from the official code or the paper, and how to get the other rule
    # (rendered into docs/faithfulness.md).
    faithfulness: ClassVar[tuple[Divergence, ...]] = ()
    cost: ClassVar[str] = ""       # what a run costs per example (passes, fine-tunes, API calls): `tunesift methods`
    # Bumped when a default changes what the method computes, so results keyed by the parameters given
    # (the bench's cells) are not reused across it; 0 leaves such keys as they were.
    revision: ClassVar[int] = 0
    # Cheap settings for the conformance test over every method (tests/test_methods.py); a
    # ``params.Fixture`` value stands for a small file the test writes.
    test_params: ClassVar[dict] = {}

    def __init__(self, config: Any = None, **params: Any):
        if config is not None and params:
            raise TypeError("pass either a config object or keyword parameters, not both")
        if config is None:
            valid = {f.name for f in dataclasses.fields(self.Config)} if dataclasses.is_dataclass(self.Config) else set()
            unknown = set(params) - valid
            if unknown:
                raise TunesiftError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; valid: {sorted(valid)}")
            config = self.Config(**params)
        self.config = config
        # The declared types, choices and ranges first (strings from -p converted); then the
        # Config's own validate(), which keeps only the checks that relate fields to each other.
        check(self.name, self.config)
        validate = getattr(self.config, "validate", None)
        try:
            if validate:
                validate()
        except TunesiftError as e:
            if type(e) is not TunesiftError or str(e).startswith(f"{self.name}:"):
                raise
            raise TunesiftError(f"{self.name}: {e}") from None   # every parameter error names its method

    def params(self) -> dict:
        return dataclasses.asdict(self.config) if dataclasses.is_dataclass(self.config) else {}

    def run(self, data: Dataset, ctx: Context, budget: Budget | None = None) -> tuple[pd.DataFrame, np.ndarray | None]:
        """The template of every run: ``score``, the table's contract checked, then ``select`` (with a
        budget; None: score only).  ``select`` sees the table, the budget and the context; what else it
        needs from ``score`` is fitted state in attributes ending in ``_`` (scikit-learn's convention:
        ``embeddings_``, ``quality_``, ...), and the dataset itself is ``data_``, set here.  The two
        halves' times land in ``timings_``."""
        self.data_ = data
        t0 = time.perf_counter()
        table = self.score(data, ctx)
        if len(table) != len(data):
            raise RuntimeError(f"method {self.name} returned {len(table)} rows for {len(data)} examples")
        missing = {"score", "eligible", "reason"} - set(table.columns)
        if missing:
            raise RuntimeError(f"method {self.name}'s table lacks {sorted(missing)}")
        table["eligible"] = table["eligible"].astype(bool)
        table["reason"] = table["reason"].astype(str)
        self.timings_ = {"score_s": time.perf_counter() - t0}
        if budget is None:
            return table, None
        t1 = time.perf_counter()
        idx = np.asarray(self.select(table, budget, ctx), dtype=np.int64)
        self.timings_["select_s"] = time.perf_counter() - t1
        return table, idx

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        raise NotImplementedError

    def select(self, table: pd.DataFrame, budget: Budget, ctx: Context) -> np.ndarray:
        return top_k(table["score"].to_numpy(), budget, table["eligible"].to_numpy(), self.higher_is_better)

    @classmethod
    def describe(cls) -> dict:
        return {"name": cls.name, "paper": cls.paper, "venue": cls.venue, "code": cls.code,
                "needs": list(cls.needs), "stages": cls.stages, "summary": cls.summary, "default_budget": cls.default_budget,
                "cost": cls.cost,
                "parameters": {n: s.default for n, s in specs(cls.Config).items()},
                "parameter_specs": {n: s.describe() for n, s in specs(cls.Config).items()}}


class SetMethod(Method):
    """A method that chooses a set (coverage, diversity) rather than ranking examples one by one.

    ``score`` measures what the optimiser needs and keeps it on the instance (``embeddings_``);
    ``select`` runs the optimiser for the budget and writes each pick's marginal gain into the
    table's ``score`` column (NaN for examples never picked), so the scores file says how much each
    kept example added when it was chosen."""

    default_budget = "5%"

    def budget_count(self, budget: Budget, n: int) -> int:
        k = budget.count(n)
        if k is None:
            raise TunesiftError(f"{self.name} chooses a set: give a count or a fraction as budget, not {budget}")
        return k

    def pool(self, table: pd.DataFrame) -> np.ndarray:
        return np.flatnonzero(table["eligible"].to_numpy())

    def embed(self, data: Dataset, ctx: Context, field: str, quality: str | None = None) -> pd.DataFrame:
        """The usual ``score`` of a set method: embeddings (and an optional quality) kept on the
        instance, every example eligible unless its quality is undefined."""
        self.embeddings_ = ctx.embed(data, field)
        q, eligible, reason = quality_scores(data, ctx, quality)
        self.quality_ = q
        table = pd.DataFrame({"score": np.nan, "eligible": eligible, "reason": reason})
        if quality is not None:
            table.insert(1, "quality", q)
        return table

    @staticmethod
    def record(table: pd.DataFrame, picks: np.ndarray, gains: np.ndarray) -> np.ndarray:
        col = np.full(len(table), np.nan)
        col[picks] = gains
        table["score"] = col
        return picks
