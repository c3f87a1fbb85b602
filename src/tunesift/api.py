"""The Python API: ``score`` and ``select``.  The CLI is a thin layer over these two."""
from __future__ import annotations

import logging
import platform
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .data.errors import TunesiftError
from .data.hf import is_frame, is_hf, read_source, take_rows, to_hf
from .data.io import Dataset, atomic_path, write_dataset, write_json, write_records
from .data.llamafactory import check_target, convert, layout_of, write_dataset_info
from .methods.base import Context, Method, get_method
from .models.loading import LoadedLM, cache_root
from .selectors import Budget
from .selectors.metrics import diversity_report
from .signals.distributed import Runner, Slice

log = logging.getLogger("tunesift")
SCHEMA = ("id", "index", "line", "score", "eligible", "reason")


@dataclass
class ScoreResult:
    """Per-example scores in one fixed schema (``SCHEMA`` first, then method signals) + a summary."""

    table: pd.DataFrame
    dataset: Dataset
    method: Method
    context: Context
    timings: dict = field(default_factory=dict)
    partial: str | None = None   # set by --shard: scores of other slices are NaN, the table is not a result
    source: Any = None           # the datasets.Dataset or DataFrame given, for selected_as

    @property
    def summary(self) -> dict:
        s = self.table["score"].to_numpy(dtype=float)
        finite = s[np.isfinite(s)]
        return {"examples": len(self.table), "eligible": int(self.table["eligible"].sum()),
                "ineligible_by_reason": self.table.loc[~self.table["eligible"], "reason"].value_counts().to_dict(),
                "score": ({"min": float(finite.min()), "median": float(np.median(finite)), "max": float(finite.max())}
                          if len(finite) else {}),
                "skipped_on_read": self.dataset.skipped.to_dict()}


@dataclass
class SelectionResult(ScoreResult):
    budget: Budget = field(default_factory=lambda: Budget("all"))
    selected_indices: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    paths: dict = field(default_factory=dict)
    manifest: dict = field(default_factory=dict)
    diversity: dict | None = None

    @property
    def selected(self) -> Dataset:
        return self.dataset.subset(sorted(self.selected_indices))

    def selected_as(self, kind: str | None = None) -> Any:
        """The selection, in input order, as ``kind``: ``"datasets"`` (a ``datasets.Dataset``),
        ``"pandas"``, ``"records"`` (raw dicts) or ``"tunesift"``; None: the type the input was."""
        ex = [self.dataset.examples[i] for i in sorted(set(int(i) for i in self.selected_indices))]
        rows = [e.line - 1 for e in ex]   # in-memory inputs: line is the row + 1
        if kind is None:
            if self.source is not None:
                return take_rows(self.source, rows)
            kind = "tunesift"
        if kind == "tunesift":
            return self.selected
        if kind == "records":
            return [e.raw for e in ex]
        if kind == "pandas":
            return take_rows(self.source, rows) if is_frame(self.source) else pd.DataFrame([e.raw for e in ex])
        if kind == "datasets":
            if is_hf(self.source):
                return take_rows(self.source, rows)
            return to_hf([e.raw for e in ex])
        raise TunesiftError(f"selected_as: kind must be datasets, pandas, records, tunesift or None, not {kind!r}")


def _dataset(data: Any, format: str | None, on_error: str, limit: int | None) -> tuple[Dataset, Any]:
    """(the examples, the in-memory object they came from: a datasets.Dataset or DataFrame, else None)."""
    return read_source(data, format=format, on_error=on_error, limit=limit)


