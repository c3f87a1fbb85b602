"""DELIFT: the utility kernel against plain per-pair forwards written from the official no_vllm file,
the selections against naive greedy on submodlib's objectives, the k-NN restriction, the real model."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

import tunesift
from tunesift.data import read_dataset
from tunesift.methods.base import Context
from tunesift.methods.delift import Delift, utility_kernel
from tunesift.selectors import Budget
from tunesift.selectors.submodular import flmi_saturated


def official_distance(model, tok, prompt, response):
    """get_icl_utility_kernel_no_vllm.py, one pair at a time: prompt + EOS + response + EOS, the
    response tokens and the last EOS scored; ||p - 1||_2 / sqrt(T)."""
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"]
    ids = p + [tok.eos_token_id] + r + [tok.eos_token_id]
    types = [0] * (len(p) + 1) + [1] * (len(r) + 1)
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    probs = []
    for t in range(1, len(ids)):
        if types[t] == 1:
            probs.append(float(torch.softmax(logits[t - 1], -1)[ids[t]]))
    probs = np.array(probs)
    return float(np.sqrt(((probs - 1.0) ** 2).sum()) / np.sqrt(len(probs)))


def official_kernel(model, tok, pairs):
    n = len(pairs)
    U = np.zeros((n, n))
    for i, (x, y) in enumerate(pairs):
        d0 = official_distance(model, tok, f"Instruction: Please generate a response to the following query."
                                            f"\n\n\nQuery: {x}\n", y)
        for j, (xj, yj) in enumerate(pairs):
            shot = (f"Instruction:\nUse the following example as a guide to answer the query in the same format "
                    f"and style, providing a clear and concise response.\n\n\nExample:\n{xj}\n{yj}")
            U[i, j] = d0 - official_distance(model, tok, f"{shot}\n\n\nQuery:\n{x}\n", y)
    return U


def test_kernel_matches_per_pair_forwards(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file, limit=4)
    pairs = [(e.prompt, e.response) for e in ds.examples]
    stats = {}
    got = utility_kernel(Context(lm=tiny_llama, use_cache=False, progress=False), pairs, stats=stats)
    exp = official_kernel(tiny_llama.model, tiny_llama.tokenizer, pairs)
    np.testing.assert_allclose(got, exp, atol=1e-6)
    assert stats["passes"] == 4 + 16   # n zero-shot + n^2 one-shot (j = i included)
    # the method min-max scales the whole matrix
    m = Delift()
    m.score(ds, Context(lm=tiny_llama, use_cache=False, progress=False))
    np.testing.assert_allclose(m.kernel_, (exp - exp.min()) / (exp.max() - exp.min()), atol=1e-4)


def naive_greedy(f, n, k):
    A = []
    for _ in range(k):
        gains = [f(A + [j]) - f(A) if j not in A else -np.inf for j in range(n)]
        A.append(int(np.argmax(gains)))
    return A


def test_selection_against_naive_greedy():
    rng = np.random.default_rng(3)
    n, m, k = 12, 5, 4
    S = rng.random((n, n))
    Q = rng.random((n, m))      # target (or existing) examples as shots for pool examples
    table = pd.DataFrame({"score": np.nan, "eligible": np.ones(n, bool), "reason": ""})

    def run(**kw):
        d = Delift(**kw)
        d.kernel_, d.side_ = S, Q
        return list(d.select(table.copy(), Budget.parse(k), None))

    def fl(A):
        return S[:, A].max(1).sum() if A else 0.0

    def flmi(A):   # submodlib FacilityLocationMutualInformation (FL1MI), eta = 1
        return sum(min(max(S[i, j] for j in A), Q[i].max()) for i in range(n)) if A else 0.0

    def flcg(A):   # submodlib FLCG, nu = 1: coverage beyond what the existing set gives
        return np.maximum(S[:, A].max(1) - Q.max(1), 0).sum() if A else 0.0

    assert run() == naive_greedy(fl, n, k)
    # the FL2MI variant (selectors.flmi) picks differently here: the objective matters
    assert naive_greedy(flmi, n, k) != naive_greedy(lambda A: Q[A].max(0).sum() + Q[A].max(1).sum() if A else 0.0,
                                                    n, k)
    eta = 0.7
    capped = lambda A: sum(min(max(S[i, j] for j in A), eta * Q[i].max()) for i in range(n)) if A else 0.0  # noqa: E731
    assert list(flmi_saturated(S, Q, k, eta=eta)) == naive_greedy(capped, n, k)
    assert run(target="t") == naive_greedy(flmi, n, k)
    assert run(existing="e") == naive_greedy(flcg, n, k)


def test_knn_restriction(tiny_llama, tiny_embedder, alpaca_file):
    ds = read_dataset(alpaca_file, limit=5)
    ctx = lambda: Context(lm=tiny_llama, embedder_obj=tiny_embedder, use_cache=False, progress=False)  # noqa: E731
    full, knn = Delift(), Delift(neighbors=4)
    full.score(ds, ctx())
    knn.score(ds, ctx())
    np.testing.assert_allclose(knn.kernel_, full.kernel_, atol=1e-9)
    small = Delift(neighbors=1)
    small.score(ds, ctx())
    assert small.stats_["passes"] == 5 + 5 * 2          # zero-shot + (1 neighbour + itself) per example
    assert (small.kernel_ == 0).sum() >= 5 * 3          # unscored pairs sit at the minimum


def test_zero_shot_once_and_cached_pairs_resume(tiny_llama, alpaca_file, tmp_path):
    ds = read_dataset(alpaca_file, limit=4)
    target = tmp_path / "t.jsonl"
    target.write_text("\n".join(json.dumps({"instruction": f"Name a colour ({i}).", "input": "", "output": "Blue."})
                                for i in range(2)) + "\n")
    m = Delift(target=str(target))
    m.score(ds, Context(lm=tiny_llama, use_cache=False, progress=False))
    assert m.stats_["passes"] == 4 + 16 + 4 * 2        # zero-shot once, n^2, n x m
    cold = Delift(target=str(target))
    cold.score(ds, Context(lm=tiny_llama, cache_dir=str(tmp_path / "c"), progress=False))
    warm = Delift(target=str(target))
    warm.score(ds, Context(lm=tiny_llama, cache_dir=str(tmp_path / "c"), progress=False))
    assert warm.stats_.get("passes", 0) == 0                  # every distance came from the cache
    np.testing.assert_allclose(warm.kernel_, m.kernel_, atol=1e-12)
    np.testing.assert_allclose(warm.side_, m.side_, atol=1e-12)


def test_default_budget_is_30_percent_floored(tiny_llama, alpaca_file, tmp_path):
    r = tunesift.select(alpaca_file, "delift", None, lm=tiny_llama, progress=False, cache_dir=tmp_path / "c")
    assert len(r.selected_indices) == int(0.3 * len(r.table))
    # subset_fl.py: int(0.3 * n); at n = 5 that is 1 where rounding would give 2
    d = Delift()
    d.kernel_ = np.random.default_rng(0).random((5, 5))
    table = pd.DataFrame({"score": np.nan, "eligible": np.ones(5, bool), "reason": ""})
    assert len(d.select(table, Budget.parse(Delift.default_budget), None)) == 1


@pytest.mark.slow
def test_delift_cli_real_model(shared_data, tmp_path):
    import importlib.util

    from tunesift.models.loading import DEFAULT_LM, OFFLINE_MODELS
    if importlib.util.find_spec(OFFLINE_MODELS[DEFAULT_LM][0]) is None:
        pytest.skip("the default model is not installed")
    from typer.testing import CliRunner

    from tunesift.cli import app
    from tunesift.models import load_causal_lm
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    target = tmp_path / "target.jsonl"
    target.write_text(json.dumps({"instruction": "What is 12 + 7?", "input": "", "output": "19"}))
    for extra in ([], ["-p", f"target={target}"]):
        out = tmp_path / "sel.json"
        r = CliRunner().invoke(app, ["select", str(src), "-m", "delift", "--limit", "6", "-o", str(out), "-q",
                                     "--cache-dir", str(tmp_path / "c"), "--device", "cpu", "--dtype", "float32",
                                     *extra])
        assert r.exit_code == 0, r.output
        t = pd.read_parquet(tmp_path / "sel.scores.parquet")
        assert len(t) == 6 and t["selected"].sum() == 1    # int(0.3 * 6), as subset_fl.py
    lm = load_causal_lm(device="cpu", dtype="float32")
    pairs = [(e.prompt, e.response) for e in read_dataset(src, limit=2).examples]
    got = utility_kernel(Context(lm=lm, use_cache=False, progress=False), pairs)
    np.testing.assert_allclose(got, official_kernel(lm.model, lm.tokenizer, pairs), atol=1e-4)
