"""The selection report: its content against the scores table, escaping of untrusted text, the
`report` command and `select --report`, and the page in a real browser (headless Chromium)."""
from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from html import unescape
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import tunesift
from tunesift.cli import app
from tunesift.report.selection import INELIGIBLE, KEPT, pca_2d, report_run, report_selection

from .conftest import ALPACA

HOSTILE = "<script>console.error('xss')</script><img src=x onerror=\"console.error('img')\"> & \"quotes\""


def _pool(path: Path) -> Path:
    recs = []
    for i in range(36):
        r = dict(ALPACA[i % len(ALPACA)])
        r["output"] = r["output"] + " " + " ".join(["more"] * (i % 7))   # distinct texts, varied lengths
        r["category"] = ["brainstorm", "qa", "<b>code</b>"][i % 3]
        recs.append(r)
    recs[5]["output"] = HOSTILE
    recs[6]["instruction"] = HOSTILE
    path.write_text(json.dumps(recs))
    return path


def _list(html: str, name: str) -> list[str]:
    m = re.search(rf'<table class="[^"]*" data-list="{name}">(.*?)</table>', html, re.S)
    return [unescape(i) for i in re.findall(r'<tr data-id="([^"]*)"', m.group(1))] if m else []


@pytest.fixture
def ifd_run(tmp_path, tiny_llama):
    out = tmp_path / "run" / "sel.json"
    res = tunesift.select(_pool(tmp_path / "pool.json"), "ifd", 12, lm=tiny_llama, use_cache=False, progress=False,
                          output=out)
    return res, out


def test_content_matches_the_table(ifd_run, tmp_path):
    res, _ = ifd_run
    html = report_selection(res, tmp_path / "r.html").read_text()
    t = res.table
    # the lists, computed plainly from the table: IFD is higher-is-better, kept rows ordered by score
    kept = [(r.score, r.id) for r in t.itertuples() if r.selected]
    dropped = [(r.score, r.id) for r in t.itertuples() if not r.selected and r.eligible]
    assert _list(html, "top-kept") == [i for _, i in sorted(kept, key=lambda x: -x[0])][:10]
    assert _list(html, "bottom-kept") == [i for _, i in sorted(kept, key=lambda x: x[0])][:10]
    assert _list(html, "best-dropped") == [i for _, i in sorted(dropped, key=lambda x: -x[0])][:10]
    reasons = {}
    for r in t.itertuples():
        if not r.eligible:
            reasons[r.reason] = reasons.get(r.reason, 0) + 1
    assert set(_list(html, "ineligible")) == set(reasons)
    for reason, n in reasons.items():
        assert re.search(rf'data-id="{re.escape(reason)}"><td>[^<]*</td><td>{n}</td>', html.replace("&gt;", ">"))
    # the budget's cut is the worst kept score
    worst = min(s for s, _ in kept)
    assert f"cut (worst kept) {worst:.4g}" in html
    # categories: pool and kept counts per value
    cats = ["brainstorm", "qa", "<b>code</b>"]
    assert sorted(_list(html, "categories")) == sorted(cats)
    for c in cats:
        n_pool = sum(1 for i in range(36) if cats[i % 3] == c)
        n_kept = sum(1 for r in t.itertuples() if r.selected and cats[r.index % 3] == c)
        assert re.search(rf'<td>{re.escape(c.replace("<", "&lt;").replace(">", "&gt;"))}</td><td>{n_pool}</td>'
                         rf'<td>{n_kept}</td>', html)
    assert 'data-chart="scores"' in html and 'data-chart="length-response"' in html
    assert 'data-chart="projection"' not in html   # IFD embeds nothing


def test_untrusted_text_is_escaped(ifd_run, tmp_path):
    res, _ = ifd_run
    html = report_selection(res, tmp_path / "r.html").read_text()
    low = html.lower()
    assert "<script" not in low and "<img" not in low and "onerror=\"" not in low
    assert "&lt;script&gt;console.error(&#x27;xss&#x27;)&lt;/script&gt;" in html
    assert "&lt;b&gt;code&lt;/b&gt;" in html and "<b>code" not in html
    assert "default-src 'none'" in html            # and no script could run even if one slipped through
    assert not re.search(r'(src|href)="(https?:)?//', html)   # self-contained


def test_report_command_from_the_files(ifd_run, tmp_path):
    res, out = ifd_run
    expected = report_selection(res, tmp_path / "mem.html").read_text()
    runner = CliRunner()
    for run in (out, out.with_name("sel.manifest.json"), out.with_name("sel.scores.parquet")):
        r = runner.invoke(app, ["report", str(run), "-o", str(tmp_path / "f.html")])
        assert r.exit_code == 0, r.output
        got = (tmp_path / "f.html").read_text()
        # the same lists as the page built in memory: texts were found again by id
        for name in ("top-kept", "bottom-kept", "best-dropped", "ineligible", "categories"):
            assert _list(got, name) == _list(expected, name)
        assert "text not available" not in got
    # the input gone: kept texts come from the selection file, dropped ones are marked
    Path(res.dataset.path).unlink()
    assert report_run(out) == out.with_name("sel.report.html")
    got = out.with_name("sel.report.html").read_text()
    assert "is not here" in got and "kept example text(s) from the selection" in got
    top = re.search(r'data-list="top-kept">(.*?)</table>', got, re.S).group(1)
    assert "text not available" not in top
    assert "text not available" in re.search(r'data-list="best-dropped">(.*?)</table>', got, re.S).group(1)
    r = runner.invoke(app, ["report", str(tmp_path / "nothing.json")])
    assert r.exit_code == 2 and "not found" in r.output