def _context(model, device, dtype, batch_tokens, max_length, cache_dir, use_cache, progress, trust_remote_code,
             turns, seed, lm, embedder, engine_options=None, workers=0, ray_address=None, shard=None,
             threads_per_worker=None, runner=None) -> Context:
    if turns not in ("last", "all"):
        raise TunesiftError("turns must be 'last' or 'all'")
    part = Slice.parse(shard)
    if part is not None and not use_cache:
        raise TunesiftError("--shard fills the score cache for one slice: it cannot run with --no-cache")
    if workers and workers < 0:
        raise TunesiftError("--workers must be a positive number")
    if use_cache:
        _check_writable(cache_root(cache_dir))
    emb_obj = embedder if embedder is not None and not isinstance(embedder, str) else None
    return Context(model=model, device=device, dtype=dtype, batch_tokens=batch_tokens, max_length=max_length,
                   cache_dir=cache_dir, use_cache=use_cache, progress=progress,
                   trust_remote_code=trust_remote_code, turns=turns, seed=seed, lm=lm,
                   embedder_model=embedder if isinstance(embedder, str) else None, embedder_obj=emb_obj,
                   engine_options=dict(engine_options or {}), workers=workers or 0, ray_address=ray_address,
                   shard=part, threads_per_worker=threads_per_worker, runner_obj=runner,
                   owns_runner=runner is None)


