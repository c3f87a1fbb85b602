"""``tunesift bench``: select with each method, fine-tune the base model on each selection, evaluate,
repeat over seeds, and publish a leaderboard with its variance.

Every cell (method x seed) is a JSON file keyed by everything that produced it (pool fingerprint,
method and parameters, budget, seed, base and scoring models, training config, evaluations,
tunesift version): a killed bench resumes at the first unfinished cell, and a changed setting
recomputes only the cells it touches.  A cell that fails is written as an error cell, shown in the
leaderboard with its message, and retried on the next run; it never stops the other cells.

References always included unless switched off: ``random`` at the same budget (the baseline the
field's benchmark studies find hard to beat), the full pool, and the base model untrained.
"""
from __future__ import annotations

import dataclasses
import gc
import hashlib
import json
import logging
import math
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .data.io import Dataset, atomic_path, read_dataset
from .evaluate.tasks import EvalSpec, WinrateJudge, headline, parse_eval, run_eval
from .methods import get_method
from .train import TrainConfig, finetune

log = logging.getLogger("tunesift")
RANDOM, FULL, BASE = "random", "full", "base"


@dataclass
class BenchConfig:
    methods: list[str]
    evals: list[str]
    budget: str = "5%"
    seeds: int = 3
    base_model: str | None = None       # None: the offline default model
    score_model: str | None = None      # the model the selection methods use; None: the base model
    eval_root: str | None = None
    include_random: bool = True
    include_full: bool = True
    include_base: bool = True
    full_seeds: int | None = None       # the full-pool reference is the costliest cell: fewer seeds allowed
    template: str = "alpaca"            # training and evaluation prompt
    judge_reward_model: str | None = None   # win-rate judge: a reward model, or
    judge_model: str | None = None          # an LM reading a rating prompt (None: the packaged default)
    device: str = "auto"
    dtype: str = "auto"
    method_params: dict[str, dict] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)

    def methods_all(self) -> list[str]:
        ms = list(dict.fromkeys(self.methods))
        if self.include_random and RANDOM not in ms:
            ms.append(RANDOM)
        return ms


PRESETS: dict[str, dict[str, Any]] = {
    # Sized for a 2-core CPU in under an hour (measured: see docs/bench.md).
    "small-cpu": dict(pool_limit=1000, budget="5%", seeds=3, full_seeds=1, evals=["alpaca_eval_nll:100", "mmlu:100"],
                      train=dict(epochs=1, batch_size=8, micro_batch_tokens=1024, max_length=512)),
    # One H100: the whole pool, the likelihood and multiple-choice suites, GSM8K on a slice.
    "gpu-h100": dict(budget="5%", seeds=3, evals=["alpaca_eval_nll", "mt_bench_nll", "mmlu", "bbh", "gsm8k:500"],
                     train=dict(epochs=3, batch_size=64, micro_batch_tokens=16384, max_length=2048)),
}


def _key(*parts: Any) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class Cell:
    method: str
    seed: int
    key: str
    path: Path


def plan_cells(pool: Dataset, specs: list[EvalSpec], config: BenchConfig, output_dir: Path) -> list[Cell]:
    """Every (method, seed) cell with the key of everything that produces it."""
    c = config
    tcfg = {k: v for k, v in dataclasses.asdict(c.train).items() if k != "seed"}
    evals = [(s.name, s.limit, str(s.path)) for s in specs]
    judge = (c.judge_reward_model, c.judge_model) if any(s.name.endswith("winrate") for s in specs) else None
    common = (pool.fingerprint, c.budget, c.base_model, c.score_model, c.template, tcfg, evals, judge, __version__)
    cells = []
    names = c.methods_all() + ([FULL] if c.include_full else []) + ([BASE] if c.include_base else [])
    for m in names:
        n_seeds = 1 if m == BASE else (c.full_seeds or c.seeds) if m == FULL else c.seeds
        for s in range(n_seeds):
            k = _key(m, c.method_params.get(m, {}), s, *common)
            cells.append(Cell(m, s, k, output_dir / "cells" / f"{m}__seed{s}__{k}.json"))
    return cells


