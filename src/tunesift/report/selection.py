"""One self-contained HTML page per selection, for a person deciding whether to trust it.

Built from what ``tunesift select`` writes (the scores table and the manifest) and the examples'
texts: the score distribution with the budget's threshold and cut, why examples were ineligible,
the extreme kept and the best dropped examples, a 2-D projection of the pool for embedding methods,
the diversity figures, and length and source/category breakdowns of kept vs pool.

Static inline SVG, no script, no network: the page opens from disk anywhere, and a
Content-Security-Policy forbids scripts and remote loads, so data that escaped escaping still could
not run or call out.  Every text from the data is HTML-escaped: it is untrusted.

The projection needs the method's embeddings, which the selection files do not hold: ``select
--report`` draws it from the embeddings in memory; ``tunesift report RUN`` says where it is absent.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from ..data.errors import TunesiftError
from ..data.example import Dataset, Example, question_text
from ..data.io import atomic_path, read_dataset
from ..methods import get_method
from .svg import hbars, histogram, scatter

KEPT, DROPPED, INELIGIBLE, POOL = "#2ca02c", "#8c9bab", "#d62728", "#1f77b4"
BASE_COLUMNS = ("id", "index", "line", "score", "eligible", "reason", "selected", "rank", "status", "why")
# Raw-record fields that name where an example came from or what kind it is.
GROUP_FIELDS = ("category", "source", "sources", "task", "task_name", "dataset", "domain", "type")
N_SHOWN = 10
PREVIEW = 400          # characters shown before the rest folds away
MAX_TEXT = 4000        # characters kept at all (the page stays readable on long conversations)
MAX_POINTS = 4000      # points per group in the projection (seeded sample beyond)


@dataclass
class Run:
    """A finished selection read back from disk."""

    table: pd.DataFrame
    manifest: dict
    examples: dict[str, Example] = field(default_factory=dict)
    texts_note: str = ""
    stem: Path | None = None


def run_paths(run: str | Path) -> dict[str, Path]:
    """RUN (the selection's data file, its ``.manifest.json`` or its ``.scores.parquet``) -> its files."""
    p = Path(run)
    name = p.name
    for ext in (".manifest.json", ".scores.parquet", ".report.html", ".jsonl.gz", ".json.gz", ".jsonl", ".json",
                ".parquet", ".csv"):
        if name.lower().endswith(ext):
            stem = p.with_name(name[: -len(ext)])
            break
    else:
        raise TunesiftError(f"{run}: give the selection's data file, its .manifest.json or its .scores.parquet")
    return {"manifest": stem.with_name(stem.name + ".manifest.json"),
            "scores": stem.with_name(stem.name + ".scores.parquet"), "stem": stem,
            "report": stem.with_name(stem.name + ".report.html")}


def _where(path: str | None, beside: Path) -> Path | None:
    """A path the manifest recorded, as given or (moved runs) beside the manifest."""
    if not path:
        return None
    p = Path(path)
    for cand in (p, beside / p.name):
        if cand.exists():
            return cand
    return None


def load_run(run: str | Path) -> Run:
    paths = run_paths(run)
    for k in ("manifest", "scores"):
        if not paths[k].exists():
            raise TunesiftError(f"{paths[k]} not found: a report reads what `tunesift select -o ...` writes "
                                "(the data file, <stem>.scores.parquet and <stem>.manifest.json)")
    manifest = json.loads(paths["manifest"].read_text())
    table = pd.read_parquet(paths["scores"])
    if "selected" not in table:
        raise TunesiftError(f"{paths['scores']} has no selection (a `tunesift score` table): run `tunesift select`")
    ids = set(table["id"].astype(str))
    examples: dict[str, Example] = {}
    notes = []
    # Texts: the input pool (every example); failing that, the selection's own file (kept ones only).
    data = manifest.get("data", {})
    src = _where(data.get("path"), paths["manifest"].parent)
    if src is not None:
        try:
            ds = read_dataset(src, format=data.get("format"), on_error="skip",
                              limit=manifest.get("counts", {}).get("records_read"))
            examples = {e.id: e for e in ds.examples if e.id in ids}
            notes.append(f"texts from the input {src}")
        except Exception as e:  # noqa: BLE001 - a report without texts is still worth writing
            notes.append(f"the input {src} could not be read ({type(e).__name__}: {e})")
    else:
        notes.append(f"the input {data.get('path')} is not here")
    missing = ids - set(examples)
    sel = _where(manifest.get("outputs", {}).get("data"), paths["manifest"].parent)
    if missing and sel is not None:
        try:
            extra = {e.id: e for e in read_dataset(sel, on_error="skip").examples if e.id in missing}
            examples.update(extra)
            if extra:
                notes.append(f"{len(extra):,} kept example text(s) from the selection {sel}")
        except Exception as e:  # noqa: BLE001
            notes.append(f"the selection {sel} could not be read ({type(e).__name__}: {e})")
    if len(examples) < len(ids):
        notes.append(f"{len(ids) - len(examples):,} example(s) without text")
    return Run(table, manifest, examples, "; ".join(notes), paths["stem"])


def report_run(run: str | Path, output: str | Path | None = None) -> Path:
    """``tunesift report RUN``: the page for a selection on disk (without the projection: the
    embeddings are not among the selection's files)."""
    r = load_run(run)
    out = Path(output) if output is not None else run_paths(run)["report"]
    html = selection_report(r.table, r.manifest, r.examples, texts_note=r.texts_note,
                            projection_note="the embeddings are not among the selection's files: "
                            "`tunesift select ... --report` draws the projection while they are in memory")
    return _write(html, out)


def report_selection(res, path: str | Path) -> Path:
    """The page for a ``SelectionResult`` still in memory (``tunesift select --report``), with the
    projection of the method's embeddings where it has some."""
    return write_selection_report(res.table, res.manifest, path, res.dataset, getattr(res.method, "embeddings_", None),
                                  res.method.higher_is_better, res.context.seed)


def write_selection_report(table: pd.DataFrame, manifest: dict, path: str | Path, dataset: Dataset | None = None,
                           embeddings: np.ndarray | None = None, higher_is_better: bool | None = None,
                           seed: int = 0) -> Path:
    """``select --report``: the page with the projection drawn from the method's embeddings."""
    examples = {e.id: e for e in dataset.examples} if dataset is not None else {}
    proj = None
    if embeddings is not None and len(embeddings) == len(table) and len(table) > 2:
        proj = pca_2d(embeddings, seed)
    return _write(selection_report(table, manifest, examples, projection=proj, higher_is_better=higher_is_better,
                                   seed=seed, texts_note="texts from the input, in memory"), Path(path))


def _write(html: str, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(html, encoding="utf-8")
    return path


def pca_2d(X: np.ndarray, seed: int = 0) -> tuple[np.ndarray, tuple[float, float]]:
    """The pool's first two principal components and the share of variance each explains."""
    p = PCA(n_components=2, random_state=seed)
    xy = p.fit_transform(np.asarray(X, np.float32))
    return xy, (float(p.explained_variance_ratio_[0]), float(p.explained_variance_ratio_[1]))


# ---------------------------------------------------------------------------------------------- page

def _num(v, digits: int = 4) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "–"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return f"{int(v):,}"
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.{digits}g}"
    return str(v)


def _table(head: list[str], rows: list[list[str]], cls: str = "", name: str = "", row_ids: list[str] | None = None) -> str:
    """Cells arrive escaped (some hold markup); headers are escaped here.  ``name``/``row_ids``
    become data-list/data-id attributes, for tests and for anyone scripting over the page."""
    h = "".join(f"<th>{escape(c)}</th>" for c in head)
    ids = row_ids or [None] * len(rows)
    body = "".join((f'<tr data-id="{escape(i)}">' if i is not None else "<tr>") + "".join(f"<td>{c}</td>" for c in r)
                   + "</tr>" for r, i in zip(rows, ids))
    attr = f' data-list="{escape(name)}"' if name else ""
    return f'<table class="{cls}"{attr}><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>'


def _text(s: str) -> str:
    s = s or ""
    cut = s[:MAX_TEXT]
    more = f" … ({len(s) - MAX_TEXT:,} more characters)" if len(s) > MAX_TEXT else ""
    if len(cut) <= PREVIEW:
        return f'<div class="txt">{escape(cut)}{escape(more)}</div>'
    return (f'<div class="txt">{escape(cut[:PREVIEW])}<details><summary>{len(s) - PREVIEW:,} more characters'
            f'</summary>{escape(cut[PREVIEW:])}{escape(more)}</details></div>')


def _direction(manifest: dict, table: pd.DataFrame, given: bool | None) -> bool:
    if given is not None:
        return given
    try:
        return bool(get_method(manifest.get("method", "")).higher_is_better)
    except Exception:  # noqa: BLE001 - a method this install lacks: read the direction off the data
        s = table["score"].to_numpy(float)
        kept = s[table["selected"].to_numpy(bool) & np.isfinite(s)]
        rest = s[~table["selected"].to_numpy(bool) & table["eligible"].to_numpy(bool) & np.isfinite(s)]
        return not (len(kept) and len(rest)) or float(np.median(kept)) >= float(np.median(rest))


def _signals(table: pd.DataFrame) -> list[str]:
    return [c for c in table.columns if c not in BASE_COLUMNS][:8]


def _groups_of(e: Example) -> tuple[str, list[str]] | None:
    for k in GROUP_FIELDS:
        v = e.raw.get(k) if isinstance(e.raw, dict) else None
        if isinstance(v, (str, int)) and not isinstance(v, bool) and str(v) != "":
            return k, [str(v)]
        if isinstance(v, list) and v and all(isinstance(x, (str, int)) for x in v):
            return k, sorted({str(x) for x in v})
    return None


def selection_report(table: pd.DataFrame, manifest: dict, examples: dict[str, Example] | None = None, *,
                     projection: tuple[np.ndarray, tuple[float, float]] | None = None,
                     projection_note: str = "", higher_is_better: bool | None = None, seed: int = 0,
                     texts_note: str = "") -> str:
    examples = examples or {}
    t = table.reset_index(drop=True)
    score = t["score"].to_numpy(float)
    kept = t["selected"].to_numpy(bool)
    elig = t["eligible"].to_numpy(bool)
    finite = np.isfinite(score)
    hib = _direction(manifest, t, higher_is_better)
    budget = manifest.get("budget", {})
    method = manifest.get("method", "?")
    sections = [_header(manifest, t, kept, elig, hib, texts_note)]
    sections.append(_distribution(t, score, kept, elig, finite, hib, budget))
    sections.append(_ineligible(t, manifest, examples))
    sections.append(_examples(t, score, kept, elig, finite, hib, examples))
    sections.append(_embedding(t, kept, manifest, projection, projection_note, seed))
    sections.append(_lengths(t, kept, examples))
    sections.append(_categories(t, kept, examples))
    title = f"tunesift · {method} · {manifest.get('data', {}).get('path', '')}"
    return "\n".join([
        "<!doctype html>", '<html lang="en"><head><meta charset="utf-8">',
        # No script, no remote load: untrusted text that slipped past escaping still could not act.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "img-src data:\">",
        '<link rel="icon" href="data:,">',
        f"<title>{escape(title)}</title>", f"<style>{CSS}</style></head><body>",
        *sections, "</body></html>"])


CSS = """body{font-family:system-ui,sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;color:#222}
h1{font-size:1.5em;margin-bottom:.2em}h2{font-size:1.15em;border-bottom:1px solid #ddd;padding-bottom:3px;margin-top:1.8em}
table{border-collapse:collapse;font-size:12.5px;margin:.5em 0}td,th{border:1px solid #d4d4d4;padding:3px 6px;vertical-align:top;text-align:left}
th{background:#f3f3f3}.ex td{max-width:420px}.txt{white-space:pre-wrap;word-break:break-word;font-family:ui-monospace,monospace;font-size:11.5px}
.note{color:#555;font-size:.9em}.kv td:first-child{font-weight:600;white-space:nowrap}.k{color:#2ca02c;font-weight:600}
.d{color:#6b7785}.i{color:#d62728}svg{display:block;margin:.6em 0;max-width:100%;height:auto}
details summary{cursor:pointer;color:#1f77b4}"""


def _header(manifest: dict, t: pd.DataFrame, kept, elig, hib: bool, texts_note: str) -> str:
    c = manifest.get("counts", {})
    model = manifest.get("model") or {}
    rows = [
        ["method", f"{escape(manifest.get('method', '?'))} — {escape(str(manifest.get('paper', '')))}"],
        ["budget", escape(str(manifest.get("budget", {}).get("spec", "")))],
        ["data", f"{escape(str(manifest.get('data', {}).get('path', '')))} ({escape(str(manifest.get('data', {}).get('format', '')))}, "
                 f"fingerprint {escape(str(manifest.get('data', {}).get('fingerprint', '')))})"],
        ["counts", f"{len(t):,} scored · {int(elig.sum()):,} eligible · <span class='k'>{int(kept.sum()):,} kept</span> · "
                   f"<span class='d'>{int((~kept & elig).sum()):,} dropped (eligible)</span> · "
                   f"<span class='i'>{int((~elig).sum()):,} ineligible</span>"
                   + (f" · {int(c['skipped_on_read']):,} skipped on read" if c.get("skipped_on_read") else "")],
        ["score", "higher is better" if hib else "lower is better"],
        ["model", escape(str(model.get("name", "–")) if isinstance(model, dict) else str(model))
         + (f"; embedder {escape(str(manifest['embedder']))}" if manifest.get("embedder") else "")],
        ["parameters", escape(json.dumps(manifest.get("parameters", {}), default=str))],
        ["timings (s)", escape(", ".join(f"{k} {v}" for k, v in manifest.get("timings_s", {}).items()))],
        ["tunesift", escape(str(manifest.get("tunesift_version", "")))],
        ["texts", escape(texts_note or "–")],
    ]
    return (f"<h1>Selection report: {escape(manifest.get('method', '?'))}</h1>"
            + _table(["", ""], rows, "kv").replace("<thead><tr><th></th><th></th></tr></thead>", ""))


def _edges(vals: np.ndarray, extra: list[float], bins: int = 40) -> np.ndarray:
    # Percentile bounds keep one outlier from flattening the rest; values beyond land in the end bins.
    lo, hi = (np.percentile(vals, [0.5, 99.5]) if len(vals) > 50 else (vals.min(), vals.max()))
    lo, hi = min([lo] + extra), max([hi] + extra)
    if hi <= lo:
        hi = lo + 1.0
    return np.linspace(lo, hi, bins + 1)


def _counts(vals: np.ndarray, edges: np.ndarray) -> list[float]:
    return np.histogram(np.clip(vals, edges[0], edges[-1]), bins=edges)[0].astype(float).tolist()


def _distribution(t, score, kept, elig, finite, hib, budget) -> str:
    out = ["<h2>Score distribution</h2>"]
    if not finite.any():
        return out[0] + "<p class='note'>No finite score to draw.</p>"
    markers, notes = [], []
    if budget.get("kind") == "threshold":
        markers.append((float(budget["value"]), f"threshold {budget.get('op', '')} {budget['value']:g}", "#000"))
    ks = score[kept & finite]
    rest = score[~kept & elig & finite]
    if len(ks) and len(rest):   # a set method scores only its picks: no ranking to cut
        cut = float(ks.min() if hib else ks.max())
        markers.append((cut, f"cut (worst kept) {cut:.4g}", "#ff7f0e"))
        better = int((rest > cut).sum() if hib else (rest < cut).sum())
        if better:
            notes.append(f"{better:,} dropped eligible example(s) score better than the worst kept one: this "
                         "selection is not a plain score cut (a set, a diversity rule or per-group quotas).")
    edges = _edges(score[finite], [m[0] for m in markers])
    layers = [("kept", _counts(score[kept & finite], edges), KEPT),
              ("dropped (eligible)", _counts(score[~kept & elig & finite], edges), DROPPED),
              ("ineligible", _counts(score[~elig & finite], edges), INELIGIBLE)]
    out.append(histogram("scores", edges.tolist(), layers, title="scores: kept, dropped, ineligible",
                         xlabel="score", markers=markers))
    nan = int((~finite).sum())
    if nan:
        unpicked = int((~finite & elig & ~kept).sum())
        notes.append(f"{nan:,} example(s) have no score and are not drawn: {int((~finite & ~elig).sum()):,} ineligible, "
                     f"{int((~finite & kept).sum()):,} kept, {unpicked:,} dropped"
                     + ("; a set method scores only its picks, with the gain each added." if unpicked else "."))
    q = np.percentile(score[finite], [0, 25, 50, 75, 100])
    notes.append("quartiles of the drawn scores: " + " · ".join(f"{v:.4g}" for v in q) +
                 "; values beyond the 0.5–99.5th percentiles are counted in the end bins.")
    out += [f"<p class='note'>{escape(n)}</p>" for n in notes]
    return "\n".join(out)


def _ineligible(t, manifest, examples) -> str:
    out = ["<h2>Why examples were ineligible</h2>"]
    reasons = t.loc[~t["eligible"].astype(bool), "reason"].astype(str).value_counts()
    skipped = manifest.get("skipped", {}) or {}
    if len(reasons):
        out.append(hbars("ineligible", [(r, [float(n)]) for r, n in reasons.items()], [("examples", INELIGIBLE)],
                         title="ineligible examples by reason", xlabel="examples"))
        rows = []
        for r, n in reasons.items():
            first = t.loc[(~t["eligible"].astype(bool)) & (t["reason"].astype(str) == r), "id"].astype(str).head(3)
            rows.append([escape(r), f"{n:,}", escape(", ".join(first))])
        out.append(_table(["reason", "examples", "first ids"], rows, name="ineligible", row_ids=list(reasons.index)))
    else:
        out.append("<p class='note'>Every scored example was eligible.</p>")
    by = skipped.get("by_reason") or skipped.get("counts") or {}
    if by:
        out.append("<p>Skipped on read (never scored): "
                   + escape(", ".join(f"{k}: {v}" for k, v in by.items())) + "</p>")
    return "\n".join(out)


def _example_rows(t: pd.DataFrame, rows: np.ndarray, examples: dict[str, Example], name: str) -> str:
    sig = _signals(t)
    body = []
    for i in rows:
        r = t.iloc[int(i)]
        e = examples.get(str(r["id"]))
        status = "kept" if bool(r["selected"]) else ("dropped" if bool(r["eligible"]) else "ineligible")
        why = f"rank {int(r['rank']) + 1:,}" if bool(r["selected"]) else str(r.get("why") or r["reason"])
        cls = {"kept": "k", "dropped": "d", "ineligible": "i"}[status]
        scores = "<br>".join([f"score {_num(float(r['score']))}"] + [f"{escape(c)} {escape(_num(r[c]))}" for c in sig])
        if e is None:
            prompt = resp = "<span class='note'>text not available</span>"
        else:
            turns = sum(m["role"] == "assistant" for m in e.messages)
            prompt = _text(question_text(e)) + (f"<span class='note'>last of {turns} turns</span>" if turns > 1 else "")
            resp = _text(e.response)
        body.append([f"{escape(str(r['id']))}<br><span class='note'>#{int(r['index']):,}, line {int(r['line']):,}</span>",
                     f"<span class='{cls}'>{status}</span><br>{escape(why)}", scores, prompt, resp])
    return _table(["id", "status / why", "scores", "prompt", "response"], body, "ex", name,
                  [str(t.iloc[int(i)]["id"]) for i in rows])


def _order(idx: np.ndarray, score: np.ndarray, best_first: bool) -> np.ndarray:
    s = score[idx]
    key = np.where(np.isfinite(s), -s if best_first else s, np.inf)   # no score: last
    return idx[np.argsort(key, kind="stable")]


def _examples(t, score, kept, elig, finite, hib, examples) -> str:
    out = ["<h2>Examples</h2>"]
    k = np.flatnonzero(kept)
    d = np.flatnonzero(~kept & elig)
    if len(k):
        out.append(f"<h3>The {min(N_SHOWN, len(k))} highest-scoring kept</h3>")
        out.append(_example_rows(t, _order(k, score, True)[:N_SHOWN], examples, "top-kept"))
        out.append(f"<h3>The {min(N_SHOWN, len(k))} lowest-scoring kept</h3>")
        out.append(_example_rows(t, _order(k, score, False)[:N_SHOWN], examples, "bottom-kept"))
    if len(d):
        out.append(f"<h3>The {min(N_SHOWN, len(d))} best dropped ({'highest' if hib else 'lowest'} scores among "
                   "eligible examples left out)</h3>")
        out.append(_example_rows(t, _order(d, score, hib)[:N_SHOWN], examples, "best-dropped"))
    if not (len(k) or len(d)):
        out.append("<p class='note'>No kept or dropped eligible example.</p>")
    return "\n".join(out)


def _embedding(t, kept, manifest, projection, note, seed) -> str:
    div = manifest.get("diversity")
    if projection is None and not div:
        return ""   # not an embedding method
    out = ["<h2>Embedding space</h2>"]
    if projection is not None:
        xy, (v1, v2) = projection
        rng = np.random.default_rng(seed)

        def pts(idx):
            if len(idx) > MAX_POINTS:
                idx = np.sort(rng.choice(idx, MAX_POINTS, replace=False))
            return [(float(xy[i, 0]), float(xy[i, 1])) for i in idx]
        rest, k = np.flatnonzero(~kept), np.flatnonzero(kept)
        out.append(scatter("projection", [(f"pool, not kept ({len(rest):,})", pts(rest), DROPPED, 1.6),
                                          (f"kept ({len(k):,})", pts(k), KEPT, 2.4)],
                           title="the pool's embeddings, first two principal components",
                           xlabel=f"PC1 ({v1:.1%} of variance)", ylabel=f"PC2 ({v2:.1%})"))
        if len(rest) > MAX_POINTS or len(k) > MAX_POINTS:
            out.append(f"<p class='note'>A seeded sample of at most {MAX_POINTS:,} points per group is drawn.</p>")
    else:
        out.append(f"<p class='note'>No 2-D projection: {escape(note or 'no embeddings were given')}.</p>")
    if div:
        p, s = div.get("pool", {}), div.get("selection", {})
        rows = [[escape(lab), _num(p.get(key)), _num(s.get(key))] for lab, key in (
            ("examples", "n"), ("log-det", "logdet"), ("mean pairwise distance", "mean_pairwise_distance"),
            ("Vendi score", "vendi"), ("coverage radius (largest pool-to-kept distance)", "coverage_radius"))]
        out.append(_table(["diversity", "pool", "selection"], rows))
        if div.get("note"):
            out.append(f"<p class='note'>{escape(str(div['note']))}</p>")
    return "\n".join(out)


def _lengths(t, kept, examples) -> str:
    have = np.array([str(i) in examples for i in t["id"]], dtype=bool)
    if not have.any():
        return "<h2>Lengths</h2><p class='note'>No texts: lengths cannot be measured.</p>"
    out = ["<h2>Lengths (characters)</h2>"]
    ids = t["id"].astype(str).to_numpy()
    rows = []
    for name, get in (("prompt", question_text), ("response", lambda e: e.response)):
        n = np.array([len(get(examples[i])) if h else -1 for i, h in zip(ids, have)], dtype=float)
        pool, sel = n[have], n[have & kept]
        hi = max(float(np.percentile(pool, 99)), 1.0)
        edges = np.linspace(0, hi, 31)
        share = lambda v: (np.asarray(_counts(v, edges)) / max(len(v), 1)).tolist()  # noqa: E731
        out.append(histogram(f"length-{name}", edges.tolist(), [("pool", share(pool), POOL), ("kept", share(sel), KEPT)],
                             title=f"{name} length: share of pool vs share of kept", xlabel="characters",
                             ylabel="share", stacked=False, height=240))
        for lab, v in (("pool", pool), ("kept", sel)):
            rows.append([name, lab, f"{len(v):,}"] + ([_num(float(x), 5) for x in
                        (v.mean(), *np.percentile(v, [10, 50, 90]), v.max())] if len(v) else ["–"] * 5))
    out.append(_table(["text", "", "examples", "mean", "p10", "median", "p90", "max"], rows))
    out.append("<p class='note'>The prompt is the instruction and input (or the last user turn); the last bin "
               "holds everything beyond the pool's 99th percentile.</p>")
    return "\n".join(out)


def _categories(t, kept, examples) -> str:
    ids = t["id"].astype(str).to_numpy()
    found = [(_groups_of(examples[i]) if i in examples else None) for i in ids]
    named = [f for f in found if f is not None]
    if len(named) < max(1, len(found) // 2):
        return ("<h2>Source / category</h2><p class='note'>The data has no source or category field ("
                + escape(", ".join(GROUP_FIELDS)) + ") on most examples.</p>")
    key = max(set(k for k, _ in named), key=lambda k: sum(f[0] == k for f in named))
    pool: dict[str, int] = {}
    sel: dict[str, int] = {}
    for f, is_kept in zip(found, kept):
        for v in (f[1] if f is not None and f[0] == key else ["(none)"]):
            pool[v] = pool.get(v, 0) + 1
            if is_kept:
                sel[v] = sel.get(v, 0) + 1
    n_pool, n_sel = len(found), max(int(kept.sum()), 1)
    top = sorted(pool, key=lambda v: -pool[v])[:20]
    out = [f"<h2>Source / category: <code>{escape(key)}</code></h2>"]
    out.append(hbars("categories", [(v, [pool[v] / n_pool, sel.get(v, 0) / n_sel]) for v in top],
                     [("share of pool", POOL), ("share of kept", KEPT)], title=f"{key}: share of pool vs share of kept",
                     percent=True))
    out.append(_table([key, "pool", "kept", "share of pool", "share of kept", "kept rate"],
                      [[escape(v), f"{pool[v]:,}", f"{sel.get(v, 0):,}", f"{pool[v] / n_pool:.1%}",
                        f"{sel.get(v, 0) / n_sel:.1%}", f"{sel.get(v, 0) / pool[v]:.1%}"] for v in top],
                      name="categories", row_ids=top))
    notes = []
    if len(pool) > len(top):
        notes.append(f"the {len(top)} largest of {len(pool):,} values")
    if any(f is not None and len(f[1]) > 1 for f in found):
        notes.append("an example with several values counts under each")
    if notes:
        out.append(f"<p class='note'>{escape('; '.join(notes))}.</p>")
    return "\n".join(out)
