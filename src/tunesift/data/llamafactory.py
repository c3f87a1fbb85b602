"""Selections that LLaMA-Factory trains on: records converted to alpaca, sharegpt or messages, and
the ``dataset_info.json`` entry that makes the file usable as ``--dataset NAME``.

The entry follows LLaMA-Factory's ``data/README.md``: ``file_name`` relative to the dataset
directory (the folder that holds ``dataset_info.json``), ``formatting`` alpaca or sharegpt,
``columns`` naming the record's fields and, for sharegpt-style lists, ``tags`` naming the role and
content keys and the role values.  OpenAI-style ``messages`` are sharegpt formatting with
role/content tags.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import DataError, TunesiftError
from .example import Example, container_of
from .formats import to_record
from .writers import write_json

TARGETS = ("alpaca", "sharegpt", "messages")
# our format name -> LLaMA-Factory's layout for it
_LAYOUT = {"alpaca": "alpaca", "sharegpt": "sharegpt", "openai": "messages", "messages": "messages"}
_TAGS = {
    "sharegpt": {"role_tag": "from", "content_tag": "value", "user_tag": "human", "assistant_tag": "gpt",
                 "system_tag": "system"},
    "messages": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                 "system_tag": "system"},
}
# given "tags", LLaMA-Factory leaves the unnamed ones None: name its defaults for tool turns too
_TOOL_TAGS = {"observation_tag": "observation", "function_tag": "function_call"}
_LIST_KEY = {"sharegpt": "conversations", "messages": "messages"}
_READABLE = ("json", "jsonl", "parquet", "csv")   # LLaMA-Factory reads these (and arrow); not .gz


def convert(e: Example, to: str, source_format: str) -> dict[str, Any]:
    """One example as a record in ``to``.  Turns after the last assistant turn are dropped: they are
    not trained on, and LLaMA-Factory wants conversations that end with the assistant."""
    if to not in TARGETS:
        raise TunesiftError(f"--to must be one of {', '.join(TARGETS)}, not {to!r}")
    if to == "alpaca" and source_format == "alpaca":
        return {k: e.raw[k] for k in ("instruction", "input", "output", "system", "history") if k in e.raw}
    last = max(i for i, m in enumerate(e.messages) if m["role"] == "assistant")
    msgs = e.messages[:last + 1]
    if to == "alpaca":
        turns = [m["role"] for m in msgs if m["role"] != "system"]
        if turns != ["user", "assistant"] * (len(turns) // 2) or not turns:
            raise DataError(str(e.id), e.line, None, "not_alpaca",
                            "turns do not alternate user/assistant, so they cannot be alpaca pairs; use --to sharegpt")
        return to_record("alpaca", msgs)
    return to_record("openai" if to == "messages" else "sharegpt", msgs)


def dataset_entry(records: list[dict], layout: str, file_name: str) -> dict[str, Any]:
    """The ``dataset_info.json`` value for ``records`` written as ``file_name`` in ``layout``."""
    if layout == "alpaca":
        # a named column must exist in every row (LLaMA-Factory indexes it), and with "columns" given
        # an unnamed one is None, not its default (parser.py set_attr)
        cols = {"prompt": "instruction", "response": "output"}
        if any("input" in r for r in records):
            cols["query"] = "input"
        for k in ("system", "history"):
            if any(k in r for r in records):
                cols[k] = k
        return {"file_name": file_name, "formatting": "alpaca", "columns": cols}
    key, tags = _LIST_KEY[layout], _TAGS[layout]
    allowed = {tags["user_tag"], tags["assistant_tag"], tags["system_tag"]}
    for r in records:
        roles = {t.get(tags["role_tag"]) for t in r.get(key) or [] if isinstance(t, dict)}
        if not roles <= allowed:
            raise TunesiftError(f"roles {sorted(map(str, roles - allowed))} are not LLaMA-Factory's "
                                f"{layout} tags ({', '.join(sorted(allowed))}); write with --to {layout} to rename them")
    cols = {"messages": key}
    if any("system" in r for r in records):
        cols["system"] = "system"
    return {"file_name": file_name, "formatting": "sharegpt", "columns": cols, "tags": {**tags, **_TOOL_TAGS}}


def layout_of(format: str) -> str:
    if format not in _LAYOUT:
        raise TunesiftError(f"LLaMA-Factory reads alpaca and sharegpt-style data; this selection is {format}: "
                            f"pass --to {' or --to '.join(TARGETS)}")
    return _LAYOUT[format]


def check_target(data_path: str | Path, to: str | None, llamafactory: bool) -> None:
    """Before any work: a --to or --llamafactory that cannot be written fails now, not after scoring."""
    if to is not None and to not in TARGETS:
        raise TunesiftError(f"--to must be one of {', '.join(TARGETS)}, not {to!r}")
    if llamafactory:
        container = container_of(data_path)
        if container not in _READABLE:
            raise TunesiftError(f"LLaMA-Factory does not read .{container} files: write .json, .jsonl or .parquet")
        if container == "csv" and to != "alpaca":
            raise TunesiftError("--llamafactory with a .csv output needs --to alpaca (a CSV cell cannot hold a "
                                "conversation list): or write .json, .jsonl or .parquet")


def write_dataset_info(records: list[dict], layout: str, data_path: str | Path, name: str | None = None) -> Path:
    """Add (or replace) the entry for ``data_path`` in the ``dataset_info.json`` beside it."""
    data_path = Path(data_path)
    check_target(data_path, layout if layout in TARGETS else None, True)
    info_path = data_path.parent / "dataset_info.json"
    info = json.loads(info_path.read_text()) if info_path.exists() else {}
    info[name or _stem(data_path.name)] = dataset_entry(records, layout, data_path.name)
    write_json(info, info_path)
    return info_path


def _stem(name: str) -> str:
    for ext in (".jsonl", ".json", ".parquet", ".csv"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name