def _check_writable(root: Path) -> None:
    """Before any work: a cache that cannot be written would lose every result of a long run."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = root / f".write-test-{uuid.uuid4().hex}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise TunesiftError(f"cache directory {root} is not writable ({e.strerror or e}); "
                            "pass --cache-dir DIR or --no-cache") from None


def score(data: Any, method: str | Method = "ifd", *, model: str | None = None,
          device: str = "auto", dtype: str = "auto", batch_tokens: int = 16384, max_length: int | None = None,
          cache_dir: str | None = None, use_cache: bool = True, progress: bool = True, on_error: str = "raise",
          format: str | None = None, turns: str = "last", seed: int = 0, limit: int | None = None,
          trust_remote_code: bool = False, lm: LoadedLM | None = None, output: str | Path | None = None,
          embedder: Any = None, engine_options: dict | None = None, workers: int = 0,
          ray_address: str | None = None, shard: str | None = None, threads_per_worker: int | None = None,
          runner: Runner | None = None, **params: Any) -> ScoreResult:
    """Score every example of ``data`` with ``method``; optionally write the table as Parquet.

    ``data``: a file (.json .jsonl .jsonl.gz .parquet .csv), a ``save_to_disk`` folder,
    ``"hf:owner/name[:split]"``, a ``datasets.Dataset`` (or one-split ``DatasetDict``), a pandas
    DataFrame, or a tunesift ``Dataset``.

    ``engine_options``: extra ``LikelihoodEngine`` parameters (``max_batch_size``, ``max_padding``,
    ``share_prefix``, ``head_chunk``, ``compile_body``, ``prepare_chunk``) for tuning on unusual hardware.

    Scale-out: ``workers=N`` runs every per-example pass on N Ray workers (a local Ray cluster, or the
    one at ``ray_address``; ``"auto"`` finds a running one); results are cached here as they arrive.
    ``shard="i/N"`` computes only slice i of N of every pass into the cache (Slurm arrays on a shared
    file system); a later run without ``shard`` gathers them and computes nothing finished.
    ``runner``: a ``RayRunner`` made once and reused across calls (its workers keep their models)."""
    res = _score(data, method, model=model, device=device, dtype=dtype, batch_tokens=batch_tokens,
                 max_length=max_length, cache_dir=cache_dir, use_cache=use_cache, progress=progress,
                 on_error=on_error, format=format, turns=turns, seed=seed, limit=limit,
                 trust_remote_code=trust_remote_code, lm=lm, embedder=embedder, engine_options=engine_options,
                 workers=workers, ray_address=ray_address, shard=shard, threads_per_worker=threads_per_worker,
                 runner=runner, budget=False, **params)[0]
    res.context.close()
    if output is not None and res.partial is None:
        _write_table(res.table, output)
    return res


def _score(data, method, *, model, device, dtype, batch_tokens, max_length, cache_dir, use_cache, progress,
           on_error, format, turns, seed, limit, trust_remote_code, lm, embedder, engine_options, workers,
           ray_address, shard, threads_per_worker, runner, budget=None, **params):
    """Method.run on the data: (scores, selected indices, the budget); ``budget`` None: the method's
    default; False: score only (no indices)."""
    # Everything that can be wrong with the run's options fails here, before the data is read.
    m = method if isinstance(method, Method) else get_method(method)(**params)
    if isinstance(method, Method) and params:
        raise TunesiftError("pass method parameters either in the Method object or as keywords, not both")
    b = None if budget is False else Budget.parse(budget if budget is not None else m.default_budget)
    ctx = _context(model, device, dtype, batch_tokens, max_length, cache_dir, use_cache, progress,
                   trust_remote_code, turns, seed, lm, embedder, engine_options, workers, ray_address, shard,
                   threads_per_worker, runner)
    ctx.runner()   # starts (or reaches) the Ray workers now: a bad address or too many workers stops here
    t0 = time.perf_counter()
    try:
        ds, source = _dataset(data, format, on_error, limit)
    except BaseException:
        ctx.close()
        raise
    t_read = time.perf_counter() - t0
    partial = None
    idx = None
    try:
        table, idx = m.run(ds, ctx, b)
    except Exception as e:
        if ctx.shard is None or isinstance(e, TunesiftError):
            ctx.close()
            raise
        # A slice leaves other slices' results NaN; a step after the passes may need them all.  Its
        # per-example work is cached, which is what a slice is for.
        log.warning("--shard %s: %s's steps after its per-example passes need every slice (%s: %s); "
                    "this slice's passes are cached", ctx.shard, m.name, type(e).__name__, e)
        table = pd.DataFrame({"score": np.full(len(ds), np.nan), "eligible": False, "reason": "other slice"})
        m.timings_ = {}
    except BaseException:
        ctx.close()
        raise
    if ctx.shard is not None:
        partial = f"slice {ctx.shard}"
    front = pd.DataFrame({"id": [e.id for e in ds.examples], "index": np.arange(len(ds)),
                          "line": [e.line for e in ds.examples]})
    table = pd.concat([front, table.reset_index(drop=True)], axis=1)
    table["eligible"] = table["eligible"].astype(bool)
    table["reason"] = table["reason"].astype(str)
    table = table[list(SCHEMA) + [c for c in table.columns if c not in SCHEMA]]
    return ScoreResult(table, ds, m, ctx, {"read_s": t_read, **m.timings_}, partial, source), idx, b


def select(data: Any, method: str | Method = "ifd", budget: Any = None, *,
           output: str | Path | None = None, write_format: str | None = None, llamafactory: bool = False,
           **kwargs: Any) -> SelectionResult:
    """Score, then choose a subset under ``budget``; with ``output``, write the selection (in the
    input's format), ``<stem>.scores.parquet`` and ``<stem>.manifest.json`` beside it.
    ``res.selected_as()`` gives the selection as the input's own type (a ``datasets.Dataset`` or a
    DataFrame in, the same out), or as ``"datasets"``, ``"pandas"``, ``"records"``.
    ``write_format``: write the selection converted to ``alpaca``, ``sharegpt`` or ``messages``;
    ``llamafactory``: also add its entry to the ``dataset_info.json`` beside it (LLaMA-Factory's
    ``--dataset <stem>``)."""
    t0 = time.perf_counter()
    if output is not None:
        check_target(output_paths(output)["data"], write_format, llamafactory)
    if kwargs.get("shard") is not None:
        raise TunesiftError("--shard fills the cache for one slice; `tunesift score --shard i/N` on each, then "
                            "select without --shard to gather")
    opts = dict(model=None, device="auto", dtype="auto", batch_tokens=16384, max_length=None, cache_dir=None,
                use_cache=True, progress=True, on_error="raise", format=None, turns="last", seed=0, limit=None,
                trust_remote_code=False, lm=None, embedder=None, engine_options=None, workers=0,
                ray_address=None, shard=None, threads_per_worker=None, runner=None)
    opts.update(kwargs)
    # Global steps (budgets, k-center, facility location, ...) run in the method's select, over the
    # gathered arrays; some still run per-example passes there (DiverseEvol's rounds), on the workers.
    res, idx, b = _score(data, method, budget=budget, **opts)
    m = res.method
    res.context.close()
    table = res.table
    selected = np.zeros(len(table), dtype=bool)
    selected[idx] = True
    rank = np.full(len(table), -1, dtype=np.int64)
    rank[idx] = np.arange(len(idx))
    table["selected"] = selected
    table["rank"] = rank
    table["status"] = np.where(selected, "kept", "dropped")
    table["why"] = np.where(selected, "", np.where(table["eligible"], "outside the budget", table["reason"]))
    out = SelectionResult(table, res.dataset, m, res.context, dict(res.timings), source=res.source, budget=b,
                          selected_indices=idx)
    out.timings["total_s"] = time.perf_counter() - t0
    X = getattr(m, "embeddings_", None)
    if X is not None and len(X) == len(table) and len(idx):
        # diversity of the selection next to the pool's, for every method that embedded the data
        out.diversity = diversity_report(X, idx, seed=res.context.seed)
    out.manifest = manifest(out)
    if output is not None:
        out.paths = write_selection(out, output, write_format, llamafactory)
    return out


def output_paths(output: str | Path) -> dict[str, Path]:
    p = Path(output)
    name = p.name
    for ext in (".jsonl.gz", ".json.gz", ".jsonl", ".json", ".parquet", ".csv"):
        if name.lower().endswith(ext):
            stem = name[: -len(ext)]
            break
    else:
        raise TunesiftError(f"output {output} needs a data file extension (.jsonl, .json, .jsonl.gz, .parquet, .csv)")
    return {"data": p, "scores": p.with_name(stem + ".scores.parquet"), "manifest": p.with_name(stem + ".manifest.json")}


def _write_table(table: pd.DataFrame, path: str | Path) -> None:
    with atomic_path(path) as tmp:
        table.to_parquet(tmp, index=False)


def write_selection(res: SelectionResult, output: str | Path, write_format: str | None = None,
                    llamafactory: bool = False) -> dict[str, str]:
    paths = output_paths(output)
    idx = sorted(set(int(i) for i in res.selected_indices))
    lf_layout = (write_format or layout_of(res.dataset.format)) if llamafactory else None   # fail before writing
    if write_format is None:
        n = write_dataset(res.dataset, idx, paths["data"])
        records = [res.dataset.examples[i].raw for i in idx]
    else:
        records = [convert(res.dataset.examples[i], write_format, res.dataset.format) for i in idx]
        write_records(records, paths["data"])
        n = len(records)
    if lf_layout is not None:
        paths["llamafactory"] = write_dataset_info(records, lf_layout, paths["data"])
    _write_table(res.table, paths["scores"])
    res.manifest["outputs"] = {k: str(v) for k, v in paths.items()}
    res.manifest["counts"]["written"] = n
    write_json(res.manifest, paths["manifest"])   # last: its presence marks a complete run
    return {k: str(v) for k, v in paths.items()}


def manifest(res: SelectionResult) -> dict:
    import torch
    import transformers
    ds, ctx = res.dataset, res.context
    return {
        "tunesift_version": __version__,
        "method": res.method.name, "paper": res.method.paper, "parameters": res.method.params(),
        "budget": {"spec": str(res.budget), "kind": res.budget.kind, "value": res.budget.value, "op": res.budget.op},
        "run": {"seed": ctx.seed, "turns": ctx.turns, "batch_tokens": ctx.batch_tokens, "max_length_override": ctx.max_length},
        "model": ctx.lm.describe() if ctx.lm is not None else None,
        "embedder": getattr(ctx.embedder_obj, "name", None),
        "data": {"path": str(ds.path), "format": ds.format, "container": ds.container, "fingerprint": ds.fingerprint},
        "counts": {"records_read": ds.read_total, "skipped_on_read": ds.skipped.total, "scored": len(ds),
                   "eligible": int(res.table["eligible"].sum()), "selected": int(len(res.selected_indices))},
        "skipped": ds.skipped.to_dict(),
        "ineligible_by_reason": res.table.loc[~res.table["eligible"], "reason"].value_counts().to_dict(),
        "diversity": res.diversity,
        "timings_s": {k: round(v, 3) for k, v in res.timings.items()},
        "engine": ctx.engine_stats(),
        "environment": {"python": platform.python_version(), "torch": torch.__version__,
                        "transformers": transformers.__version__, "platform": platform.platform()},
    }
