"""The bench's reports: the leaderboard table (means, spreads, the difference from random with its
Welch interval, PIR and TEDD's feasibility) and its Markdown, CSV and HTML renderings."""
from __future__ import annotations

import json
import math
import os
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
from ..report.svg import forest, line_chart
from .config import BASE, FULL, RANDOM, BenchConfig
from .plan import Cell
from .stats import bh_adjusted, welch_ci, welch_p


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
                row[col + ".vs_random.p"] = welch_p(v, rnd)
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


def _val(r: Any, col: str) -> float | None:
    v = r.get(col) if hasattr(r, "get") else None
    return None if v is None or pd.isna(v) else float(v)


def signal(table: pd.DataFrame, specs: list[EvalSpec]) -> dict[str, dict]:
    """Which evaluations can tell the selections apart here: the models trained as every method's
    are (random, at the selection's size, over its seeds) must beat the untrained base model by more
    than twice their own spread over seeds; an evaluation on which they score like the base model
    measures nothing at this size.  The full-pool model's gap is reported beside it, not required:
    under the papers' fixed-epoch recipe the whole pool takes 1/budget times the steps on the
    same examples, and a small pool overfits (docs/leaderboard.md, "Does the recipe train?").  Without
    random, the full-pool model stands in; without the base model, every evaluation counts."""
    out = {}
    by = {r["method"]: r for _, r in table.iterrows()}
    for s in specs:
        metric, higher = headline(s.name)
        col = f"{s.name}.{metric}"
        full, base, rnd = (_val(by.get(m, {}), col) for m in (FULL, BASE, RANDOM))
        noise = _val(by.get(RANDOM, {}), col + ".std") or 0.0

        def gain(v):
            return None if v is None or base is None else (v - base) if higher else (base - v)
        ref = rnd if rnd is not None else full
        g = gain(ref)
        out[s.name] = {"signal": True if g is None else bool(g > 2 * noise and g > 0), "gap": g,
                       "full_gap": gain(full), "noise": noise, "base": base, "random": rnd, "full": full,
                       "reference": RANDOM if rnd is not None else FULL if full is not None else None,
                       "spread": _val(by.get(RANDOM, {}), col + ".std") is not None}
    return out


def _sorted(table: pd.DataFrame, col: str | None, higher: bool) -> pd.DataFrame:
    """Methods (random among them) by the primary metric, best first; then the full pool and the base model."""
    refs = table[table.method.isin([FULL, BASE])]
    rest = table[~table.method.isin([FULL, BASE])]
    if col is not None and col in rest:
        rest = rest.sort_values(col, ascending=not higher, na_position="last", kind="stable")
    return pd.concat([rest, refs])


