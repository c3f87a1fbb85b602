"""Hugging Face datasets and pandas in, the same type out; save_to_disk folders and hf:ID on the CLI."""
import json

import pandas as pd
import pytest
from typer.testing import CliRunner

import tunesift
from tunesift.cli import app
from tunesift.data.errors import TunesiftError
from tunesift.data.hf import load_source, read_source

datasets = pytest.importorskip("datasets")
from tests.conftest import ALPACA  # noqa: E402

runner = CliRunner()
KW = dict(progress=False, use_cache=False, seed=0)


def test_hf_dataset_in_hf_dataset_out(tiny_llama):
    ds = datasets.Dataset.from_list(ALPACA)
    res = tunesift.select(ds, "random", 3, lm=tiny_llama, **KW)
    out = res.selected_as()
    assert isinstance(out, datasets.Dataset) and out.features == ds.features
    rows = sorted(int(i) for i in res.selected_indices)   # every record is valid: example i is row i
    assert out.to_list() == [ALPACA[r] for r in rows]
    assert isinstance(res.selected_as("pandas"), pd.DataFrame)
    assert res.selected_as("records") == [ALPACA[r] for r in rows]


def test_one_split_datasetdict_and_a_frame_keep_their_rows(tiny_llama):
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(ALPACA)})
    assert isinstance(tunesift.select(dd, "random", 2, lm=tiny_llama, **KW).selected_as(), datasets.Dataset)
    with pytest.raises(TunesiftError, match="splits"):
        read_source(datasets.DatasetDict({"a": dd["train"], "b": dd["train"]}))
    # a bad row in the middle: rows map through the examples' lines, not their positions
    rows = ALPACA[:3] + [{"instruction": "no output"}] + ALPACA[3:]
    df = pd.DataFrame(rows, index=[f"r{i}" for i in range(len(rows))])
    res = tunesift.select(df, "random", "all", lm=tiny_llama, on_error="skip", **KW)
    out = res.selected_as()
    assert isinstance(out, pd.DataFrame) and "r3" not in out.index and len(out) == len(rows) - 1
    assert out.loc["r4", "instruction"] == ALPACA[3]["instruction"]


def test_save_to_disk_folder_and_hf_loader(tmp_path, tiny_model_dir):
    d = tmp_path / "saved"
    datasets.Dataset.from_list(ALPACA).save_to_disk(str(d))
    out = tmp_path / "sel.jsonl"
    r = runner.invoke(app, ["select", str(d), "-m", "random", "-b", "3", "-o", str(out), "--model",
                            str(tiny_model_dir), "--no-cache", "-q"])
    assert r.exit_code == 0, r.output
    assert len(out.read_text().splitlines()) == 3
    r = runner.invoke(app, ["inspect", str(d), "--json"])
    assert r.exit_code == 0 and json.loads(r.output[r.output.index("{"):])["examples"] == len(ALPACA)
    # hf:ID goes through datasets.load_dataset; a local folder of data files stands in for the hub here
    files = tmp_path / "hubcopy"
    files.mkdir()
    (files / "train.jsonl").write_text("".join(json.dumps(x) + "\n" for x in ALPACA))
    obj, name = load_source(f"hf:{files}:train")
    assert len(obj) == len(ALPACA) and name.endswith(":train")


def test_hub_unreachable_is_a_clear_error(monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'tatsu-lab/alpaca' on the Hub (LocalEntryNotFoundError)")
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(TunesiftError, match="save_to_disk"):
        load_source("hf:tatsu-lab/alpaca:train")
