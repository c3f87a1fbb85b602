"""Long runs report progress when stderr is no terminal: a line every ~30 s (stage, done/total, rate, ETA)."""
import io

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
