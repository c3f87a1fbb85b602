"""The run loop: each unfinished cell selects, fine-tunes and evaluates, and the driver writes its
file as it ends.  In process the cells run one after another and share the loaded base and scoring
models; with ``workers`` they run as Ray tasks, one device each, each task loading its own models."""
from __future__ import annotations

import dataclasses
import gc
import json
import logging
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import api
from ..data.example import Dataset
from ..data.readers import read_dataset
from ..data.writers import atomic_path
from ..data.errors import TunesiftError
from ..evaluate.sets import load_references
from ..evaluate.tasks import EvalSpec, WinrateJudge, parse_eval, run_eval
from ..methods import get_method
from ..models.loading import LoadedLM, load_causal_lm, resolve_device
from ..signals.distributed import RayRunner
from ..train import finetune
from .config import BASE, FULL, BenchConfig
from .plan import Cell, key_of, plan_cells
from .report import leaderboard, load_records, write_reports

log = logging.getLogger("tunesift")


class _Models:
    """The base model (trained in each cell from its float32 weights) and the scoring models, each
    loaded on first use and kept for every later cell of this process."""

    def __init__(self, config: BenchConfig):
        self.config = config
        self._base: LoadedLM | None = None
        self._score: dict[str | None, LoadedLM] = {}

    def base(self) -> LoadedLM:
        if self._base is None:
            self._base = load_causal_lm(self.config.base_model, self.config.device, "float32")
        return self._base

    def score(self, method: str | None = None) -> LoadedLM:
        c = self.config
        name = c.method_models.get(method) or c.score_model or c.base_model
        if name not in self._score:
            self._score[name] = load_causal_lm(name, c.device, c.dtype)
        return self._score[name]


def target_slice(specs: list[EvalSpec], config: BenchConfig, out: Path) -> tuple[list[EvalSpec], Path | None]:
    """The target set of the methods that need one: ``config.target`` = "EVAL:K", K references of
    that evaluation (seeded draw) written to <out>/target.jsonl and held out of that evaluation."""
    if not config.target:
        return specs, None
    name, _, k = config.target.partition(":")
    spec = next((s for s in specs if s.name == name), None)
    if spec is None:
        raise TunesiftError(f"bench target {config.target!r}: {name!r} is not one of the evaluations")
    refs = load_references(spec.path)
    k = int(k or 20)
    if k >= len(refs):
        raise TunesiftError(f"bench target {config.target!r}: {name} has only {len(refs)} references")
    held = sorted(int(i) for i in np.random.default_rng(0).choice(len(refs), k, replace=False))
    path = out / "target.jsonl"
    with atomic_path(path) as tmp:
        Path(tmp).write_text("".join(json.dumps({"instruction": refs.examples[i].prompt, "input": "",
                                                 "output": refs.examples[i].response}) + "\n" for i in held))
    return [dataclasses.replace(s, exclude=frozenset(held)) if s is spec else s for s in specs], path


def method_params(config: BenchConfig, method: str, target: Path | None) -> dict:
    params = dict(config.method_params.get(method, {}))
    if target is not None and "target_set" in get_method(method).needs:
        params.setdefault("target", str(target))
    return params


def run_cell(cell: Cell, ds: Dataset, specs: list[EvalSpec], config: BenchConfig, out: Path, progress: bool,
             models: _Models, judge: WinrateJudge, target: Path | None = None) -> dict:
    """One cell's record: selection, training and evaluation results, or the error that stopped it."""
    rec: dict[str, Any] = {"method": cell.method, "seed": cell.seed, "key": cell.key, "pool": len(ds)}
    t0 = time.perf_counter()
    try:
        base_lm = models.base()
        ts = time.perf_counter()
        if cell.method == FULL:
            idx = np.arange(len(ds))
        elif cell.method == BASE:
            idx = np.zeros(0, dtype=int)
        else:
            params = method_params(config, cell.method, target)
            sel = api.select(ds, cell.method, config.budget, seed=cell.seed, lm=models.score(cell.method),
                             device=config.device, progress=progress, cache_dir=_cache(config, out), **params)
            idx = np.asarray(sel.selected_indices)
        rec["selection_s"] = time.perf_counter() - ts
        rec["selected"] = int(len(idx))
        rec["selected_ids_sha"] = key_of([ds.examples[j].id for j in idx])
        if cell.method == BASE:
            lm, rec["train_s"], rec["train"] = base_lm, 0.0, None
        else:
            tcfg = dataclasses.replace(config.train, seed=cell.seed, template=config.template)
            tr = finetune(base_lm, ds.subset(idx.tolist()), tcfg, progress=progress)
            lm, rec["train_s"] = tr.lm, tr.seconds
            rec["train"] = {k: v for k, v in tr.summary().items() if k != "config"}
            rec["loss_curve"] = [(r["step"], r["loss"]) for r in tr.log]
        rec["evals"] = {s.name: run_eval(s, lm, config.template, progress, judge=judge,
                                         batch_size=config.gen_batch_size) for s in specs}
        rec["error"] = None
    except Exception as e:  # noqa: BLE001 - a failed cell is reported, the others go on
        rec["error"] = f"{type(e).__name__}: {e}"
        rec["traceback"] = traceback.format_exc()[-4000:]
        log.error("cell %s seed %d failed: %s", cell.method, cell.seed, rec["error"])
    rec["seconds"] = time.perf_counter() - t0
    return rec


