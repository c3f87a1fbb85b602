import json

import pandas as pd
from typer.testing import CliRunner

from tunesift.cli import app

from .conftest import ALPACA

runner = CliRunner()


def test_help_and_methods():
    r = runner.invoke(app, ["--help"])
    assert r.exit_code == 0 and "tunesift select" in r.output
    r = runner.invoke(app, ["methods", "--json"])
    names = {m["name"] for m in json.loads(r.output)}
    assert {"ifd", "superfiltering", "rifd", "perplexity", "grape", "random"} <= names


def test_select_with_local_model_dir(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "out" / "sel.json"
    args = ["select", str(alpaca_file), "-m", "ifd", "-b", "50%", "-o", str(out), "--model", str(tiny_model_dir),
            "--cache-dir", str(tmp_path / "c"), "-q", "-p", "variant=ppl_ratio"]
    r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    sel = json.loads(out.read_text())
    assert 0 < len(sel) <= 4 and all(s in ALPACA for s in sel)
    man = json.loads((tmp_path / "out" / "sel.manifest.json").read_text())
    assert man["parameters"]["variant"] == "ppl_ratio" and man["model"]["name"] == str(tiny_model_dir)
    # a second run is served from the cache and writes the same selection
    before = out.read_bytes()
    r = runner.invoke(app, args)
    assert r.exit_code == 0 and out.read_bytes() == before
    assert " 0 computed" in r.output.replace(",", "")


def test_score_and_inspect(tiny_model_dir, alpaca_file, tmp_path):
    out = tmp_path / "s.parquet"
    r = runner.invoke(app, ["score", str(alpaca_file), "-m", "perplexity", "-p", "template=alpaca", "-o", str(out),
                            "--model", str(tiny_model_dir), "--cache-dir", str(tmp_path / "c"), "-q"])
    assert r.exit_code == 0, r.output
    assert len(pd.read_parquet(out)) == len(ALPACA)
    r = runner.invoke(app, ["inspect", str(alpaca_file), "--json"])
    rep = json.loads(r.output)
    assert rep["format"] == "alpaca" and rep["examples"] == len(ALPACA)


def test_bad_input_is_a_clear_cli_error(tmp_path):
    p = tmp_path / "bad.jsonl"
    p.write_text('{"instruction": "x", "output": "y"}\n{"instruction": "x"}\n')
    r = runner.invoke(app, ["select", str(p), "-m", "random", "-b", "1", "-o", str(tmp_path / "o.jsonl")])
    assert r.exit_code == 2
    assert "line 2" in r.output and "'output'" in r.output
    assert not (tmp_path / "o.jsonl").exists()
    r = runner.invoke(app, ["select", str(p), "-m", "random", "-b", "1", "-o", str(tmp_path / "o.jsonl"),
                            "--on-error", "skip", "-q"])
    assert r.exit_code == 0 and "missing_field" in r.output
    man = json.loads((tmp_path / "o.manifest.json").read_text())
    assert man["skipped"]["by_reason"] == {"missing_field": 1}


def test_unknown_method_and_param(alpaca_file, tmp_path):
    r = runner.invoke(app, ["select", str(alpaca_file), "-m", "nope", "-o", str(tmp_path / "o.json")])
    assert r.exit_code == 2 and "unknown method" in r.output
    r = runner.invoke(app, ["select", str(alpaca_file), "-m", "ifd", "-p", "colour=red", "-o", str(tmp_path / "o.json")])
    assert r.exit_code == 2 and "unknown parameter" in r.output


def test_a_param_that_is_also_a_run_option(tiny_model_dir, alpaca_file, tmp_path):
    base = ["score", str(alpaca_file), "-m", "perplexity", "-p", "template=alpaca", "--model", str(tiny_model_dir),
            "--cache-dir", str(tmp_path / "c"), "-q"]
    r = runner.invoke(app, base + ["-p", "max_length=12", "-o", str(tmp_path / "a.parquet")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, base + ["--max-length", "12", "-o", str(tmp_path / "b.parquet")])
    assert r.exit_code == 0, r.output
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    assert a["truncated"].any() and a.equals(b)          # -p max_length means --max-length
    r = runner.invoke(app, base + ["--max-length", "16", "-p", "max_length=12", "-o", str(tmp_path / "c.parquet")])
    assert r.exit_code == 2 and "run option --max-length" in r.output


def test_bench_preset_method_params_reach_the_cells(alpaca_file, tmp_path, monkeypatch):
    # A preset's per-method parameters are part of every cell key; -p METHOD.key=value overrides them.
    import tunesift.bench as bench
    seen = []

    def fake_run_bench(ds, cfg, out, **kw):   # the cells' configuration is what is checked here
        seen.append(cfg)
        out.mkdir(parents=True, exist_ok=True)
        (out / "leaderboard.md").write_text("")
        return pd.DataFrame()
    monkeypatch.setattr(bench, "run_bench", fake_run_bench)
    args = ["bench", str(alpaca_file), "--preset", "leaderboard-cpu", "--methods", "deita-filter",
            "-o", str(tmp_path / "b"), "--report-only"]
    assert runner.invoke(app, args).exit_code == 0
    assert seen[-1].method_params["deita-filter"] == {"score": "deita-scorers"}
    assert runner.invoke(app, args + ["-p", "deita-filter.threshold=0.8"]).exit_code == 0
    assert seen[-1].method_params["deita-filter"] == {"score": "deita-scorers", "threshold": "0.8"}
    assert bench.PRESETS["leaderboard-cpu"]["method_params"]["deita-filter"] == {"score": "deita-scorers"}
    assert runner.invoke(app, args + ["-p", "deita-filter.score=ifd"]).exit_code == 0
    assert seen[-1].method_params["deita-filter"]["score"] == "ifd"
    r = runner.invoke(app, args + ["-p", "ifd.max_length=64"])   # a method this bench does not run
    assert r.exit_code != 0 and "does not run 'ifd'" in r.output
    # a run option is parsed as its flag would be; what the bench sets per cell cannot be given
    assert runner.invoke(app, args + ["-p", "deita-filter.max_length=64"]).exit_code == 0
    assert seen[-1].method_params["deita-filter"]["max_length"] == 64
    r = runner.invoke(app, args + ["-p", "deita-filter.seed=3"])
    assert r.exit_code != 0 and "sets seed itself" in r.output
    # the preset's parameters for methods this bench does not run are not carried
    assert runner.invoke(app, args[:5] + ["ifd"] + args[6:]).exit_code == 0
    assert "deita-filter" not in seen[-1].method_params
