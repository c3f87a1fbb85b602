"""ifd-pre (Cherry V1) step by step against the authors' rules written out per example: the prompt's
perplexity and mean last-layer embedding (data_analysis.py --mod pre), k-means, the middle perplexity
band sampled evenly (data_by_cluster.py), and IFD from the model fine-tuned on that sample."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.cluster import KMeans

import tunesift
from tunesift.data.io import read_dataset
from tunesift.methods.ifd_pre import middle_band_sample, scaled_clusters

from .conftest import ALPACA
from .test_methods import cherry_prompt

RECIPE = dict(clusters=2, per_cluster=4, epochs=1, batch_size=4)


def pool(n: int) -> list[dict]:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel"]
    return [dict(ALPACA[i % len(ALPACA)], instruction=f"{ALPACA[i % len(ALPACA)]['instruction']} "
                 + " ".join(words[: 1 + (i * 3) % len(words)])) for i in range(n)]


def official_band(labels, ppl, n, low, high):
    """data_by_cluster.py:41-76 written out: per cluster, all if < n members; else the members within
    [P_low, P_high] of the cluster's perplexities, all if < n of them, else every (len // n)-th, the first n."""
    out = []
    for c in range(len(set(labels.tolist()))):
        members = [i for i in range(len(labels)) if labels[i] == c]
        if len(members) < n:
            out += members
            continue
        vals = [ppl[i] for i in members]
        lo, hi = np.percentile(vals, low), np.percentile(vals, high)
        middle = [i for i in members if lo <= ppl[i] <= hi]
        if len(middle) < n:
            out += middle
            continue
        step = len(middle) // n
        out += [middle[s] for s in range(0, len(middle), step)][:n]
    return out


@pytest.mark.parametrize("seed", range(5))
def test_band_and_even_spacing_as_data_by_cluster(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, size=300)
    ppl = rng.lognormal(size=300)
    ppl[rng.integers(0, 300, 20)] = ppl[0]          # ties at the band's edges
    for n, lo, hi in [(10, 25, 75), (10, 1, 99), (3, 25, 75), (80, 25, 75)]:
        assert middle_band_sample(labels, ppl, n, lo, hi).tolist() == official_band(labels, ppl, n, lo, hi)


def test_scaled_clusters():
    assert scaled_clusters(52002) == 100 and scaled_clusters(200) == 1 and scaled_clusters(10**6) == 100
    assert scaled_clusters(5200) == 10


def plain_pre(lm, rec, max_length=512):
    """data_analysis.py get_perplexity_and_embedding_whole_text on the Alpaca prompt alone."""
    ids = lm.tokenizer.encode(cherry_prompt(rec), return_tensors="pt", truncation=True, max_length=max_length)
    with torch.no_grad():
        out = lm.model(ids, labels=ids, output_hidden_states=True)
    return float(torch.exp(out.loss)), out.hidden_states[-1].mean(dim=1)[0].float().numpy()


def test_each_step_and_the_final_ifd(tiny_llama, tmp_path, monkeypatch):
    from tunesift.methods.ifd_pre import IFDPre   # noqa: F401  (registers)
    from tunesift.train import TrainConfig, finetune
    recs = pool(40)
    f = tmp_path / "pool.json"
    f.write_text(json.dumps(recs))
    res = tunesift.score(f, "ifd-pre", lm=tiny_llama, cache_dir=tmp_path / "c", progress=False, **RECIPE)
    t = res.table
    plain = [plain_pre(tiny_llama, r) for r in recs]
    ppl = np.array([p for p, _ in plain])
    emb = np.stack([e for _, e in plain])
    assert np.allclose(t["instruction_ppl"], ppl, rtol=1e-4)
    labels = KMeans(n_clusters=2, n_init=1, random_state=0).fit(emb).labels_
    assert t["cluster"].tolist() == labels.tolist()
    picks = official_band(labels, ppl, 4, 25, 75)
    assert np.flatnonzero(t["pre_sample"]).tolist() == sorted(picks) and len(picks) == 8

    # IFD with the model fine-tuned on that sample, by the fine-tuning engine and the ifd method
    cfg = TrainConfig(method="full", template="alpaca", epochs=1.0, learning_rate=2e-5, batch_size=4,
                      micro_batch_tokens=1024, max_length=512, warmup_ratio=0.03, lr_schedule="cosine")
    pre = finetune(tiny_llama, read_dataset(f).subset(picks), cfg, progress=False).lm
    want = tunesift.score(f, "ifd", lm=pre, cache_dir=tmp_path / "d", progress=False).table
    assert np.allclose(t["ifd"], want["ifd"], rtol=1e-4, equal_nan=True)
    assert t["eligible"].tolist() == want["eligible"].tolist()
    base = tunesift.score(f, "ifd", lm=tiny_llama, cache_dir=tmp_path / "d", progress=False).table
    assert not np.allclose(t["ifd"], base["ifd"], rtol=1e-6)     # the base model's IFD differs

    # a rerun loads the cached pre-experienced model: no second fine-tune, same scores
    def no_training(*a, **k):
        raise AssertionError("fine-tuned again")
    monkeypatch.setattr("tunesift.methods.ifd_pre.finetune", no_training)
    again = tunesift.score(f, "ifd-pre", lm=tiny_llama, cache_dir=tmp_path / "c", progress=False, **RECIPE).table
    assert np.allclose(again["ifd"], t["ifd"], rtol=1e-6, equal_nan=True)


@pytest.mark.slow
def test_cli_on_the_default_model(tmp_path, shared_data):
    src = Path(shared_data) / "train" / "alpaca" / "cherry_alpaca_5_percent.json"
    recs = json.loads(src.read_text())[:12]
    f = tmp_path / "twelve.json"
    f.write_text(json.dumps(recs))
    out = tmp_path / "sel.jsonl"
    exe = Path(sys.executable).with_name("tunesift")
    r = subprocess.run([str(exe), "select", str(f), "-m", "ifd-pre", "-b", "4", "-o", str(out),
                        "--cache-dir", str(tmp_path / "c"), "-p", "epochs=1", "-p", "per_cluster=4",
                        "--max-length", "256"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    assert len(out.read_text().splitlines()) == 4