def write_cell(cell: Cell, rec: dict) -> None:
    """A finished cell's file (an error cell's under .error.json, retried by the next run)."""
    err = cell.path.with_suffix(".error.json")
    with atomic_path(cell.path if rec["error"] is None else err) as tmp:
        Path(tmp).write_text(json.dumps(rec, indent=1, default=float))
    if rec["error"] is None and err.exists():
        err.unlink()


def _cache(config: BenchConfig, out: Path) -> str:
    return config.cache_dir or str(out / "score-cache")


def _judge(config: BenchConfig, out: Path) -> WinrateJudge:
    return WinrateJudge(config.judge_reward_model, config.judge_model, config.device, _cache(config, out))


def _cell_task(cell: Cell, ds: Dataset, specs: list[EvalSpec], config: BenchConfig, out: Path,
               threads: int | None, target: Path | None) -> dict:
    """One cell as a Ray task: its own models, on the device Ray gave it."""
    if threads:
        import torch   # heavy: only a worker process pays for it here
        torch.set_num_threads(threads)
    rec = run_cell(cell, ds, specs, config, out, False, _Models(config), _judge(config, out), target)
    gc.collect()
    return rec


def _run_parallel(todo: list[Cell], ds: Dataset, specs: list[EvalSpec], config: BenchConfig, out: Path,
                  target: Path | None) -> None:
    device = config.device if config.device not in (None, "auto") else resolve_device(None)
    runner = RayRunner(workers=config.workers or None, address=config.ray_address, device=device,
                       threads=config.threads_per_worker)
    done = [0]

    def arrived(i: int, rec: dict) -> None:
        done[0] += 1
        write_cell(todo[i], rec)   # on arrival: a killed driver loses only the cells still running
        log.info("[%d/%d] %s seed %d %s", done[0], len(todo), todo[i].method, todo[i].seed,
                 "failed" if rec["error"] else f"done in {rec['seconds']:.0f}s")
    threads = None if device.startswith("cuda") else runner.threads

    def task(cell: Cell) -> dict:    # a function, not a partial: ray.remote takes functions and classes only
        return _cell_task(cell, ds, specs, config, out, threads, target)
    try:
        runner.tasks(task, todo, arrived)
    finally:
        runner.close()


def run_bench(pool: str | Path | Dataset, config: BenchConfig, output_dir: str | Path, progress: bool = True,
              on_error: str = "raise", markdown: str | Path | None = None, notes: str | Path | None = None,
              report_only: bool = False) -> pd.DataFrame:
    """Run (or resume) every cell, then write leaderboard.{md,csv,html} and return the table
    (``markdown``: the Markdown report also there; ``notes``: a hand-written reading appended to it;
    ``report_only``: run nothing, report the cells that exist)."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = pool if isinstance(pool, Dataset) else read_dataset(pool, on_error=on_error)
    specs = [parse_eval(e, config.eval_root) for e in config.evals]
    for m in config.methods:
        if m not in (FULL, BASE):
            get_method(m)    # unknown names fail before any work
    specs, target = target_slice(specs, config, out)
    cells = plan_cells(ds, specs, config, out)
    todo = [] if report_only else [c for c in cells if not c.path.exists()]
    log.info("bench: %d cells, %d cached, %d to run", len(cells), sum(c.path.exists() for c in cells), len(todo))
    if todo and (config.workers or config.ray_address):
        _run_parallel(todo, ds, specs, config, out, target)
    else:
        models, judge = _Models(config), _judge(config, out)   # loaded once for every cell, not once per cell
        for i, cell in enumerate(todo, 1):
            log.info("[%d/%d] %s seed %d", i, len(todo), cell.method, cell.seed)
            write_cell(cell, run_cell(cell, ds, specs, config, out, progress, models, judge, target))
            gc.collect()       # the cell's trained model goes before the next cell trains another
    recs = load_records(cells)        # read the cell files once for both
    table = leaderboard(cells, specs, config, len(ds), recs)
    write_reports(table, cells, specs, config, out, len(ds), recs, markdown=Path(markdown) if markdown else None,
                  notes=Path(notes) if notes else None)
    return table