def run_bench(pool: str | Path | Dataset, config: BenchConfig, output_dir: str | Path, progress: bool = True,
              on_error: str = "raise") -> pd.DataFrame:
    """Run (or resume) every cell, then write leaderboard.{md,csv,html} and return the table."""
    from . import api
    from .models.loading import load_causal_lm

    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ds = pool if isinstance(pool, Dataset) else read_dataset(pool, on_error=on_error)
    specs = [parse_eval(e, config.eval_root) for e in config.evals]
    for m in config.methods:
        if m not in (FULL, BASE):
            get_method(m)    # unknown names fail before any work
    cells = plan_cells(ds, specs, config, out)
    todo = [c for c in cells if not c.path.exists()]
    log.info("bench: %d cells, %d cached, %d to run", len(cells), len(cells) - len(todo), len(todo))
    base_lm = score_lm = None
    judge = WinrateJudge(config.judge_reward_model, config.judge_model, config.device, str(out / "score-cache"))
    for i, cell in enumerate(todo, 1):
        log.info("[%d/%d] %s seed %d", i, len(todo), cell.method, cell.seed)
        rec: dict[str, Any] = {"method": cell.method, "seed": cell.seed, "key": cell.key, "pool": len(ds)}
        t0 = time.perf_counter()
        try:
            if base_lm is None:
                base_lm = load_causal_lm(config.base_model, config.device, "float32")
            # selection
            ts = time.perf_counter()
            if cell.method == FULL:
                idx = np.arange(len(ds))
            elif cell.method == BASE:
                idx = np.zeros(0, dtype=int)
            else:
                params = dict(config.method_params.get(cell.method, {}))
                if score_lm is None:   # loaded once for every cell, not once per selection
                    score_lm = load_causal_lm(config.score_model or config.base_model, config.device, config.dtype)
                sel = api.select(ds, cell.method, config.budget, seed=cell.seed, lm=score_lm, device=config.device,
                                 progress=progress, cache_dir=str(out / "score-cache"), **params)
                idx = np.asarray(sel.selected_indices)
            rec["selection_s"] = time.perf_counter() - ts
            rec["selected"] = int(len(idx))
            rec["selected_ids_sha"] = _key([ds.examples[j].id for j in idx])
            # training
            if cell.method == BASE:
                lm, rec["train_s"], rec["train"] = base_lm, 0.0, None
            else:
                tcfg = dataclasses.replace(config.train, seed=cell.seed, template=config.template)
                tr = finetune(base_lm, ds.subset(idx.tolist()), tcfg, progress=progress)
                lm, rec["train_s"] = tr.lm, tr.seconds
                rec["train"] = {k: v for k, v in tr.summary().items() if k != "config"}
                rec["loss_curve"] = [(r["step"], r["loss"]) for r in tr.log]
            # evaluation
            rec["evals"] = {s.name: run_eval(s, lm, config.template, progress, judge=judge) for s in specs}
            rec["error"] = None
            target = cell.path
        except Exception as e:  # noqa: BLE001 - a failed cell is reported, the others go on
            rec["error"] = f"{type(e).__name__}: {e}"
            rec["traceback"] = traceback.format_exc()[-4000:]
            target = cell.path.with_suffix(".error.json")
            log.error("cell %s seed %d failed: %s", cell.method, cell.seed, rec["error"])
        rec["seconds"] = time.perf_counter() - t0
        lm = tr = None          # the cell's trained model goes before the next cell trains another
        gc.collect()
        with atomic_path(target) as tmp:
            Path(tmp).write_text(json.dumps(rec, indent=1, default=float))
        if rec["error"] is None and cell.path.with_suffix(".error.json").exists():
            cell.path.with_suffix(".error.json").unlink()
    recs = _load(cells)        # read the cell files once for both
    table = leaderboard(cells, specs, config, len(ds), recs)
    write_reports(table, cells, specs, config, out, len(ds), recs)
    return table


