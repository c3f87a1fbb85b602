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


def test_target_slice_is_held_out_and_report_reads_signal(tiny_model_dir, alpaca_file, eval_files, tmp_path):
    """A target-set method gets K references of an evaluation as its target, and that evaluation
    no longer scores them; the report says which evaluations carry signal and draws the differences."""
    from tunesift.bench.run import load_records
    from tunesift.evaluate.sets import load_references
    cfg = _cfg(eval_files, base_model=str(tiny_model_dir), methods=["rds"], seeds=2, target="heldout_nll:3")
    out = tmp_path / "bench"
    md = tmp_path / "docs" / "board.md"
    table = run_bench(read_dataset(alpaca_file), cfg, out, progress=False, markdown=md)
    target = [json.loads(l) for l in (out / "target.jsonl").read_text().splitlines()]
    assert len(target) == 3
    held = {(t["instruction"], t["output"]) for t in target}
    refs = load_references(alpaca_file)
    excluded = {i for i, e in enumerate(refs.examples) if (e.prompt, e.response) in held}
    assert len(excluded) == 3
    kept = load_references(alpaca_file, 4, frozenset(excluded))
    assert len(kept) == 4 and not ({(e.prompt, e.response) for e in kept.examples} & held)
    recs = [json.loads(p.read_text()) for p in (out / "cells").glob("rds__*.json")]
    assert recs and all(r["error"] is None and r["evals"]["heldout_nll"]["n"] == 4 for r in recs)
    assert table.loc[table.method == "rds", "seeds_done"].item() == 2
    text = md.read_text()
    assert "## Which evaluations carry signal" in text and "## Reading (generated)" in text
    # chart links are relative to the Markdown file, and the charts exist
    assert "](../bench/training_curves.svg)" in text
    assert (out / "training_curves.svg").exists()
    # resuming from another copy of the evaluation files finds the same cells (keys: contents, not paths)
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    (moved / "a.json").write_bytes(open(alpaca_file, "rb").read())
    import shutil
    shutil.copytree(eval_files[1].split("=", 1)[1], moved / "mmlu")
    from tunesift.bench import plan_cells
    from tunesift.evaluate.tasks import parse_eval
    from tunesift.bench.run import target_slice
    a = plan_cells(read_dataset(alpaca_file), target_slice([parse_eval(e, None) for e in eval_files], cfg, out)[0], cfg, out)
    b = plan_cells(read_dataset(alpaca_file), target_slice([parse_eval(e, None) for e in
                                                            [f"heldout_nll:4={moved / 'a.json'}", f"mmlu={moved / 'mmlu'}"]],
                                                           cfg, out)[0], cfg, out)
    assert [c.key for c in a] == [c.key for c in b]
    assert len(load_records(a)) == len(a)


def test_signal_rule_and_generated_reading():
    from tunesift.bench.report import reading, signal
    from tunesift.evaluate.tasks import EvalSpec
    specs = [EvalSpec("a_nll", None, None), EvalSpec("b_nll", None, None)]
    t = pd.DataFrame([
        {"method": "m1", "a_nll.nll": 1.0, "a_nll.nll.vs_random": -0.2, "a_nll.nll.vs_random.ci95": 0.1,
         "b_nll.nll": 2.0, "b_nll.nll.vs_random": 0.0, "b_nll.nll.vs_random.ci95": 0.1},
        {"method": "m2", "a_nll.nll": 1.4, "a_nll.nll.vs_random": 0.2, "a_nll.nll.vs_random.ci95": 0.1,
         "b_nll.nll": 2.0, "b_nll.nll.vs_random": 0.05, "b_nll.nll.vs_random.ci95": 0.1},
        {"method": "random", "a_nll.nll": 1.2, "a_nll.nll.std": 0.05, "b_nll.nll": 2.0, "b_nll.nll.std": 0.05},
        {"method": "full", "a_nll.nll": 0.8, "b_nll.nll": 2.0},
        {"method": "base", "a_nll.nll": 1.5, "b_nll.nll": 2.05},
    ])
    sig = signal(t, specs)
    # a: base - random = 0.3 > 2 x 0.05; b: 0.05 is within twice random's spread
    assert sig["a_nll"]["signal"] and not sig["b_nll"]["signal"]
    assert sig["a_nll"]["gap"] == pytest.approx(0.3) and sig["a_nll"]["full_gap"] == pytest.approx(0.7)
    # an overfit full-pool model (worse than the base) does not veto an evaluation random moves
    t.loc[t.method == "full", "a_nll.nll"] = 1.9
    sig2 = signal(t, specs)
    assert sig2["a_nll"]["signal"] and sig2["a_nll"]["full_gap"] == pytest.approx(-0.4)
    # random no better than the base model: no signal, whatever the full-pool model does
    t.loc[t.method == "random", "a_nll.nll"] = 1.55
    assert not signal(t, specs)["a_nll"]["signal"]
    # without random, the full-pool model stands in
    t2 = t[t.method != "random"]
    assert signal(t2, specs)["a_nll"]["gap"] == pytest.approx(-0.4) and not signal(t2, specs)["a_nll"]["signal"]
    assert signal(t2, specs)["a_nll"]["reference"] == "full" and not signal(t2, specs)["a_nll"]["spread"]
    lines = reading(t, [specs[0]], sig)
    assert "beat random beyond the interval: m1 (-0.2" in lines[0]
    assert "lose to it beyond the interval: m2 (+0.2" in lines[0]


