"""LEAD on tiny models built from configs, each rule recomputed here: EXP3's update, the utility update
(gradient-approximated change, smoothing), the usage cap, K = 7 1-D k-means on IFD, the stop at the
unique-example budget, determinism by seed; and the fine-tuning engine's sampler hook it drives."""
import json
import math

import numpy as np
import pytest
import torch

import tunesift
from tunesift.data import read_dataset
from tunesift.data.errors import TunesiftError
from tunesift.methods.lead import EXP3, LEADConfig, LEADSampler, loss_change
from tunesift.models.templates import render_conversation
from tunesift.train import Sampler, TrainConfig, finetune
from tunesift.train.finetune import StepFeedback

from .conftest import ALPACA

LIGHT = dict(template="alpaca", lora_targets="all-linear", warmup_fraction=0.5, learning_rate=1e-2, batch_size=2)


# ---- EXP3 ----------------------------------------------------------------------------------------

def test_exp3_probabilities_and_weight_update_as_exp3_py():
    b = EXP3(4, 0.1, np.random.default_rng(0))
    b.weights = np.array([1.0, 2.0, 3.0, 4.0])
    want = [0.9 * w / 10 + 0.1 / 4 for w in (1, 2, 3, 4)]
    np.testing.assert_allclose(b.probabilities(), want)
    # drawing among some arms only: the same mix, renormalised over them
    allowed = np.array([True, False, True, False])
    np.testing.assert_allclose(b.probabilities(allowed), [want[0] / (want[0] + want[2]), 0, want[2] / (want[0] + want[2]), 0])
    # first reward: raw (history shorter than 2); w_c *= exp(gamma / K * r / p_c)
    r = b.update(2, 0.5, want[2])
    assert r == 0.5 and b.weights[2] == pytest.approx(3.0 * math.exp(0.1 / 4 * 0.5 / want[2]))
    # then normalised to [-1, 1] by the history's min and max (this reward included)
    r = b.update(1, -0.3, 0.2)
    assert r == pytest.approx(2 * (-0.3 + 0.3) / (0.5 + 0.3) - 1) and r == pytest.approx(-1.0)
    assert b.weights[1] == pytest.approx(2.0 * math.exp(0.1 / 4 * -1.0 / 0.2))
    r = b.update(0, 0.1, 0.3)
    assert r == pytest.approx(2 * (0.1 + 0.3) / 0.8 - 1)
    # a flat history (the code divides by zero): 0
    f = EXP3(3, 0.1, np.random.default_rng(0))
    f.update(0, 0.0, 0.3), f.update(0, 0.0, 0.3)
    assert f.normalised(0.0) == 0.0


# ---- the loss-change estimate ----------------------------------------------------------------------

@pytest.mark.parametrize("tf,tp,phi", [(2.0, 1.0, 0.3), (0.5, 3.0, 1.2), (1.0, 1.0, 2.5), (4.0, 0.2, 0.05)])
def test_revisit_change_is_the_min_norm_convex_combination(tf, tp, phi):
    # two update vectors with squared norms tf, tp at angle phi: the smallest ||b u + (1 - b) v||^2, b in [0, 1]
    u = math.sqrt(tf) * np.array([1.0, 0.0])
    v = math.sqrt(tp) * np.array([math.cos(phi), math.sin(phi)])
    grid = np.linspace(0, 1, 200001)
    norms = ((grid[:, None] * u + (1 - grid[:, None]) * v) ** 2).sum(1)
    dL, b = loss_change(tf, tp, math.cos(phi), clip=True)
    assert dL == pytest.approx(norms.min(), abs=1e-6) and b == pytest.approx(grid[norms.argmin()], abs=1e-4)
    # first visit: theta_prev
    assert loss_change(None, tp, 0.7, clip=True) == (tp, 1.0)


def test_code_cosine_of_two_norms_zeroes_the_change():
    # run_lead.py's cosine between two scalar norms is 1; with b unclipped the combination is exactly 0
    for tf, tp in [(2.0, 1.0), (0.3, 5.0)]:
        dL, _ = loss_change(tf, tp, 1.0, clip=False)
        assert dL == pytest.approx(0.0, abs=1e-12)


# ---- the sampler, without a model --------------------------------------------------------------------

