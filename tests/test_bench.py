"""tunesift bench end to end on a tiny model: cells, leaderboard, resume, a failing cell."""
import json

import pandas as pd
import pytest

from tunesift.bench import BenchConfig, _welch_ci, run_bench
from tunesift.data import read_dataset
from tunesift.train import TrainConfig

import numpy as np


@pytest.fixture
def eval_files(tmp_path, alpaca_file):
    d = tmp_path / "mmlu"
    d.mkdir()
    rows = ["question,choice0,choice1,choice2,choice3,answer"] + [f"What is {i}+{i}?,{i},{2 * i},{3 * i},{4 * i},1"
                                                               for i in range(1, 7)]
    (d / "arith_test.csv").write_text("\n".join(rows) + "\n")
    return [f"heldout_nll:4={alpaca_file}", f"mmlu={d}"]


def _cfg(evals, **kw):
    base = dict(methods=["perplexity"], evals=evals, budget="50%", seeds=2, full_seeds=1, template="alpaca",
                device="cpu", train=TrainConfig(epochs=1, batch_size=2, micro_batch_tokens=512, max_length=256))
    base.update(kw)
    return BenchConfig(**base)


def test_bench_runs_resumes_and_reports(tiny_model_dir, alpaca_file, eval_files, tmp_path, monkeypatch):
    cfg = _cfg(eval_files, base_model=str(tiny_model_dir))
    out = tmp_path / "bench"
    pool = read_dataset(alpaca_file)
    table = run_bench(pool, cfg, out, progress=False)
    assert list(table.method) == ["perplexity", "random", "full", "base"]
    assert len(list((out / "cells").glob("*.json"))) == 2 + 2 + 1 + 1
    assert table.loc[table.method == "perplexity", "selected"].item() == 4
    assert table.loc[table.method == "full", "SDF"].item() == 1.0
    assert np.isfinite(table["heldout_nll.nll"]).all() and np.isfinite(table["mmlu.acc"]).all()
    # the perplexity row has a difference from random with a CI over 2 seeds each
    assert "heldout_nll.nll.vs_random.ci95" in table and not pd.isna(table.loc[0, "heldout_nll.nll.vs_random"])
    for f in ("leaderboard.md", "leaderboard.csv", "leaderboard.html"):
        assert (out / f).stat().st_size > 200
    assert "<svg" in (out / "leaderboard.html").read_text()
    # training actually changed the model: full-data NLL below the base model's
    full = table.loc[table.method == "full", "heldout_nll.nll"].item()
    base = table.loc[table.method == "base", "heldout_nll.nll"].item()
    assert full < base
    # resume: every cell cached, nothing trained again
    import tunesift.bench.run as b
    monkeypatch.setattr(b, "finetune", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = run_bench(pool, cfg, out, progress=False)
    pd.testing.assert_frame_equal(table, again)


def test_failing_cell_is_reported_not_fatal(tiny_model_dir, alpaca_file, eval_files, tmp_path):
    evals = eval_files + [f"alpaca_eval_winrate:2={alpaca_file}"]      # judged by an LM that is not the model
    cfg = _cfg(evals, base_model=str(tiny_model_dir), seeds=1, include_full=False, include_base=False,
               method_params={"perplexity": {"band": "sideways"}}, judge_model=str(tiny_model_dir))
    table = run_bench(read_dataset(alpaca_file), cfg, tmp_path / "b", progress=False)
    row = table.set_index("method").loc["perplexity"]
    assert row.seeds_failed == 1 and "band" in row.error
    rnd = table.set_index("method").loc["random"]
    assert rnd.seeds_done == 1 and 0 <= rnd["alpaca_eval_winrate.win_rate"] <= 1
    err = list((tmp_path / "b" / "cells").glob("*.error.json"))
    assert len(err) == 1 and json.loads(err[0].read_text())["traceback"]
    assert "sideways" in (tmp_path / "b" / "leaderboard.md").read_text()


def test_welch_interval():
    from scipy.stats import t
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.5, 3.5])
    d, hw = _welch_ci(a, b)
    # Welch-Satterthwaite by hand: the standard error, its degrees of freedom, the t quantile
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    assert d == pytest.approx(-2 / 3) and hw == pytest.approx(t.ppf(0.975, df) * np.sqrt(va + vb))
    assert t.ppf(0.975, 4) == pytest.approx(2.7764, rel=1e-4)     # the table value the hand-written quantile met
    assert _welch_ci(a, a + 1) == (pytest.approx(-1.0), pytest.approx(t.ppf(0.975, 4) * np.sqrt(2 / 3)))
    assert _welch_ci(np.ones(3), np.zeros(3)) == (1.0, 0.0)
    assert np.isnan(_welch_ci(a[:1], b)[1])
