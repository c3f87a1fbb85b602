"""Evaluation data from files the user points to, with errors that name the file and the line.

Layouts (the ones ``shared/data/eval`` holds, and their public sources):
- reference answers: any dataset tunesift reads (AlpacaEval's JSON is Alpaca-shaped), or a FastChat
  folder with ``question.jsonl`` + ``reference_answer_*.jsonl`` (MT-Bench, Vicuna-80; first turn);
- MMLU: a folder of ``<subject>_{dev,test}.csv`` (or ``dev/`` and ``test/`` subfolders) with columns
  question, choice0..choice3, answer (HF cais/mmlu layout);
- BBH: a folder of ``<task>.json`` with ``{"examples": [{"input", "target"}]}``; the multiple-choice
  tasks are those whose every target is an option letter like ``(A)``;
- GSM8K: JSONL with ``question`` and ``answer`` ending in ``#### <number>``.
"""
from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.errors import DataError, TunesiftError
from ..data.io import Dataset, from_records, read_dataset

LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


@dataclass
class MCItem:
    prompt: str
    options: list[str]     # continuations scored after the prompt
    answer: int
    group: str = ""        # subject / task


@dataclass
class GenItem:
    prompt: str
    answer: str
    group: str = ""


def subsample(items: list, limit: int | None, seed: int = 0) -> list:
    """The same ``limit`` items for every model compared (a seeded draw, kept in file order)."""
    if limit is None or limit >= len(items):
        return items
    keep = np.sort(np.random.default_rng(seed).choice(len(items), limit, replace=False))
    return [items[i] for i in keep]


def load_references(path: str | Path, limit: int | None = None, exclude: frozenset[int] = frozenset()) -> Dataset:
    """Prompts with reference answers: any dataset file, a FastChat question/reference folder, or
    Self-Instruct's user-oriented test set (one reference per instance).  ``exclude``: positions in
    the file left out before the seeded ``limit`` draw (a bench's target-set slice)."""
    path = Path(path)
    if path.is_dir():
        return _fastchat(path, limit)
    ds = _self_instruct(path) if path.name.startswith("sinstruct") else read_dataset(path)
    keep = [i for i in range(len(ds)) if i not in exclude]
    if limit is not None and limit < len(keep):
        keep = [keep[i] for i in np.sort(np.random.default_rng(0).choice(len(keep), limit, replace=False))]
    return ds.subset(keep)


def _self_instruct(path: Path) -> Dataset:
    """Self-Instruct's 252 user-oriented tasks: ``{instruction, instances: [{input, output}]}``."""
    records = []
    for n, r in _jsonl(path):
        try:
            for k, inst in enumerate(r["instances"]):
                records.append({"instruction": r["instruction"], "input": inst.get("input", ""),
                                "output": inst["output"], "id": f"{r['id']}#{k}"})
        except (KeyError, TypeError):
            raise DataError(path, n, "instances[].output", "missing_field",
                            "Self-Instruct layout: instruction and instances of {input, output}") from None
    return from_records(records, name=str(path))


def _jsonl(path: Path) -> list[tuple[int, dict]]:
    out = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(path, None, None, "unreadable", str(e)) from None
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append((n, json.loads(line)))
        except json.JSONDecodeError as e:
            raise DataError(path, n, None, "malformed_json", e.msg) from None
    return out


def _fastchat(folder: Path, limit: int | None) -> Dataset:
    qf = folder / "question.jsonl"
    refs = sorted(folder.glob("reference_answer*.jsonl"))
    if not qf.exists() or not refs:
        raise TunesiftError(f"{folder}: expected question.jsonl and reference_answer_*.jsonl (FastChat layout)")
    answers = {}
    for n, r in _jsonl(refs[0]):
        try:
            answers[r["question_id"]] = r["choices"][0]["turns"][0]
        except (KeyError, IndexError, TypeError):
            raise DataError(refs[0], n, "choices[0].turns[0]", "missing_field", "no first-turn answer") from None
    records = []
    for n, q in _jsonl(qf):
        if "turns" not in q or not q["turns"]:
            raise DataError(qf, n, "turns", "missing_field", "no question turns")
        if q.get("question_id") in answers:
            records.append({"instruction": q["turns"][0], "input": "", "output": answers[q["question_id"]],
                            "id": str(q["question_id"])})
    ds = from_records(records, name=str(folder))
    return ds if limit is None else ds.subset(range(min(limit, len(ds))))