class _Net(torch.nn.Module):
    """Parameters named like PEFT's: two layers; LEAD reads the last one's."""
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.ModuleList([torch.nn.Linear(2, 2, bias=False) for _ in range(2)])


def _drive(sampler, net, loss_of, lr=0.5, until=None):
    """Run the sampler as the engine would: next_step, change the weights, feedback."""
    sampler.start(np.ones(len(sampler.U), dtype=bool), net)
    steps, s = [], 0
    while (idx := sampler.next_step()) is not None:
        s += 1
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.01 * s)
        losses = np.array([loss_of(int(i), s) for i in idx])
        steps.append((np.array(idx), losses))
        sampler.feedback(StepFeedback(s, np.array(idx), losses, lr, net))
        if until and s >= until:
            break
    return steps


def test_utility_update_smoothing_and_gradient_approximated_change():
    n = 12
    cl = np.array([0, 1] * 6)
    U0 = np.linspace(3.0, 1.9, n)
    c = LEADConfig(sample_rate=0.5, batch_size=100, smoothing=0.25, gamma=0.1)
    smp = LEADSampler(c, cl, np.zeros(n, dtype=np.int64), U0, np.ones(n, dtype=bool), budget=n,
                      rng=np.random.default_rng(3))
    net = _Net()
    U, last = U0.copy(), U0.copy()
    theta_prev, first, rounds = 0.0, {}, []
    lr = 0.5

    def loss_of(i, s):
        return 1.0 + 0.1 * i - 0.05 * s

    steps = _drive(smp, net, loss_of, lr=lr)
    # replay the rule independently from the rounds the sampler logged
    for r, (idx, losses) in zip(smp.rounds, steps):
        k = r["cluster"]
        cand = np.flatnonzero(cl == k)
        want = cand[np.lexsort((cand, -U[cand]))][:max(1, int(len(cand) * 0.5))]
        assert sorted(idx) == sorted(want) and list(idx) == list(want)         # highest utility first
        dL = theta_prev if k not in first else r["dL"]
        if k not in first:
            assert r["dL"] == pytest.approx(theta_prev)
        else:     # a revisit: the combination formula with the logged cosine
            assert r["dL"] == pytest.approx(loss_change(first[k], theta_prev, r["cos"], True)[0])
        approx_in = U[idx].copy()
        drop = last[idx] - losses
        U[idx] = 0.25 * U[idx] + 0.75 * (losses - lr * dL)
        last[idx] = losses
        theta = approx_in.mean() - losses.mean()
        assert r["theta"] == pytest.approx(theta) and r["reward"] == pytest.approx(drop.mean())
        first.setdefault(k, theta)
        theta_prev = theta
        rounds.append(k)
    np.testing.assert_allclose(smp.U, U)
    assert len(set(rounds)) == 2 and len(rounds) >= 3      # both clusters, and a revisit


def test_usage_cap_and_exhaustion():
    n = 10
    for cap in (1, 3):
        smp = LEADSampler(LEADConfig(sample_rate=0.3, use_cap=cap, batch_size=100), np.array([0, 1] * 5),
                          np.zeros(n, dtype=np.int64), np.arange(n, dtype=float), np.ones(n, dtype=bool),
                          budget=10 ** 6, rng=np.random.default_rng(0))
        steps = _drive(smp, _Net(), lambda i, s: 1.0)
        counts = np.bincount(np.concatenate([i for i, _ in steps]), minlength=n)
        assert (counts == cap).all() and (smp.uses == cap).all()    # every example, never beyond the cap


def test_stops_at_the_unique_example_budget_and_orders_by_first_use():
    n = 40
    smp = LEADSampler(LEADConfig(sample_rate=0.2, batch_size=3), np.arange(n) % 4, np.arange(n) % 2,
                      np.random.default_rng(1).random(n), np.ones(n, dtype=bool), budget=9,
                      rng=np.random.default_rng(0))
    steps = _drive(smp, _Net(), lambda i, s: 1.0 / (1 + s))
    used = []
    for idx, _ in steps:
        used += [int(i) for i in idx if int(i) not in used]
        assert len(idx) <= 3                                      # steps of at most batch_size
    assert used == smp.order and len(used) >= 9
    # the last round began below the budget, and no round started after reaching it
    before_last = smp.rounds[-2]["used"] if len(smp.rounds) > 1 else 0
    assert before_last < 9 <= smp.rounds[-1]["used"]
    # per (cluster, task), at least one example each round
    for r in smp.rounds:
        assert r["examples"] >= len(np.unique((np.arange(n) % 2)[np.arange(n) % 4 == r["cluster"]]))


