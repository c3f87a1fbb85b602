"""IFEval's verifiable instructions (Zhou et al., 2023): a checker per instruction type.

Each checker takes the response and the instruction's kwargs and returns whether it was followed.
Prompt-level accuracy: every instruction of a prompt followed; instruction-level: the share of
instructions followed.  "Loose" accuracy also accepts the response with its first line, its last
line, or both removed, and with markdown asterisks stripped (the benchmark's loose variants).
Written from the benchmark's published definitions of each type; ``language:response_language``
uses ``langdetect`` when it is installed and is otherwise counted as unsupported (reported, never
scored as failed).
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Callable

from ..data.errors import DataError
from .sets import _jsonl, subsample

RELATIONS = ("less than", "at least")
CONSTRAINED = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


def _compare(n: int, relation: str, target: int) -> bool:
    if relation == "less than":
        return n < target
    if relation == "at least":
        return n >= target
    raise ValueError(f"unknown relation {relation!r}")


def _words(text: str) -> list[str]:
    return re.findall(r"\b\w+\b", text)


def _sentences(text: str) -> list[str]:
    # split after . ! ? followed by space/newline, ignoring common abbreviations and decimals
    text = re.sub(r"\b(Mr|Mrs|Ms|Dr|Prof|Sr|Jr|St|vs|etc|e\.g|i\.e)\.", r"\1<prd>", text)
    text = re.sub(r"(\d)\.(\d)", r"\1<prd>\2", text)
    parts = re.split(r"(?<=[.!?])[\"')\]]*\s+", text.strip())
    return [p for p in parts if re.search(r"\w", p)]


def _paragraphs_stars(text: str) -> list[str]:
    return [p for p in re.split(r"\s?\*\*\*\s?", text)]


def _language(text: str, kw: dict) -> bool | None:
    try:
        from langdetect import detect  # type: ignore
    except ImportError:
        return None
    try:
        return detect(text) == kw["language"]
    except Exception:  # noqa: BLE001 - langdetect raises on texts without features
        return True


def _json(text: str, kw: dict) -> bool:
    t = text.strip()
    t = re.sub(r"^```(?:json|Json|JSON)?\s*", "", t)
    t = re.sub(r"\s*```$", "", t)
    try:
        json.loads(t)
        return True
    except json.JSONDecodeError:
        return False


def _nth_first_word(text: str, kw: dict) -> bool:
    paras = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(paras) != kw["num_paragraphs"]:
        return False
    n = kw["nth_paragraph"]
    if not 1 <= n <= len(paras):
        return False
    words = paras[n - 1].strip().split()
    if not words:
        return False
    first = re.sub(r"[^\w]", "", words[0]).lower()
    return first == kw["first_word"].lower()


def _sections(text: str, kw: dict) -> bool:
    parts = re.split(r"\s?" + re.escape(kw["section_spliter"]) + r"\s?\d+\s?", text)
    return len(parts) - 1 >= kw["num_sections"]


def _paragraphs(text: str, kw: dict) -> bool:
    paras = _paragraphs_stars(text)
    n = len(paras)
    for i, p in enumerate(paras):
        if not p.strip():
            if i == 0 or i == len(paras) - 1:
                n -= 1
            else:
                return False
    return n == kw["num_paragraphs"]


def _two_responses(text: str, kw: dict) -> bool:
    parts = [p.strip() for p in text.split("******")]
    valid = [p for p in parts if p]
    return len(parts) - len(valid) <= 2 and len(valid) == 2 and valid[0] != valid[1] and \
        all(p or i in (0, len(parts) - 1) for i, p in enumerate(parts))


CHECKS: dict[str, Callable[[str, dict], bool | None]] = {
    "change_case:capital_word_frequency": lambda t, k: _compare(
        len(re.findall(r"\b[A-Z][A-Z0-9]*\b", t)), k["capital_relation"], k["capital_frequency"]),
    "change_case:english_capital": lambda t, k: t.upper() == t and bool(re.search(r"[A-Z]", t)),
    "change_case:english_lowercase": lambda t, k: t.lower() == t and bool(re.search(r"[a-z]", t)),
    "combination:repeat_prompt": lambda t, k: t.strip().lower().startswith(k["prompt_to_repeat"].strip().lower()),
    "combination:two_responses": _two_responses,
    "detectable_content:number_placeholders": lambda t, k: len(re.findall(r"\[.*?\]", t)) >= k["num_placeholders"],
    "detectable_content:postscript": lambda t, k: bool(re.search(
        r"\s*" + (r"p\.\s?p\.\s?s" if k["postscript_marker"].strip().lower() == "p.p.s" else re.escape(
            k["postscript_marker"].strip().lower())) + r".*$", t.lower(), flags=re.M)),
    "detectable_format:constrained_response": lambda t, k: any(c in t.strip() for c in CONSTRAINED),
    "detectable_format:json_format": _json,
    "detectable_format:multiple_sections": _sections,
    "detectable_format:number_bullet_lists": lambda t, k: len(re.findall(r"^\s*[\*\-]\s+\S", t, flags=re.M))
    == k["num_bullets"],
    "detectable_format:number_highlighted_sections": lambda t, k: sum(
        1 for h in re.findall(r"\*[^\n\*]+\*", t) if h.strip("*").strip()) + sum(
        1 for h in re.findall(r"\*\*[^\n\*]+\*\*", t) if h.strip("*").strip()) >= k["num_highlights"],
    "detectable_format:title": lambda t, k: any(x.strip() for x in re.findall(r"<<([^\n]+?)>>", t)),
    "keywords:existence": lambda t, k: all(re.search(re.escape(w), t, flags=re.I) for w in k["keywords"]),
    "keywords:forbidden_words": lambda t, k: not any(re.search(r"\b" + re.escape(w) + r"\b", t, flags=re.I)
                                                     for w in k["forbidden_words"]),
    "keywords:frequency": lambda t, k: _compare(len(re.findall(re.escape(k["keyword"]), t, flags=re.I)),
                                                k["relation"], k["frequency"]),
    "keywords:letter_frequency": lambda t, k: _compare(t.lower().count(k["letter"].lower()), k["let_relation"],
                                                       k["let_frequency"]),
    "language:response_language": _language,
    "length_constraints:nth_paragraph_first_word": _nth_first_word,
    "length_constraints:number_paragraphs": _paragraphs,
    "length_constraints:number_sentences": lambda t, k: _compare(len(_sentences(t)), k["relation"], k["num_sentences"]),
    "length_constraints:number_words": lambda t, k: _compare(len(_words(t)), k["relation"], k["num_words"]),
    "punctuation:no_comma": lambda t, k: "," not in t,
    "startend:end_checker": lambda t, k: t.strip().strip('"').lower().endswith(k["end_phrase"].strip().lower()),
    "startend:quotation": lambda t, k: len(t.strip()) > 1 and t.strip()[0] == '"' and t.strip()[-1] == '"',
}


def _loose_variants(text: str) -> list[str]:
    lines = text.split("\n")
    first_out = "\n".join(lines[1:]).strip()
    last_out = "\n".join(lines[:-1]).strip()
    both_out = "\n".join(lines[1:-1]).strip()
    base = [text, first_out, last_out, both_out]
    return base + [v.replace("*", "") for v in base]


def load_ifeval(path, limit: int | None = None) -> list[dict]:
    path = Path(path)
    if path.is_dir():
        path = path / "input_data.jsonl"
    rows = []
    for n, r in _jsonl(path):
        for f in ("prompt", "instruction_id_list", "kwargs"):
            if f not in r:
                raise DataError(path, n, f, "missing_field", "IFEval lines need prompt, instruction_id_list, kwargs")
        if len(r["instruction_id_list"]) != len(r["kwargs"]):
            raise DataError(path, n, "kwargs", "bad_value", "one kwargs object per instruction id")
        unknown = [i for i in r["instruction_id_list"] if i not in CHECKS]
        if unknown:
            raise DataError(path, n, "instruction_id_list", "bad_value", f"unknown instruction type(s) {unknown}")
        rows.append({"prompt": r["prompt"], "ids": r["instruction_id_list"],
                     "kwargs": [{k: v for k, v in kw.items() if v is not None} for kw in r["kwargs"]]})
    return subsample(rows, limit)


def score_responses(rows: list[dict], responses: list[str]) -> dict:
    """Prompt- and instruction-level accuracy, strict and loose; unsupported checks are counted."""
    strict_p = loose_p = 0
    strict_i = loose_i = total_i = 0
    unsupported = 0
    by_type: dict[str, list[int]] = {}
    for row, resp in zip(rows, responses):
        all_s = all_l = True
        for iid, kw in zip(row["ids"], row["kwargs"]):
            s = CHECKS[iid](resp, kw) if resp.strip() else False
            if s is None:
                unsupported += 1
                continue
            variants = _loose_variants(resp)
            loose = any(v.strip() and CHECKS[iid](v, kw) for v in variants)
            total_i += 1
            strict_i += int(s)
            loose_i += int(loose)
            all_s &= bool(s)
            all_l &= bool(loose)
            by_type.setdefault(iid, []).append(int(s))
        strict_p += int(all_s)
        loose_p += int(all_l)
    n = max(len(rows), 1)
    return {"prompt_strict": strict_p / n, "instruction_strict": strict_i / max(total_i, 1),
            "prompt_loose": loose_p / n, "instruction_loose": loose_i / max(total_i, 1),
            "n": len(rows), "instructions": total_i, "unsupported": unsupported,
            "by_type": {k: sum(v) / len(v) for k, v in sorted(by_type.items())}}
