"""BIDS: the balanced greedy against a naive loop, the bias it corrects on an attribution matrix with
one inflated task, and its attribution matrix against LESS's on the same warm-up."""
import numpy as np

import tunesift
from tunesift.data import read_dataset
from tunesift.methods import Context, get_method
from tunesift.methods.bids import normalise_columns, task_utility
from tunesift.selectors import Budget, balanced_greedy, top_k

from .test_methods import _target_set


def naive_balanced(I, k):
    picks, tasks, chosen = [], [], set()
    for _ in range(k):
        means = [sum(I[i][t] for i in picks) / max(len(picks), 1) for t in range(len(I[0]))]
        t = min(range(len(means)), key=lambda j: (means[j], j))
        i = max((i for i in range(len(I)) if i not in chosen), key=lambda i: (I[i][t], -i))
        picks.append(i), tasks.append(t), chosen.add(i)
    return picks, tasks


def test_balanced_greedy_equals_a_naive_loop():
    rng = np.random.default_rng(0)
    for I in (rng.normal(size=(60, 4)), np.round(rng.normal(size=(60, 3)), 1)):   # the second full of ties
        p, t = balanced_greedy(I, 25)
        want_p, want_t = naive_balanced(I.tolist(), 25)
        assert p.tolist() == want_p and t.tolist() == want_t


def test_normalisation_undoes_an_inflated_task():
    rng = np.random.default_rng(1)
    n, per = 600, 5
    pref = rng.integers(0, 3, n)                      # the task each pool example actually helps
    tasks = np.repeat(["a", "b", "c"], per)
    A = rng.normal(0, 0.02, (n, 3 * per)) + 0.1 * (pref[:, None] == np.repeat(np.arange(3), per)[None, :])
    A[:, tasks == "a"] *= 10                          # task a's gradients are simply larger
    less_score = np.stack([A[:, tasks == t].mean(1) for t in "abc"], 1).max(1)
    k = 60
    less_picks = top_k(less_score, Budget.parse(k))
    assert (pref[less_picks] == 0).mean() > 0.9       # LESS's max favours the inflated task
    names, I = task_utility(normalise_columns(A, np.arange(n)), tasks, "mean")
    picks, _ = balanced_greedy(I, k)
    counts = np.bincount(pref[picks], minlength=3)
    assert counts.min() >= 15 and counts.max() <= 25, counts
    Z = normalise_columns(A, np.arange(n))
    np.testing.assert_allclose(Z.mean(0), 0, atol=1e-9)
    np.testing.assert_allclose(Z.std(0), 1, rtol=1e-9)


def test_attribution_matrix_is_less_s(tiny_llama, alpaca_file, tmp_path):
    target = _target_set(tmp_path)
    kw = dict(target=str(target), task_field="task", epochs=2, lora_r=4, lora_alpha=8, proj_dim=48,
              warmup_fraction=0.5, learning_rate=1e-2, batch_size=2, template="alpaca")
    less = tunesift.score(alpaca_file, "less", lm=tiny_llama, use_cache=False, progress=False, **kw).table
    m = get_method("bids")(**kw)
    ds = read_dataset(alpaca_file)
    t = m.score(ds, Context(lm=tiny_llama, use_cache=False, progress=False))
    A, tasks = m.attribution_, np.array(m.target_tasks_)
    for name in sorted(set(tasks)):
        np.testing.assert_allclose(A[:, tasks == name].mean(1), less[f"less_{name}"], rtol=1e-5, atol=1e-7)
    names, I = task_utility(normalise_columns(A, np.flatnonzero(t["eligible"])), tasks, "mean")
    np.testing.assert_allclose(m.utility_, I)
    picks = m.select(t, Budget.parse(4), None)
    assert len(picks) == 4 and set(t.loc[picks, "bids_task"]) <= set(names)
    # the first pick serves the first task (all tasks start at 0) with its best example
    assert picks[0] == int(np.argmax(I[:, 0])) and t.loc[picks[0], "bids_task"] == names[0]