# ---------------------------------------------------------------- leaderboard
def _welch_ci(a: np.ndarray, b: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Mean difference a - b and the half-width of its Welch t confidence interval (nan if n < 2)."""
    from statistics import NormalDist
    d = float(a.mean() - b.mean())
    if len(a) < 2 or len(b) < 2:
        return d, float("nan")
    va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return d, 0.0
    df = (va + vb) ** 2 / ((va ** 2 / (len(a) - 1) if len(a) > 1 else 0) + (vb ** 2 / (len(b) - 1) if len(b) > 1 else 0))
    return d, _t_quantile(0.5 + level / 2, df) * se if df > 0 else NormalDist().inv_cdf(0.5 + level / 2) * se


def _t_quantile(p: float, df: float) -> float:
    """Student-t quantile by bisection on its CDF (regularised incomplete beta via continued fraction)."""
    def cdf(t: float) -> float:
        x = df / (df + t * t)
        ib = _betainc(df / 2, 0.5, x)
        return 1 - 0.5 * ib if t > 0 else 0.5 * ib
    lo, hi = 0.0, 1e3
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if cdf(mid) < p else (lo, mid)
    return (lo + hi) / 2


def _betainc(a: float, b: float, x: float) -> float:
    if x <= 0 or x >= 1:
        return 0.0 if x <= 0 else 1.0
    lbeta = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
    front = math.exp(math.log(x) * a + math.log(1 - x) * b + lbeta)
    if x > (a + 1) / (a + b + 2):
        return 1 - _betainc(b, a, 1 - x)
    f, c, d = 1.0, 1.0, 0.0   # Lentz's continued fraction
    for i in range(300):
        m = i // 2
        if i == 0:
            num = 1.0
        elif i % 2 == 0:
            num = m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m))
        else:
            num = -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))
        d = 1 + num * d
        d = 1 / (d if abs(d) > 1e-30 else 1e-30)
        c = 1 + num / (c if abs(c) > 1e-30 else 1e-30)
        f *= c * d
        if abs(1 - c * d) < 1e-12:
            break
    return front * (f - 1) / a


def _load(cells: list[Cell]) -> list[dict]:
    recs = []
    for c in cells:
        for p in (c.path, c.path.with_suffix(".error.json")):
            if p.exists():
                recs.append(json.loads(p.read_text()))
                break
    return recs


def feasibility(methods: list[str]) -> dict[str, dict]:
    """TEDD's feasibility ranking (NAACL 2025, TEDD-Ranker), from each method's declared needs:
    simplicity penalty = 2 x models used + algorithm stages + [not reproducible];
    flexibility penalty = 3 x [not model-free] + 2 x [needs a target/reference set] + [needs an API judge];
    feasibility = rank(simplicity) + rank(flexibility) (lower is more feasible)."""
    info = {}
    for m in methods:
        if m in (FULL, BASE):
            continue
        cls = get_method(m)
        needs = set(getattr(cls, "needs", ()))
        models = len(needs & {"causal_lm", "embedder", "quality", "judge", "reward_model"})
        stages = 1 + int(bool(getattr(cls, "stages", 0)) or (models > 1))
        simplicity = 2 * models + stages + 0
        flexibility = 3 * int(models > 0) + 2 * int("target_set" in needs) + int("api_judge" in needs)
        info[m] = {"simplicity_penalty": simplicity, "flexibility_penalty": flexibility}
    if info:
        s = pd.Series({m: v["simplicity_penalty"] for m, v in info.items()}).rank(method="min")
        f = pd.Series({m: v["flexibility_penalty"] for m, v in info.items()}).rank(method="min")
        for m in info:
            info[m]["feasibility_rank_sum"] = float(s[m] + f[m])
    return info


def leaderboard(cells: list[Cell], specs: list[EvalSpec], config: BenchConfig, pool_size: int,
                recs: list[dict] | None = None) -> pd.DataFrame:
    recs = _load(cells) if recs is None else recs
    ok = [r for r in recs if not r.get("error")]
    order = [m for m in config.methods_all() + [FULL, BASE] if any(c.method == m for c in cells)]

    def values(m: str, ev: str, metric: str) -> np.ndarray:
        return np.array([r["evals"][ev][metric] for r in ok if r["method"] == m and ev in r["evals"]], dtype=float)

    feas = feasibility(order)
    rows = []
    for m in order:
        mine = [r for r in ok if r["method"] == m]
        errs = [r["error"] for r in recs if r["method"] == m and r.get("error")]
        row: dict[str, Any] = {"method": m, "seeds_done": len(mine),
                               "seeds_failed": len(errs), "error": errs[0] if errs else ""}
        row["selected"] = int(np.mean([r["selected"] for r in mine])) if mine else None
        row["SDF"] = row["selected"] / pool_size if mine and m != BASE else None
        row["selection_s"] = float(np.mean([r["selection_s"] for r in mine])) if mine else None
        row["train_s"] = float(np.mean([r["train_s"] for r in mine])) if mine else None
        pir = []
        for s in specs:
            metric, higher = headline(s.name)
            v = values(m, s.name, metric)
            col = f"{s.name}.{metric}"
            row[col] = float(v.mean()) if len(v) else None
            row[col + ".std"] = float(v.std(ddof=1)) if len(v) > 1 else None
            rnd = values(RANDOM, s.name, metric)
            if len(v) and len(rnd) and m != RANDOM:
                d, hw = _welch_ci(v, rnd)
                row[col + ".vs_random"] = d
                row[col + ".vs_random.ci95"] = hw
            full = values(FULL, s.name, metric)
            if len(v) and len(full) and full.mean() != 0:
                ratio = v.mean() / full.mean()
                pir.append(ratio if higher else 1 / ratio)   # > 1: better than the full-data model
        row["PIR"] = float(np.mean(pir)) if pir and m not in (FULL, BASE) else None
        row.update(feas.get(m, {}))
        rows.append(row)
    return pd.DataFrame(rows)


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}"
    return str(v)


def write_reports(table: pd.DataFrame, cells: list[Cell], specs: list[EvalSpec], config: BenchConfig,
                  out: Path, pool_size: int, recs: list[dict] | None = None) -> dict[str, Path]:
    from .report.svg import bar_chart, line_chart
    paths = {"csv": out / "leaderboard.csv", "md": out / "leaderboard.md", "html": out / "leaderboard.html"}
    with atomic_path(paths["csv"]) as tmp:
        table.to_csv(tmp, index=False)
    head = ["method", "selected"]
    for s in specs:
        metric, higher = headline(s.name)
        head.append(f"{s.name}.{metric}")
    lines = [f"# tunesift bench: {len(config.methods_all())} methods at budget {config.budget}, "
             f"{config.seeds} seeds, pool {pool_size:,}", "",
             f"Base model: `{config.base_model or 'smollm2-135m-instruct (default)'}`; training: "
             f"{config.train.method}, {config.train.epochs} epoch(s), lr {config.train.lr}; tunesift {__version__}.",
             "Each metric: mean ± std over seeds; Δ random: difference of means with its 95% Welch interval. "
             "NLL: lower is better. PIR (TEDD): mean over evaluations of the ratio to the full-data model "
             "(> 1 better). SDF: selected fraction.", ""]
    cols = ["method", "selected", "SDF"] + [f"{s.name} ({headline(s.name)[0]})" for s in specs] + \
           [f"Δ random {s.name}" for s in specs] + ["PIR", "feasibility", "select s", "train s", "error"]
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "---|" * len(cols))
    for _, r in table.iterrows():
        cells_ = [r["method"], _fmt(r["selected"]), _fmt(r["SDF"], 3)]
        for s in specs:
            c = f"{s.name}.{headline(s.name)[0]}"
            cells_.append(f"{_fmt(r.get(c))} ± {_fmt(r.get(c + '.std'), 2)}" if r.get(c) is not None else "–")
        for s in specs:
            c = f"{s.name}.{headline(s.name)[0]}.vs_random"
            v = r.get(c)
            cells_.append(f"{v:+.4g} ± {_fmt(r.get(c + '.ci95'), 2)}" if v is not None and not pd.isna(v) else "–")
        cells_ += [_fmt(r.get("PIR"), 4), _fmt(r.get("feasibility_rank_sum")), _fmt(r["selection_s"], 3),
                   _fmt(r["train_s"], 3), str(r["error"])[:80]]
        lines.append("| " + " | ".join(cells_) + " |")
    md = "\n".join(lines) + "\n"
    with atomic_path(paths["md"]) as tmp:
        Path(tmp).write_text(md)
    charts = []
    rnd = table[table.method == RANDOM]
    for s in specs:
        metric, higher = headline(s.name)
        c = f"{s.name}.{metric}"
        bars = [(r["method"], r[c], r.get(c + ".std") or 0.0) for _, r in table.iterrows()
                if r.get(c) is not None and not pd.isna(r.get(c))]
        ref = float(rnd[c].iloc[0]) if len(rnd) and c in rnd and not pd.isna(rnd[c].iloc[0]) else None
        charts.append(bar_chart([(m, float(v), float(e) if not pd.isna(e) else 0.0) for m, v, e in bars],
                                title=f"{s.name}: {metric} ({'higher' if higher else 'lower'} is better; dashed: random)",
                                ylabel=metric, reference=ref))
    curves = {}
    for rec in (_load(cells) if recs is None else recs):
        if rec.get("loss_curve") and rec["seed"] == 0:
            curves[rec["method"]] = [tuple(p) for p in rec["loss_curve"]]
    if curves:
        charts.append(line_chart(curves, title="Training loss (seed 0)", xlabel="step", ylabel="loss"))
    from html import escape
    html = ["<!doctype html><meta charset='utf-8'><title>tunesift bench</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 6px}</style>",
            f"<h1>tunesift bench</h1><p>{escape(lines[2])}</p><p>{escape(lines[3])}</p>",
            table.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.4g}")] + charts
    with atomic_path(paths["html"]) as tmp:
        Path(tmp).write_text("\n".join(html))
    return paths