def test_welch_p_and_the_many_methods_correction():
    from scipy.stats import t as student_t

    from tunesift.bench.report import reading, signal
    from tunesift.bench.stats import bh_adjusted, welch_p
    from tunesift.evaluate.tasks import EvalSpec
    a, b = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.5, 3.5])
    va, vb = a.var(ddof=1) / 3, b.var(ddof=1) / 3
    df = (va + vb) ** 2 / (va ** 2 / 2 + vb ** 2 / 2)
    assert welch_p(a, b) == pytest.approx(2 * student_t.sf(abs(a.mean() - b.mean()) / np.sqrt(va + vb), df))
    assert np.isnan(welch_p(a[:1], b)) and welch_p(np.ones(3), np.ones(3)) == 1.0
    # Benjamini-Hochberg by hand: sorted p_(i) * m / i, made monotone from the largest down
    p = np.array([0.01, 0.04, 0.03, 0.5, np.nan])
    srt = np.sort(p[:4]) * 4 / np.arange(1, 5)
    hand = np.minimum.accumulate(srt[::-1])[::-1]           # q for 0.01, 0.03, 0.04, 0.5
    q = bh_adjusted(p)
    assert q[[0, 2, 1, 3]] == pytest.approx(hand) and np.isnan(q[4])
    # the reading: two methods outside their intervals, only the one with a small q survives the correction
    rows = [{"method": f"m{i}", "a_nll.nll": 1.0, "a_nll.nll.vs_random": d, "a_nll.nll.vs_random.ci95": 0.01,
             "a_nll.nll.vs_random.p": pv} for i, (d, pv) in enumerate([(-0.2, 0.001), (-0.05, 0.04), (0.0, 0.9),
                                                                       (0.001, 0.95)])]
    t = pd.DataFrame(rows + [{"method": "random", "a_nll.nll": 1.2, "a_nll.nll.std": 0.01},
                             {"method": "base", "a_nll.nll": 1.5}])
    spec = [EvalSpec("a_nll", None, None)]
    lines = reading(t, spec, signal(t, spec))
    assert "beat random beyond the interval: m0 (-0.2 ± 0.01), m1 (-0.05 ± 0.01)" in lines[0]
    assert "about 0.2 would still fall outside" in lines[1]
    assert "false discovery rate 5%): m0 (q = 0.004) differ from random" in lines[1]


def test_recipe_check_compares_references_with_the_base_model():
    from tunesift.bench.report import recipe
    from tunesift.evaluate.tasks import EvalSpec

    def rec(method, seed, tok, ex, loss=None, error=None):
        return {"method": method, "seed": seed, "error": error,
                "train": None if loss is None else {"first_loss": loss[0], "last_loss": loss[1]},
                "evals": {"a_nll": {"nll": tok, "nll_per_example": ex}}}
    recs = [rec("base", 0, 2.0, 3.0), rec("random", 0, 1.8, 2.0, (3.0, 1.0)), rec("random", 1, 1.6, 2.2, (2.0, 1.0)),
            rec("random", 2, 9.0, 9.0, (1.0, 1.0), error="boom"), rec("ifd", 0, 1.0, 1.0, (1.0, 0.5))]
    lines = recipe(recs, [EvalSpec("a_nll", None, None)])
    rows = {ln.split(" | ")[0].strip("| *"): ln for ln in lines if ln.startswith("| **")}
    assert set(rows) == {"base", "random"}                      # references only; no full pool cell here
    assert rows["base"].endswith("| 1 | – | 2 | 3 |")
    # the failed seed is left out: random = mean of two seeds, loss 2.5 -> 1.0, NLL 1.7 (-0.3), 2.1 (-0.9)
    assert "| 2 | 2.500 → 1.000 | 1.7 (-0.3) | 2.1 (-0.9) |" in rows["random"]
    assert recipe([rec("random", 0, 1.0, 1.0, (1.0, 0.5))], [EvalSpec("a_nll", None, None)]) == []   # no base model


def test_forest_chart_marks_intervals():
    from tunesift.report.svg import forest
    svg = forest("d", [("a", -0.2, 0.1), ("b", 0.05, 0.1), ("c", 0.3, float("nan"))], better="left")
    assert svg.count('class="mark"') == 2 + 2 + 1      # two intervals, three points
    assert "#2ca02c" in svg and "#d62728" not in svg     # a is better beyond its interval; c has none


def test_self_instruct_references(tmp_path):
    from tunesift.evaluate.sets import load_references
    p = tmp_path / "sinstruct_test_set.jsonl"
    p.write_text(json.dumps({"id": "t0", "instruction": "Fix it.", "instances": [
        {"input": "teh cat", "output": "the cat"}, {"input": "a dgo", "output": "a dog"}]}) + "\n" +
        json.dumps({"id": "t1", "instruction": "Say hi.", "instances": [{"input": "", "output": "hi"}]}) + "\n")
    refs = load_references(p)
    assert [e.response for e in refs.examples] == ["the cat", "a dog", "hi"]
    assert refs.examples[0].raw["id"] == "t0#0"
    p.write_text(json.dumps({"id": "t2", "instruction": "x", "instances": [{"input": ""}]}) + "\n")
    from tunesift.data.errors import DataError
    with pytest.raises(DataError, match="line 1"):
        load_references(p)