# ---- the engine's sampler hook -----------------------------------------------------------------------

def _example_losses(lm, data):
    """Each example's mean loss over its response tokens + EOS, from a plain HF forward."""
    tok, out = lm.tokenizer, []
    with torch.no_grad():
        for e in data.examples:
            r = render_conversation(e, "alpaca")
            enc = tok(r.text + tok.eos_token, return_offsets_mapping=True)
            ids = torch.tensor([enc["input_ids"]])
            lab = ids.clone()
            for j, (s, t) in enumerate(enc["offset_mapping"]):
                if not (t > s and s >= r.spans[0][0]):
                    lab[0, j] = -100
            lab[0, -1] = ids[0, -1]
            out.append(float(lm.model(input_ids=ids, labels=lab).loss))
    return np.array(out)


class _Fixed(Sampler):
    def __init__(self, steps):
        self.steps, self.heard, self.trainable = list(steps), [], None

    def start(self, trainable, model):
        self.trainable = trainable

    def next_step(self):
        return self.steps.pop(0) if self.steps else None

    def feedback(self, fb):
        self.heard.append((fb.step, list(fb.indices), fb.losses.copy(), fb.lr))


def test_sampler_hook_trains_the_named_examples_and_reports_their_losses(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file)
    smp = _Fixed([[3, 1, 5], [0], [7, 2], [4, 6]])
    cfg = TrainConfig(template="alpaca", learning_rate=1e-2, batch_size=2, lora_dropout=0.0, lr_schedule="exponential",
                      lr_decay=0.5, lr_decay_steps=2)
    res = finetune(tiny_llama, ds, cfg, progress=False, sampler=smp)
    assert smp.trainable.all() and len(res.log) == 4 and res.examples == 8
    # what the sampler chose (each step as a set) is part of the trained model's fingerprint
    other = finetune(tiny_llama, ds, cfg, progress=False, sampler=_Fixed([[3, 1, 5], [0], [7, 6], [4, 2]]))
    same = finetune(tiny_llama, ds, cfg, progress=False, sampler=_Fixed([[1, 5, 3], [0], [2, 7], [6, 4]]))
    assert other.lm.fingerprint != res.lm.fingerprint == same.lm.fingerprint
    assert [sorted(h[1]) for h in smp.heard] == [[1, 3, 5], [0], [2, 7], [4, 6]]
    # the first step's losses: the base model's (LoRA starts as the identity), before its update
    base = _example_losses(tiny_llama, ds)
    np.testing.assert_allclose(smp.heard[0][2], base[smp.heard[0][1]], rtol=1e-4)
    assert smp.heard[1][2][0] != pytest.approx(base[0], rel=1e-6)           # later steps: the updated model
    # LEAD's schedule: lr x decay ** (step // every), no warm-up
    assert [h[3] for h in smp.heard] == pytest.approx([1e-2, 1e-2, 5e-3, 5e-3])
    assert [r["lr"] for r in res.log] == pytest.approx([1e-2, 1e-2, 5e-3, 5e-3])


def test_sampler_hook_refuses_what_it_cannot_do(tiny_llama, alpaca_file):
    ds = read_dataset(alpaca_file)
    with pytest.raises(TunesiftError, match="total_steps"):
        finetune(tiny_llama, ds, TrainConfig(template="alpaca"), progress=False, sampler=_Fixed([[0]]))
    with pytest.raises(TunesiftError, match="no target token"):
        finetune(tiny_llama, ds, TrainConfig(template="alpaca", lr_schedule="exponential"), progress=False,
                 sampler=_Fixed([[0], [99]]))


# ---- the whole method on a tiny model ------------------------------------------------------------------

@pytest.fixture
def pool_file(tmp_path):
    recs = [dict(r, dataset="ab"[i % 2]) for i, r in enumerate(ALPACA * 3)]
    p = tmp_path / "pool.json"
    p.write_text(json.dumps(recs))
    return p


