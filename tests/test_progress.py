"""Long runs report progress when stderr is no terminal: a line every ~30 s (stage, done/total, rate, ETA)."""
import io

import pytest
from typer.testing import CliRunner

from tunesift.cli import app
from tunesift.signals.progress import LineProgress, progress_bar

runner = CliRunner()


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_line_per_interval_with_rate_and_eta():
    out, clock = io.StringIO(), Clock()
    p = LineProgress(total=1000, desc="embedding", unit="ex", every=30, stream=out, clock=clock)
    clock.t = 10
    p.update(100)
    assert out.getvalue() == ""                  # under 30 s: nothing yet
    clock.t = 40
    p.update(300)                                # 400 done in 40 s: 10/s, 600 left: 60 s
    p.set_postfix(tok_s="1,234")
    clock.t = 50
    p.update(100)
    clock.t = 100
    p.update(500)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0] == "embedding: 400/1,000 ex (40%), 10.0 ex/s, 0:40 elapsed, ETA 1:00"
    assert lines[1] == "embedding: 1,000/1,000 ex (100%), 10.0 ex/s, 1:40 elapsed, tok_s=1,234"
    assert lines[2] == lines[1]                  # close repeats the final count once
    assert len(lines) == 3


def test_a_slow_stage_reads_in_seconds_per_unit():
    out, clock = io.StringIO(), Clock()
    p = LineProgress(total=124, desc="fine-tuning", unit="step", every=30, stream=out, clock=clock)
    clock.t = 60
    p.update(2)                                  # 30 s a step: "0.0 step/s" would say nothing
    assert out.getvalue() == "fine-tuning: 2/124 step (2%), 30.0 s/step, 1:00 elapsed, ETA 1:01:00\n"


def test_a_short_stage_stays_silent_and_no_terminal_picks_lines(monkeypatch):
    out = io.StringIO()
    p = LineProgress(total=5, desc="x", stream=out, every=30)
    p.update(5)
    p.close()
    assert out.getvalue() == ""
    monkeypatch.setattr("sys.stderr", io.StringIO())   # not a TTY
    assert isinstance(progress_bar(total=3, desc="d", unit="ex"), LineProgress)
    assert not isinstance(progress_bar(total=3, disable=True), LineProgress)


def test_cli_select_without_a_terminal_prints_progress_lines(tiny_model_dir, alpaca_file, tmp_path, monkeypatch):
    monkeypatch.setenv("TUNESIFT_PROGRESS_EVERY", "0")
    r = runner.invoke(app, ["select", str(alpaca_file), "-m", "ifd", "-b", "3", "-o", str(tmp_path / "s.json"),
                            "--model", str(tiny_model_dir), "--no-cache"])
    assert r.exit_code == 0, r.output
    assert any("/8 ex (" in ln and "ex/s" in ln for ln in r.output.splitlines()), r.output
    r = runner.invoke(app, ["select", str(alpaca_file), "-m", "ifd", "-b", "3", "-o", str(tmp_path / "q.json"),
                            "--model", str(tiny_model_dir), "--no-cache", "-q"])
    assert r.exit_code == 0 and "ex/s" not in r.output


def _kcenter_log(monkeypatch, **kw):
    """stderr of a k-center run where stderr is a file (a Slurm log), a line per update."""
    import numpy as np
    from tunesift.selectors.kcenter import kcenter_greedy
    monkeypatch.setenv("TUNESIFT_PROGRESS_EVERY", "0")
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    X = np.random.default_rng(0).standard_normal((400, 8)).astype(np.float32)
    assert len(kcenter_greedy(X, 25, **kw)) == 25
    return err.getvalue()


def test_kcenter_writes_progress_lines_without_a_terminal(monkeypatch):
    log = _kcenter_log(monkeypatch, progress=True)
    lines = log.splitlines()
    assert "\r" not in log and lines and all(ln.startswith("k-center: ") for ln in lines)
    assert lines[-1].startswith("k-center: 25/25 pick (100%), ") and "pick/s" in lines[-1]
    assert any(ln.startswith("k-center: 12/25 pick (48%), ") and ", ETA " in ln for ln in lines)
    assert _kcenter_log(monkeypatch, progress=False) == ""


