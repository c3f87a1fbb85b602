"""--llamafactory writes the dataset_info.json entry LLaMA-Factory's data/README.md describes;
--to converts the written selection to alpaca, sharegpt or messages."""
import json

import pytest

import tunesift
from tunesift.data.errors import TunesiftError
from tunesift.data.llamafactory import convert, dataset_entry

KW = dict(progress=False, use_cache=False, seed=0)
SHAREGPT = [{"id": f"c{i}", "system": "be brief", "conversations": [
    {"from": "human", "value": f"question {i}"}, {"from": "gpt", "value": f"answer {i}"},
    {"from": "human", "value": "and then?"}, {"from": "gpt", "value": f"more {i}"}]} for i in range(5)]


def _lf_expected_columns(rec_keys):
    """The README's alpaca entry, keeping only the columns the rows have (LLaMA-Factory indexes each named one)."""
    cols = {"prompt": "instruction", "response": "output"}
    if "input" in rec_keys:
        cols["query"] = "input"
    return cols


def test_alpaca_selection_gets_its_entry(alpaca_file, tmp_path, tiny_llama):
    out = tmp_path / "lf" / "cherry.json"
    res = tunesift.select(alpaca_file, "random", 3, output=out, llamafactory=True, lm=tiny_llama, **KW)
    info = json.loads((tmp_path / "lf" / "dataset_info.json").read_text())
    assert info["cherry"] == {"file_name": "cherry.json", "formatting": "alpaca",
                              "columns": _lf_expected_columns({"instruction", "input", "output"})}
    assert res.paths["llamafactory"].endswith("dataset_info.json")
    # a second selection into the same folder adds its entry, keeping the first
    tunesift.select(alpaca_file, "random", 2, output=tmp_path / "lf" / "other.jsonl", llamafactory=True,
                    lm=tiny_llama, **KW)
    assert set(json.loads((tmp_path / "lf" / "dataset_info.json").read_text())) == {"cherry", "other"}


def test_to_messages_and_sharegpt_tags(tmp_path, tiny_llama):
    src = tmp_path / "chats.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in SHAREGPT))
    out = tmp_path / "sel.jsonl"
    tunesift.select(src, "random", 2, output=out, write_format="messages", llamafactory=True, lm=tiny_llama, **KW)
    rows = [json.loads(x) for x in out.read_text().splitlines()]
    assert [m["role"] for m in rows[0]["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    entry = json.loads((tmp_path / "dataset_info.json").read_text())["sel"]
    assert entry["formatting"] == "sharegpt" and entry["columns"] == {"messages": "messages"}
    assert {k: entry["tags"][k] for k in ("role_tag", "content_tag", "user_tag", "assistant_tag", "system_tag")} == \
        {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
         "system_tag": "system"}
    # native sharegpt: conversations with from/value and LLaMA-Factory's default tags
    tunesift.select(src, "random", 2, output=tmp_path / "native.json", llamafactory=True, lm=tiny_llama, **KW)
    e = json.loads((tmp_path / "dataset_info.json").read_text())["native"]
    assert e["columns"] == {"messages": "conversations", "system": "system"} and e["tags"]["user_tag"] == "human"


def test_to_alpaca_from_a_conversation_keeps_history():
    ds = read_dataset_from(SHAREGPT[:1])
    rec = convert(ds[0], "alpaca", ds.format)
    assert rec == {"instruction": "and then?", "input": "", "output": "more 0", "system": "be brief",
                   "history": [["question 0", "answer 0"]]}
    assert dataset_entry([rec], "alpaca", "x.json")["columns"] == {
        "prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"}


def test_bad_targets_fail_before_scoring(alpaca_file, tmp_path):
    with pytest.raises(TunesiftError, match="--to"):
        tunesift.select(alpaca_file, "random", 2, output=tmp_path / "a.json", write_format="chatml", **KW)
    with pytest.raises(TunesiftError, match="does not read"):
        tunesift.select(alpaca_file, "random", 2, output=tmp_path / "a.jsonl.gz", llamafactory=True, **KW)


def read_dataset_from(records):
    from tunesift.data import from_records
    return from_records(records)