def recipe(recs: list[dict], specs: list[EvalSpec]) -> list[str]:
    """Does the training recipe train?  The references (random, full pool) against the untrained base
    model: their training loss, first step to last, and each evaluation's NLL per token and per example
    (means over seeds; in brackets the change from the base model)."""
    nll = [s for s in specs if headline(s.name)[0] == "nll"]
    refs = [m for m in (BASE, RANDOM, FULL) if any(r["method"] == m and not r.get("error") for r in recs)]
    if BASE not in refs or len(refs) < 2 or not nll:
        return []

    def mean(m: str, get) -> float | None:
        vals = []
        for r in recs:
            if r["method"] == m and not r.get("error"):
                try:
                    v = get(r)
                except (KeyError, TypeError):
                    continue
                if v is not None and math.isfinite(float(v)):
                    vals.append(float(v))
        return float(np.mean(vals)) if vals else None

    base = {(s.name, k): mean(BASE, lambda r, s=s, k=k: r["evals"][s.name][k]) for s in nll
            for k in ("nll", "nll_per_example")}
    cols = ["model", "seeds", "train loss, first → last step"] + [f"{s.name} {k}" for s in nll
                                                                   for k in ("per token", "per example")]
    lines = ["## Does the recipe train?", "",
             "The references against the untrained base model (means over seeds; in brackets the change from "
             "the base model, negative is better). A recipe that trains lowers the held-out NLL below the base "
             "model's; per example weighs every reference answer alike, so short answers (where a base model "
             "misses the format and the end of the answer) count as much as long ones.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for m in refs:
        n = sum(r["method"] == m and not r.get("error") for r in recs)
        first = mean(m, lambda r: r["train"]["first_loss"])
        last = mean(m, lambda r: r["train"]["last_loss"])
        row = [f"**{m}**", str(n), f"{first:.3f} → {last:.3f}" if first is not None and last is not None else "–"]
        for s in nll:
            for k in ("nll", "nll_per_example"):
                v, b = mean(m, lambda r, s=s, k=k: r["evals"][s.name][k]), base[(s.name, k)]
                row.append("–" if v is None else f"{v:.4g}" if m == BASE or b is None else f"{v:.4g} ({v - b:+.3g})")
        lines.append("| " + " | ".join(row) + " |")
    return lines + [""]


def reading(table: pd.DataFrame, specs: list[EvalSpec], sig: dict[str, dict]) -> list[str]:
    """The plain reading the numbers allow: per evaluation with signal, who beats random beyond its
    95% interval and who loses to it; then, since many methods meet one random baseline, what chance
    alone would put outside the intervals and who still differs after Benjamini-Hochberg's correction."""
    lines = []
    for s in specs:
        if not sig[s.name]["signal"]:
            continue
        metric, higher = headline(s.name)
        col = f"{s.name}.{metric}.vs_random"
        win, lose, tie = [], [], []
        for _, r in table.iterrows():
            d, hw = _val(r, col), _val(r, col + ".ci95")
            if r["method"] in (FULL, BASE, RANDOM) or d is None:
                continue
            better = d > 0 if higher else d < 0
            if hw is not None and abs(d) > hw:
                (win if better else lose).append(f"{r['method']} ({d:+.3g} ± {hw:.2g})")
            else:
                tie.append(r["method"])
        lines.append(f"- **{s.name}** ({metric}, {'higher' if higher else 'lower'} is better): "
                     f"beat random beyond the interval: {', '.join(win) or 'none'}; "
                     f"lose to it beyond the interval: {', '.join(lose) or 'none'}; "
                     f"within the interval: {len(tie)} method(s).")
        rows = [r for _, r in table.iterrows()
                if r["method"] not in (FULL, BASE, RANDOM) and _val(r, col + ".p") is not None]
        if len(rows) > 1:
            q = bh_adjusted(np.array([_val(r, col + ".p") for r in rows]))
            kept = [f"{r['method']} (q = {qi:.2g})" for r, qi in zip(rows, q) if qi < 0.05]
            lines.append(f"  {len(rows)} methods were each compared with random at 95%: with none of them different "
                         f"from random, about {0.05 * len(rows):.1f} would still fall outside their interval by "
                         f"chance. After Benjamini-Hochberg's correction over the {len(rows)} comparisons on this evaluation "
                         f"(Welch p-values, false discovery rate 5%): {', '.join(kept) or 'none'} differ from random.")
    return lines


def write_reports(table: pd.DataFrame, cells: list[Cell], specs: list[EvalSpec], config: BenchConfig,
                  out: Path, pool_size: int, recs: list[dict] | None = None,
                  markdown: Path | None = None, notes: Path | None = None) -> dict[str, Path]:
    """leaderboard.{csv,md,html} and the charts (SVG files) in ``out``; ``markdown``: the Markdown
    report also at that path (links to the charts made relative to it); ``notes``: a hand-written
    reading appended to the generated one, if the file exists."""
    recs = load_records(cells) if recs is None else recs
    paths = {"csv": out / "leaderboard.csv", "md": out / "leaderboard.md", "html": out / "leaderboard.html"}
    sig = signal(table, specs)
    live = [s for s in specs if sig[s.name]["signal"]]
    primary = live[0] if live else (specs[0] if specs else None)
    pcol, phigher = (f"{primary.name}.{headline(primary.name)[0]}", headline(primary.name)[1]) if primary else (None, True)
    table = _sorted(table, pcol, phigher)
    with atomic_path(paths["csv"]) as tmp:
        table.to_csv(tmp, index=False)
    errors = [r for r in recs if r.get("error")]
    tc = config.train
    head = [f"# tunesift bench: {len(config.methods_all())} methods at budget {config.budget}, "
            f"{config.seeds} seeds, pool {pool_size:,}", "",
            f"Base model: `{config.base_model or 'smollm2-135m-instruct (default)'}`; scoring model: "
            f"`{config.score_model or 'the base model'}`"
            + "".join(f", `{m}` for {k}" for k, m in config.method_models.items())
            + "".join(f"; {k}: " + ", ".join(f"`{a}={v}`" for a, v in ps.items())
                      for k, ps in config.method_params.items() if ps) + "; training: "
            f"{tc.method}, {tc.epochs:g} epoch(s), lr {tc.learning_rate or 'default'}, {tc.batch_size} examples per step, "
            f"{tc.lr_schedule} schedule, max {tc.max_length} tokens; template {config.template}; tunesift {__version__}."
            + (f" Target-set methods' target: {config.target} (held out of that evaluation)." if config.target else ""),
            "",
            "Each metric: mean ± std over seeds; Δ random: difference of means with its 95% Welch interval "
            "(3 seeds each: wide). NLL: response-token negative log-likelihood of reference answers, lower is better. "
            "PIR (TEDD): mean over evaluations of the ratio to the full-data model (> 1 better). "
            "SDF: selected fraction. Feasibility: TEDD's rank sum (lower is simpler). Rows: methods by "
            f"{pcol or 'the first evaluation'}, best first; then the references full pool and base model.", ""]
    cols = ["method", "SDF"] + [f"{s.name} ({headline(s.name)[0]})" for s in live] + \
           [f"Δ random {s.name}" for s in live] + ["PIR", "feasibility", "select s", "train s", "seeds"]
    body = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, r in table.iterrows():
        row = [f"**{r['method']}**" if r["method"] in (RANDOM, FULL, BASE) else r["method"], _fmt(r["SDF"], 3)]
        for s in live:
            c = f"{s.name}.{headline(s.name)[0]}"
            row.append(f"{_fmt(r.get(c))} ± {_fmt(r.get(c + '.std'), 2)}" if _val(r, c) is not None else "–")
        for s in live:
            c = f"{s.name}.{headline(s.name)[0]}.vs_random"
            v = _val(r, c)
            row.append(f"{v:+.3g} ± {_fmt(r.get(c + '.ci95'), 2)}" if v is not None else "–")
        seeds = f"{r['seeds_done']}" + (f" ({r['seeds_failed']} failed)" if r["seeds_failed"] else "")
        row += [_fmt(_val(r, "PIR"), 4), _fmt(_val(r, "feasibility_rank_sum")), _fmt(_val(r, "selection_s"), 3),
                _fmt(_val(r, "train_s"), 3), seeds]
        body.append("| " + " | ".join(row) + " |")
    dead = [s for s in specs if not sig[s.name]["signal"]]
    recipe_lines = recipe(recs, specs)
    has_recipe = bool(recipe_lines)
    sig_lines = ["## Which evaluations carry signal", "",
                 "An evaluation goes in the table when the models trained as the methods' are (random, at the "
                 "selection's size) beat the untrained base model by more than twice their spread over seeds "
                 "(gain: the improvement over the base model, positive is better). The full-pool model's gain is "
                 "shown, not required: with a fixed number of epochs the whole pool takes 1/budget times the "
                 "steps, and a small pool overfits" + (" (see \"Does the recipe train?\")." if has_recipe else ".")
                 + " Without random cells the full-pool model stands in (marked); without a spread over seeds "
                 "(one seed) the rule asks only for a gain.", "",
                 "| evaluation | base | random | full pool | gain, random | gain, full pool | 2 × random std | "
                 "in the table |", "|---|---|---|---|---|---|---|---|"]
    for s in specs:
        g = sig[s.name]
        gain_ref = _fmt(g["gap"]) + (" (full pool)" if g["reference"] == FULL else "")
        sig_lines.append(f"| {s.name} ({headline(s.name)[0]}) | {_fmt(g['base'])} | {_fmt(g['random'])} | "
                         f"{_fmt(g['full'])} | {gain_ref} | {_fmt(g['full_gap'])} | "
                         f"{_fmt(2 * g['noise']) if g['spread'] else 'no spread'} | "
                         f"{'yes' if g['signal'] else 'no'} |")
    charts: dict[str, str] = {}
    for s in live:
        metric, higher = headline(s.name)
        c = f"{s.name}.{metric}.vs_random"
        rows = [(r["method"], float(r[c]), _val(r, c + ".ci95") if _val(r, c + ".ci95") is not None else float("nan"))
                for _, r in table.iterrows() if r["method"] not in (FULL, BASE, RANDOM) and _val(r, c) is not None]
        charts[f"delta_{s.name}.svg"] = forest(
            f"delta_{s.name}", rows, title=f"{s.name}: difference from random ({metric}), 95% interval",
            xlabel=f"Δ {metric} vs random ({'left' if not higher else 'right'} is better; green/red: beyond the interval)",
            better="right" if higher else "left")
    curves = {}
    for rec in recs:
        if rec.get("loss_curve") and rec["seed"] == 0 and not rec.get("error"):
            curves[rec["method"]] = [tuple(p) for p in rec["loss_curve"]]
    if curves:
        charts["training_curves.svg"] = line_chart(curves, title="Training loss (seed 0)", xlabel="step", ylabel="loss",
                                                   width=760, height=360)
    for name, svg in charts.items():
        with atomic_path(out / name) as tmp:
            Path(tmp).write_text(svg)

    def md(at: Path) -> str:
        rel = Path(os.path.relpath(out, at.parent))
        text = head + body + [""]
        text += [f"![{n[:-4]}]({(rel / n).as_posix()})" for n in charts] + [""]
        text += recipe_lines + sig_lines + [""]
        if dead:
            text += [f"Left out for lack of signal: {', '.join(s.name for s in dead)}.", ""]
        text += ["## Reading (generated)", ""] + (reading(table, live, sig) or ["- no evaluation carries signal."]) + [""]
        if errors:
            text += ["## Failed cells", ""] + [f"- {r['method']} seed {r['seed']}: {str(r['error'])[:200]}"
                                               for r in errors] + [""]
        if notes is not None and notes.exists():
            text += [notes.read_text().rstrip(), ""]
        return "\n".join(text) + "\n"
    for at in [paths["md"]] + ([Path(markdown)] if markdown else []):
        with atomic_path(at) as tmp:
            Path(tmp).write_text(md(at))
    html = ["<!doctype html><meta charset='utf-8'><title>tunesift bench</title>",
            "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;font-size:13px}"
            "td,th{border:1px solid #ccc;padding:3px 6px}</style>",
            f"<h1>tunesift bench</h1><p>{escape(head[2])}</p><p>{escape(head[4])}</p>",
            table.to_html(index=False, na_rep="–", float_format=lambda v: f"{v:.4g}")] + list(charts.values())
    with atomic_path(paths["html"]) as tmp:
        Path(tmp).write_text("\n".join(html))
    return paths