def load_mmlu(root: str | Path, split: str = "test", k_shot: int = 0, limit: int | None = None,
              style: str = "letters") -> list[MCItem]:
    """``style="letters"``: score the option letter " A".." D" (the original MMLU protocol);
    ``"text"``: score each option's own text after "Answer:" (the continuation style of
    lm-evaluation-harness), which small models' letter bias does not swamp."""
    root = Path(root)
    folder = root / split if (root / split).is_dir() else root
    files = sorted(folder.glob(f"*_{split}.csv"))
    if not files:
        raise TunesiftError(f"{folder}: no *_{split}.csv files (MMLU layout: question,choice0..3,answer)")
    dev = {}
    if k_shot:
        dev_dir = root / "dev" if (root / "dev").is_dir() else root
        for f in dev_dir.glob("*_dev.csv"):
            dev[f.name[:-len("_dev.csv")]] = _mmlu_rows(f)
    items = []
    for f in files:
        subject = f.name[:-len(f"_{split}.csv")]
        head = f"The following are multiple choice questions (with answers) about {subject.replace('_', ' ')}.\n\n"
        shots = "".join(_mmlu_q(q, c) + f" {LETTERS[a]}\n\n" for q, c, a in dev.get(subject, [])[:k_shot])
        for q, choices, a in _mmlu_rows(f):
            opts = [f" {LETTERS[i]}" for i in range(len(choices))] if style == "letters" else [f" {c}" for c in choices]
            items.append(MCItem(head + shots + _mmlu_q(q, choices), opts, a, subject))
    return subsample(items, limit)


def _mmlu_q(q: str, choices: list[str]) -> str:
    return q.strip() + "\n" + "".join(f"{LETTERS[i]}. {c}\n" for i, c in enumerate(choices)) + "Answer:"


def _mmlu_rows(path: Path) -> list[tuple[str, list[str], int]]:
    rows = []
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        need = {"question", "choice0", "choice1", "answer"}
        if not need <= set(reader.fieldnames or []):
            raise DataError(path, 1, ",".join(sorted(need - set(reader.fieldnames or []))), "missing_field",
                            "MMLU CSV needs question, choice0..choice3, answer")
        for r in reader:
            choices = [r[k] for k in ("choice0", "choice1", "choice2", "choice3") if r.get(k) is not None]
            try:
                a = int(r["answer"])
                assert 0 <= a < len(choices)
            except (ValueError, AssertionError):
                raise DataError(path, reader.line_num, "answer", "bad_value",
                                f"answer must be an index 0..{len(choices) - 1}, got {r['answer']!r}") from None
            rows.append((r["question"], choices, a))
    return rows


_OPT = re.compile(r"^\([A-Z]\)$")


def load_bbh(root: str | Path, tasks: list[str] | None = None, k_shot: int = 0, limit: int | None = None) -> list[MCItem]:
    """BBH's multiple-choice tasks, scored by the log-likelihood of each option letter."""
    root = Path(root)
    files = sorted(root.glob("*.json"))
    if not files:
        raise TunesiftError(f"{root}: no BBH task files (*.json)")
    items = []
    for f in files:
        if tasks and f.stem not in tasks:
            continue
        try:
            exs = json.loads(f.read_text(encoding="utf-8"))["examples"]
        except (json.JSONDecodeError, KeyError) as e:
            raise DataError(f, None, "examples", "malformed_json", str(e)) from None
        if not all(_OPT.match(str(e.get("target", "")).strip()) for e in exs):
            continue     # free-form task: not multiple choice
        shots = "".join(f"Q: {e['input']}\nA: {e['target']}\n\n" for e in exs[:k_shot])
        for e in exs[k_shot:]:
            letters = sorted(set(re.findall(r"^\(([A-Z])\)", e["input"], flags=re.M)))
            if not letters:
                continue
            gold = e["target"].strip()[1]
            if gold not in letters:
                continue
            items.append(MCItem(shots + f"Q: {e['input']}\nA:", [f" ({x})" for x in letters], letters.index(gold), f.stem))
    return subsample(items, limit)


def load_gsm8k(path: str | Path, limit: int | None = None) -> list[GenItem]:
    path = Path(path)
    if path.is_dir():
        path = path / "test.jsonl"
    items = []
    for n, r in _jsonl(path):
        if "question" not in r or "answer" not in r:
            raise DataError(path, n, "question" if "question" not in r else "answer", "missing_field",
                            "GSM8K lines need question and answer")
        if "####" not in r["answer"]:
            raise DataError(path, n, "answer", "bad_value", "the answer must end in '#### <number>'")
        items.append(GenItem(r["question"], _number(r["answer"].split("####")[-1]) or "", "gsm8k"))
    return subsample(items, limit)


def _number(text: str) -> str | None:
    nums = re.findall(r"-?\d[\d,]*(?:\.\d+)?", text)
    if not nums:
        return None
    v = nums[-1].replace(",", "").rstrip(".")
    return v[:-2] if v.endswith(".0") else v
