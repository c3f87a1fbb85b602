"""Instruction Mining: indicators, the linear rule, and fitting a rule by least squares."""
import json

import numpy as np
import pandas as pd
import pytest

import tunesift
from tunesift.data import TunesiftError, read_dataset
from tunesift.methods.instruction_mining import fit_rule, knn_distance, mtld

from .conftest import ALPACA


def test_mtld_and_knn():
    assert mtld("the the the the") == pytest.approx(2.0)
    assert mtld("") == 0.0
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 4)).astype(np.float32)
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    want = np.sort(D, axis=1)[:, :6].mean(1)
    np.testing.assert_allclose(knn_distance(X, 6, chunk=7), want, rtol=1e-4)
    dup = np.concatenate([X, X[:3], X[:3]])               # exact duplicates: their own distance is 0
    D = np.sqrt(((dup[:, None] - dup[None]) ** 2).sum(-1))
    np.fill_diagonal(D, np.inf)
    np.testing.assert_allclose(knn_distance(dup, 3), np.sort(D, axis=1)[:, :3].mean(1), atol=1e-5)
    # the inverted-file index (large pools) on clustered points: the same distances for nearly all rows
    C = rng.normal(size=(20, 8))
    Y = (C[rng.integers(0, 20, 2000)] + 0.2 * rng.normal(size=(2000, 8))).astype(np.float32)
    ivf, exact = knn_distance(Y, 6, index="ivf"), knn_distance(Y, 6, index="exact")
    assert (ivf >= exact - 1e-5).all()                    # approximate neighbours are never nearer
    assert np.mean(np.isclose(ivf, exact, rtol=1e-4)) > 0.95


def test_fit_rule_recovers_coefficients():
    rng = np.random.default_rng(1)
    ind = pd.DataFrame({"reward": rng.normal(size=40), "ppl": rng.uniform(2, 9, size=40)})
    loss = np.exp(0.3 - 0.2 * ind["reward"] + 0.05 * ind["ppl"])
    r = fit_rule(ind, loss)
    assert r["intercept"] == pytest.approx(0.3) and r["coef"]["reward"] == pytest.approx(-0.2)
    assert r["coef"]["ppl"] == pytest.approx(0.05) and r["r2"] == pytest.approx(1.0)
    with pytest.raises(TunesiftError, match="needs more than"):
        fit_rule(ind.iloc[:2], loss[:2])


def test_rule_file_scores_are_the_linear_rule(tiny_llama, tiny_embedder, alpaca_file, tmp_path):
    rule = {"intercept": 0.5, "coef": {"output_len": 0.01, "mtld": -0.02, "ppl": 0.001}}
    (tmp_path / "rule.json").write_text(json.dumps(rule))
    res = tunesift.select(alpaca_file, "instruction-mining", 3, lm=tiny_llama, embedder=tiny_embedder,
                          use_cache=False, progress=False, rule="file", rule_file=str(tmp_path / "rule.json"))
    t = res.table
    tok = tiny_llama.tokenizer
    ds = read_dataset(alpaca_file)
    for i, e in enumerate(ds.examples):
        n_out = len(tok(e.response, add_special_tokens=False).input_ids)
        want = 0.5 + 0.01 * n_out - 0.02 * mtld(e.response) + 0.001 * t["ppl"][i]
        assert t["score"][i] == pytest.approx(want)
    # lower predicted loss is better
    assert set(res.selected_indices) == set(np.argsort(t["score"].to_numpy(), kind="stable")[:3])


def test_paper_rule_needs_unieval_indicators(tiny_llama, tiny_embedder, tmp_path):
    rows = [dict(r, und=0.5 + i / 20, nat=0.4, coh=0.6) for i, r in enumerate(ALPACA)]
    p = tmp_path / "with_unieval.json"
    p.write_text(json.dumps(rows))
    res = tunesift.score(p, "instruction-mining", lm=tiny_llama, embedder=tiny_embedder, use_cache=False,
                         progress=False, indicator_fields="und,nat,coh")
    t = res.table
    want = 0.0274 - 0.0078 * t["reward"] + 0.4421 * t["und"] - 0.3212 * t["nat"] - 0.1520 * t["coh"]
    np.testing.assert_allclose(t["score"], want)
    plain = tmp_path / "plain.json"
    plain.write_text(json.dumps(ALPACA))
    with pytest.raises(TunesiftError, match="UniEval"):
        tunesift.score(plain, "instruction-mining", lm=tiny_llama, embedder=tiny_embedder, use_cache=False,
                       progress=False)