def test_lead_end_to_end_clusters_budget_and_seed(tiny_llama, pool_file, tmp_path):
    from sklearn.cluster import KMeans
    kw = dict(lm=tiny_llama, cache_dir=tmp_path / "c", progress=False, **LIGHT)
    res = tunesift.select(pool_file, "lead", 7, seed=1, **kw)
    t = res.table
    # LEAD's difficulty: IFD under the warm-up model, undefined or > 1 set to 0 (not dropped)
    raw = t["ifd_raw"].to_numpy()
    np.testing.assert_allclose(t["ifd"], np.where(np.isfinite(raw) & (raw <= 1), raw, 0.0))
    # K = 7 k-means on the 1-D IFD: the same partition as scikit-learn's, in contiguous IFD intervals
    x = t["ifd"].to_numpy()[:, None].astype(np.float32)
    want = KMeans(n_clusters=7, n_init=1, random_state=1, algorithm="lloyd").fit(x).labels_
    got = t["cluster"].to_numpy()
    assert {tuple(np.flatnonzero(got == g)) for g in set(got)} == {tuple(np.flatnonzero(want == g)) for g in set(want)}
    for g in set(got):
        inside = x[got == g, 0]
        outside = x[got != g, 0]
        assert not ((outside > inside.min()) & (outside < inside.max())).any()
    # tasks from the source field, in sorted order (clustering.py)
    assert list(t["task"]) == [i % 2 for i in range(len(t))]
    # exactly the budget of unique examples, in order of first use; all were trained
    sel = list(res.selected_indices)
    assert len(sel) == 7 == len(set(sel)) and (t.loc[sel, "uses"] >= 1).all()
    assert list(t.loc[sel, "first_round"]) == sorted(t.loc[sel, "first_round"])
    assert (t["uses"] <= 4).all()
    # the same seed, the same run; the bandit's draws follow the seed
    again = tunesift.select(pool_file, "lead", 7, seed=1, **kw)
    assert list(again.selected_indices) == sel
    np.testing.assert_allclose(again.table["score"], t["score"])


@pytest.mark.slow
def test_lead_cli_and_api_on_the_real_default_model(shared_data, tmp_path):
    """The whole method (LoRA warm-up, IFD under it, k-means, the bandit driving one LoRA fine-tune)
    on SmolLM2-135M-Instruct and 12 real Alpaca examples, from the CLI and from the API."""
    import importlib.util

    import pandas as pd
    from typer.testing import CliRunner

    from tunesift.cli import app
    from tunesift.models.loading import DEFAULT_LM, OFFLINE_MODELS
    if importlib.util.find_spec(OFFLINE_MODELS[DEFAULT_LM][0]) is None:
        pytest.skip("the default model is not installed")
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    light = ["-p", "warmup_fraction=0.25", "-p", "warmup_epochs=1", "-p", "batch_size=2", "-p", "clusters=3",
             "-p", "lora_targets=all-linear", "-p", "max_length=256"]
    out = tmp_path / "sel.json"
    r = CliRunner().invoke(app, ["select", str(src), "-m", "lead", "-b", "4", "--limit", "12", "-o", str(out), "-q",
                                 "--cache-dir", str(tmp_path / "c"), "--device", "cpu", "--dtype", "float32", *light])
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "sel.scores.parquet")
    assert len(t) == 12 and t["selected"].sum() == 4
    # the selection is the first four examples the bandit used, in order of first use
    used = t[t["uses"] > 0].sort_values("first_round", kind="stable")
    assert set(t.index[t["selected"]]) <= set(used.index) and t.loc[t["selected"], "uses"].min() >= 1
    assert t["cluster"].nunique() <= 3
    res = tunesift.select(src, "lead", 4, limit=12, device="cpu", dtype="float32", progress=False,
                          cache_dir=tmp_path / "c", warmup_fraction=0.25, warmup_epochs=1, batch_size=2, clusters=3,
                          lora_targets="all-linear", max_length=256)
    assert sorted(res.selected_indices.tolist()) == sorted(np.flatnonzero(t["selected"].to_numpy()).tolist())
