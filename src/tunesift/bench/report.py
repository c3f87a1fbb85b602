"""The bench's reports: the leaderboard table (means, spreads, the difference from random with its
Welch interval, PIR and TEDD's feasibility) and its Markdown, CSV and HTML renderings."""
from __future__ import annotations

import json
import math
from html import escape
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..data.writers import atomic_path
from ..evaluate.tasks import EvalSpec, headline
from ..methods import get_method
from ..methods.registry import MODEL_NEEDS
from ..report.svg import bar_chart, line_chart
from .config import BASE, FULL, RANDOM, BenchConfig
from .plan import Cell
from .stats import welch_ci


def load_records(cells: list[Cell]) -> list[dict]:
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
        needs = set(cls.needs)    # registry.NEEDS words (checked at register)
        models = len(needs & MODEL_NEEDS)
        stages = 1 + int(cls.stages > 1)
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
    recs = load_records(cells) if recs is None else recs
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
                d, hw = welch_ci(v, rnd)
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
    for rec in (load_records(cells) if recs is None else recs):
        if rec.get("loss_curve") and rec["seed"] == 0:
            curves[rec["method"]] = [tuple(p) for p in rec["loss_curve"]]
    if curves:
        charts.append(line_chart(curves, title="Training loss (seed 0)", xlabel="step", ylabel="loss"))
    html = ["<!doctype html><meta charset='utf-8'><title>tunesift bench</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 6px}</style>",
            f"<h1>tunesift bench</h1><p>{escape(lines[2])}</p><p>{escape(lines[3])}</p>",
            table.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.4g}")] + charts
    with atomic_path(paths["html"]) as tmp:
        Path(tmp).write_text("\n".join(html))
    return paths