def test_select_report_flag_draws_the_projection(tmp_path):
    pool = _pool(tmp_path / "pool.json")
    out = tmp_path / "k" / "sel.jsonl"
    r = CliRunner().invoke(app, ["select", str(pool), "-m", "kcenter", "-b", "8", "-o", str(out), "--report",
                                 "--cache-dir", str(tmp_path / "c"), "-q"])
    if r.exit_code != 0 and "all-minilm" in r.output.lower():
        pytest.skip("the packaged encoder is not installed")
    assert r.exit_code == 0, r.output
    html = out.with_name("sel.report.html").read_text()
    assert 'data-chart="projection"' in html and "log-det" in html
    svg = re.search(r'data-chart="projection".*?</svg>', html, re.S).group(0)
    groups = re.findall(r'<g class="mark" fill="([^"]+)">(.*?)</g>', svg, re.S)
    kept = next(body for color, body in groups if color == KEPT)
    assert kept.count("<circle") == 8 and sum(b.count("<circle") for _, b in groups) == 36
    # `tunesift report RUN` later has no embeddings: it says so and keeps the diversity figures
    report_run(out)
    again = out.with_name("sel.report.html").read_text()
    assert 'data-chart="projection"' not in again and "No 2-D projection" in again and "log-det" in again


def test_pca_projection_is_the_first_two_principal_components():
    X = np.random.default_rng(0).normal(size=(50, 6)) * np.array([5, 3, 1, 1, 0.5, 0.1])
    xy, (v1, v2) = pca_2d(X)
    C = X - X.mean(0)
    U, S, Vt = np.linalg.svd(C, full_matrices=False)
    for k in range(2):   # a component's sign is arbitrary
        ref = C @ Vt[k]
        assert min(np.abs(xy[:, k] - ref).max(), np.abs(xy[:, k] + ref).max()) < 1e-3
    var = S ** 2 / (S ** 2).sum()
    assert abs(v1 - var[0]) < 1e-4 and abs(v2 - var[1]) < 1e-4


# ---------------------------------------------------------------------------------------- browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0"]
needs_browser = pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"),
                                   reason="chromium is not installed (CI installs it: .ci/run)")


def _chromium(page: Path, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium is required in CI"
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp / 'profile'}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=120)


def _console(stderr: str) -> list[str]:
    # Chromium logs every console message and CSP refusal of the page on stderr; the page has no script
    return [ln for ln in stderr.splitlines() if ":CONSOLE" in ln or "Refused to" in ln]


def _png(path: Path) -> tuple[int, int, int, bytes]:
    """(width, height, channels, raw pixels) of an 8-bit, non-interlaced PNG (Chromium's screenshots)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, w, h, ch = 8, b"", 0, 0, 3
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and ctype in (2, 6)
            ch = 3 if ctype == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), w * ch
    out, prev = bytearray(), bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - ch] if i >= ch else 0
            b, c = prev[i], prev[i - ch] if i >= ch else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        out += line
        prev = line
    return w, h, ch, bytes(out)


def _pixels_of(png: Path, hex_color: str, tol: int = 6) -> int:
    w, h, ch, px = _png(png)
    a = np.frombuffer(px, np.uint8).reshape(h, w, ch)[..., :3].astype(int)
    rgb = np.array([int(hex_color[i:i + 2], 16) for i in (1, 3, 5)])
    return int((np.abs(a - rgb).max(-1) <= tol).sum())


@needs_browser
def test_the_page_in_chromium(ifd_run, tmp_path):
    res, _ = ifd_run
    page = report_selection(res, tmp_path / "r.html")
    r = _chromium(page, tmp_path, "--dump-dom")
    assert r.returncode == 0, r.stderr[-2000:]
    assert _console(r.stderr) == [], _console(r.stderr)
    dom = r.stdout
    # parsed by the browser: the charts are SVG with marks, the hostile text stayed text
    for name in ("scores", "ineligible", "length-prompt", "length-response", "categories"):
        svg = re.search(rf'<svg[^>]*data-chart="{name}".*?</svg>', dom, re.S)
        assert svg and 'class="mark"' in svg.group(0), name
    assert "<script" not in dom.lower() and "<img" not in dom.lower()
    assert "&lt;script&gt;" in dom
    # drawn: the screenshot holds the kept colour (bars) in quantity
    shot = tmp_path / "shot.png"
    # a quarter-scale shot of the whole page: small enough to decode here in plain Python
    r = _chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1200,4000", "--force-device-scale-factor=0.25",
                  "--hide-scrollbars")
    assert shot.exists(), r.stderr[-2000:]
    assert _console(r.stderr) == []
    assert _pixels_of(shot, KEPT) > 100 and _pixels_of(shot, INELIGIBLE) > 20


@needs_browser
def test_the_console_check_sees_errors(tmp_path):
    # the check above would catch a page that logs an error
    bad = tmp_path / "bad.html"
    bad.write_text("<!doctype html><title>x</title><script>console.error('boom')</script>")
    r = _chromium(bad, tmp_path, "--dump-dom")
    assert any("boom" in ln for ln in _console(r.stderr))


def test_threshold_budget_is_marked(tmp_path, tiny_llama):
    res = tunesift.select(_pool(tmp_path / "pool.json"), "ifd", ">=0.99", lm=tiny_llama, use_cache=False,
                          progress=False)
    html = report_selection(res, tmp_path / "r.html").read_text()
    svg = re.search(r'data-chart="scores".*?</svg>', html, re.S).group(0)
    assert "threshold &gt;= 0.99" in svg and svg.count('class="marker"') >= 1
    # every kept example passes the threshold, as the page's counts say
    kept = int(res.table["selected"].sum())
    assert all(s >= 0.99 for s in res.table.loc[res.table["selected"], "score"])
    assert f"{kept:,} kept</span>" in html