def test_kcenter_progress_follows_the_log_level_by_default(monkeypatch, caplog):
    import logging
    caplog.set_level(logging.INFO, logger="tunesift")       # the CLI without -q
    assert "k-center: 25/25 pick (100%)" in _kcenter_log(monkeypatch)
    caplog.set_level(logging.WARNING, logger="tunesift")    # -q
    assert _kcenter_log(monkeypatch) == ""


def test_other_selector_loops_write_progress_lines(monkeypatch):
    import numpy as np
    from tunesift.selectors.kcenter import kcenter_torch
    from tunesift.selectors.neighbors import knn_graph
    from tunesift.selectors.submodular import dpp_greedy, facility_location, similarity
    monkeypatch.setenv("TUNESIFT_PROGRESS_EVERY", "0")
    err = io.StringIO()
    monkeypatch.setattr("sys.stderr", err)
    X = np.random.default_rng(1).standard_normal((300, 8)).astype(np.float32)
    kcenter_torch(X, 10, device="cpu", progress=True)
    knn_graph(X, 5, index="exact", chunk=100, progress=True)
    knn_graph(X, 5, index="ivf", progress=True)
    facility_location(similarity(X), 10, progress=True)
    dpp_greedy(X, 10, progress=True)
    out = err.getvalue()
    for line in ("k-center: 10/10 pick (100%)", "k-NN graph: 300/300 pt (100%)",
                 "facility location: 10/10 pick (100%)", "DPP greedy: 10/10 pick (100%)"):
        assert line in out, out
    assert out.count("k-NN graph: 300/300 pt (100%)") >= 2      # exact and IVF


def test_cli_kcenter_into_a_log_file_reports_its_picks(tmp_path):
    """The CLI as a batch job runs it: stderr is a file, and k-center (called by its method with no
    progress flag) reports through the logger level the CLI sets."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path
    pool = tmp_path / "pool.json"
    pool.write_text(json.dumps([{"instruction": f"Task {i}: say something about item {i}", "input": "",
                                 "output": "word " * (i % 9 + 1) + str(i)} for i in range(40)]))
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, TUNESIFT_PROGRESS_EVERY="0", PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(tmp_path / "stderr.log", "w") as log:
        r = subprocess.run([sys.executable, "-c", "from tunesift.cli import main; main()", "select", str(pool),
                            "-m", "kcenter", "-b", "8", "-o", str(tmp_path / "sel.json"), "--no-cache"],
                           stdout=subprocess.PIPE, stderr=log, text=True, env=env, timeout=600)
    err = (tmp_path / "stderr.log").read_text()
    if r.returncode != 0 and "all-minilm" in err.lower():
        pytest.skip("the packaged encoder is not installed")
    assert r.returncode == 0, err
    assert "k-center: 8/8 pick (100%)" in err and "\r" not in err, err


def test_cli_train_without_a_terminal_prints_step_lines(tiny_model_dir, alpaca_file, tmp_path, monkeypatch):
    # a fine-tune in a Slurm log used to be silent: tqdm was disabled when stderr was no terminal
    monkeypatch.setenv("TUNESIFT_PROGRESS_EVERY", "0")
    r = runner.invoke(app, ["train", str(alpaca_file), "-o", str(tmp_path / "m"), "--model", str(tiny_model_dir),
                            "-t", "epochs=1", "-t", "batch_size=4"])
    assert r.exit_code == 0, r.output
    assert any(ln.startswith("fine-tuning: ") and ("step/s" in ln or "s/step" in ln) and "loss=" in ln for ln in r.output.splitlines()), r.output
    r = runner.invoke(app, ["train", str(alpaca_file), "-o", str(tmp_path / "q"), "--model", str(tiny_model_dir),
                            "-t", "epochs=1", "-t", "batch_size=4", "-q"])
    assert r.exit_code == 0 and "step/s" not in r.output and "s/step" not in r.output
