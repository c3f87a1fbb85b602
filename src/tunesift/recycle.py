"""Data recycling: Reflection-Tuning's oracle rewrites, and Selective Reflection's student-side choice.

Li et al., "Reflection-Tuning: Data Recycling Improves LLM Instruction-Tuning", 2023 (arXiv 2310.11716),
and "Selective Reflection-Tuning: Student-Selected Data Recycling", Findings of ACL 2024
(github.com/tianyi-lab/Reflection_Tuning).

An oracle model critiques and rewrites each example:
- response reflection: why the answer falls short (helpfulness, relevance, accuracy, level of
  detail), then a better answer in ``[Better Answer] ... [End]``;
- instruction reflection: why the instruction falls short (topic complexity, detail required,
  knowledge, ambiguity, reasoning), then a new, harder instruction in ``[New Instruction] ... [End]``
  and its answer in ``[New Answer] ... [End]``.
The prompts follow the official code's structure and criteria in tunesift's own words.  Extraction
is robust: the text after the last tag up to ``[End]``, the next tag, or the end; an answer with no
extractable part is asked again (``retries``, sampled) and then left unchanged and counted.

Plain Reflection-Tuning (V1) keeps every rewrite.  ``selective=True`` applies the released
``get_select_data.py`` rule with the student's IFD and r-IFD over the versions ori (x, y),
A (x, y'), Q (x', y_x') and QA (x', y_x' reflected again):
if IFD(Q) > IFD(ori) (the new instruction is harder): keep QA when r-IFD(QA) < r-IFD(Q), r-IFD(QA) < 1
and IFD(QA) < 1; otherwise keep A when r-IFD(A) < r-IFD(ori), r-IFD(A) < 1 and IFD(A) < 1; otherwise
(the code's branches that are commented out) nothing is kept.
Every changed field is recorded in the output's ``_provenance`` (the original text, which
reflection produced it, and the student's scores when selective).
The student scores ori and A with the record's instruction and input apart (the template's input slot,
as the released data keep them: ``reflect_response_postprocess.py`` copies ``input``), and Q and QA with
an empty input (``reflect_instruction_postprocess.py`` sets ``new_input = ''``).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from . import api
from .data.errors import TunesiftError
from .data.io import Dataset, from_records
from .data.example import question_text
from .data.formats import to_record
from .models.generate import generate

log = logging.getLogger("tunesift")

SYSTEM_RESPONSE = "You are a helpful, precise but picky assistant who checks the quality of an answer to an instruction."
SYSTEM_INSTRUCTION = "You are a helpful, precise but picky assistant who checks the quality of an instruction."

RESPONSE_PROMPT = """[Instruction]
{instruction}

[Answer]
{answer}

Critique the answer above. Explain why it is not good enough, judging its helpfulness, relevance, accuracy and \
level of detail. Then write a better answer to the same instruction, between the tags [Better Answer] and [End]."""

INSTRUCTION_PROMPT = """[Instruction]
{instruction}

[Answer]
{answer}

First explain why the instruction is not good enough, judging the complexity of its topic, the level of detail it \
requires, the knowledge it requires, its ambiguity, and the reasoning or problem solving it involves; then why the \
answer is not good enough (helpfulness, relevance, accuracy, level of detail); then how the weak instruction led \
to the weak answer. Next write a new, complete instruction that is more complex and demanding, related to the \
original but answerable on its own, between [New Instruction] and [End]. Finally answer the new instruction in \
detail between [New Answer] and [End]."""

TAGS = ("[Better Answer]", "[New Instruction]", "[New Answer]")


def extract(text: str, tag: str) -> str | None:
    """The text after the last ``tag`` up to [End], another tag, or the end; None if absent or empty."""
    pos = text.rfind(tag)
    if pos < 0:
        return None
    rest = text[pos + len(tag):]
    cut = len(rest)
    for stop in ("[End]",) + tuple(t for t in TAGS if t != tag):
        i = rest.find(stop)
        if i >= 0:
            cut = min(cut, i)
    out = rest[:cut].strip().strip(":").strip()
    return out or None


class Oracle:
    """Chat completions from a local causal LM (its chat template, greedy; sampled on retries) or any
    OpenAI-compatible server (``client``)."""

    def __init__(self, lm=None, client=None, max_new_tokens: int = 1024):
        if (lm is None) == (client is None):
            raise TunesiftError("an oracle is either a local model or an API client")
        self.lm, self.client, self.max_new_tokens = lm, client, max_new_tokens

    def chat(self, conversations: Sequence[list[dict]], attempt: int = 0, progress: bool = False) -> list[str]:
        if self.client is not None:
            kw: dict[str, Any] = dict(max_tokens=self.max_new_tokens, temperature=0.0 if attempt == 0 else 0.7)
            if attempt:
                kw["seed"] = attempt
            return [self.client.text(r) for r in self.client.chat(conversations, progress=progress, **kw)]
        tok = self.lm.tokenizer
        if getattr(tok, "chat_template", None):
            prompts = [tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in conversations]
            special = False
        else:
            prompts = ["\n\n".join(m["content"] for m in c) + "\n\n" for c in conversations]
            special = True
        return generate(self.lm, prompts, max_new_tokens=self.max_new_tokens, add_special_tokens=special,
                        progress=progress, temperature=0.0 if attempt == 0 else 0.7, seed=attempt)


@dataclass
class RecycleResult:
    records: list[dict]                       # the recycled dataset, in the input's format (+ _provenance)
    kept: np.ndarray                          # per input example: which version was kept
    counts: dict = field(default_factory=dict)
    raw: dict = field(default_factory=dict)   # oracle outputs per reflection (for inspection)


def _ask(oracle: Oracle, convs: list[list[dict]], tags: tuple[str, ...], retries: int, progress: bool):
    """Oracle answers with every tag extracted; failed extractions are asked again, then counted."""
    got: list[dict | None] = [None] * len(convs)
    raw = [""] * len(convs)
    todo = list(range(len(convs)))
    for attempt in range(retries + 1):
        if not todo:
            break
        outs = oracle.chat([convs[i] for i in todo], attempt=attempt, progress=progress)
        left = []
        for i, o in zip(todo, outs):
            raw[i] = o
            parts = {t: extract(o, t) for t in tags}
            if all(parts.values()):
                got[i] = parts
            else:
                left.append(i)
        todo = left
    return got, raw, len(todo)


def recycle(data: Dataset, oracle: Oracle, mode: str = "both", selective: bool = False, student: Any = None,
            retries: int = 2, progress: bool = False, student_options: dict | None = None) -> RecycleResult:
    """Rewrite ``data`` with the oracle's reflections; ``selective`` keeps what the student's IFD / r-IFD accept."""
    if mode not in ("response", "instruction", "both"):
        raise TunesiftError("mode must be response, instruction or both")
    if selective and mode != "both":
        raise TunesiftError("selective reflection compares every version: it needs mode=both")
    exs = data.examples
    instr = [question_text(e) for e in exs]
    counts: dict[str, int] = {"examples": len(exs)}
    raw: dict[str, list[str]] = {}

    def response_reflect(pairs: list[tuple[str, str]]):
        convs = [[{"role": "system", "content": SYSTEM_RESPONSE},
                  {"role": "user", "content": RESPONSE_PROMPT.format(instruction=q, answer=a)}] for q, a in pairs]
        return _ask(oracle, convs, ("[Better Answer]",), retries, progress)

    versions: dict[str, list[tuple[str, str] | None]] = {"ori": [(q, e.response) for q, e in zip(instr, exs)]}
    if mode in ("response", "both"):
        got, raw["response"], failed = response_reflect(versions["ori"])
        counts["response_failed"] = failed
        versions["A"] = [(q, g["[Better Answer]"]) if g else None for q, g in zip(instr, got)]
    if mode in ("instruction", "both"):
        convs = [[{"role": "system", "content": SYSTEM_INSTRUCTION},
                  {"role": "user", "content": INSTRUCTION_PROMPT.format(instruction=q, answer=e.response)}]
                 for q, e in zip(instr, exs)]
        got, raw["instruction"], failed = _ask(oracle, convs, ("[New Instruction]", "[New Answer]"), retries, progress)
        counts["instruction_failed"] = failed
        versions["Q"] = [(g["[New Instruction]"], g["[New Answer]"]) if g else None for g in got]
        if mode == "both":
            idx = [i for i, v in enumerate(versions["Q"]) if v is not None]
            g2, raw["instruction_then_response"], failed = response_reflect([versions["Q"][i] for i in idx])
            counts["qa_failed"] = failed
            versions["QA"] = [None] * len(exs)
            for j, i in enumerate(idx):
                if g2[j]:
                    versions["QA"][i] = (versions["Q"][i][0], g2[j]["[Better Answer]"])

    n = len(exs)
    scores: dict[str, np.ndarray] = {}
    if selective:
        split = [(e.instruction, e.input or "") if e.instruction is not None else (q, "") for q, e in zip(instr, exs)]
        scores = _student_scores(versions, student, student_options or {}, split)
        kept = selective_choice(versions, scores)
    else:   # V1: every rewrite, the most reflected version available
        order = [v for v in ("QA", "Q", "A") if v in versions]
        kept = np.array([next((v for v in order if versions[v][i] is not None), "ori") for i in range(n)], dtype=object)
    for v in ("QA", "A", "Q", "ori", "none"):
        counts[f"kept_{v}"] = int((kept == v).sum())

    records = []
    for i, e in enumerate(exs):
        v = kept[i]
        if v == "none":
            continue
        if v == "ori":
            rec = dict(e.raw) if isinstance(e.raw, dict) else {"raw": e.raw}
            rec["_provenance"] = {"version": "ori", "reason": "no reflection could be extracted"}
            records.append(rec)
            continue
        q, a = versions[v][i]
        rec = _rewrite(data.format, e, q if v in ("Q", "QA") else None, a)
        prov = {"version": v, "source_line": e.line, "source_id": e.id,
                "changed": {"response": {"original": e.response, "by": "response reflection" if v in ("A", "QA")
                                         else "instruction reflection"}}}
        if v in ("Q", "QA"):
            prov["changed"]["instruction"] = {"original": instr[i], "by": "instruction reflection"}
        if selective:
            prov["student"] = {k: float(s[i]) for k, s in scores.items() if np.isfinite(s[i])}
        rec["_provenance"] = prov
        records.append(rec)
    return RecycleResult(records, kept, counts, raw)


def selective_choice(versions: dict, scores: dict[str, np.ndarray]) -> np.ndarray:
    """The released decision rule (``get_select_data.py``) per example: "QA", "A" or "none"."""
    n = len(versions["ori"])
    kept = np.array(["none"] * n, dtype=object)
    for i in range(n):
        def ifd(v):
            return scores[f"ifd_{v}"][i]

        def rifd(v):
            return scores[f"rifd_{v}"][i]
        if versions["Q"][i] is not None and ifd("Q") > ifd("ori"):
            if versions["QA"][i] is not None and rifd("QA") < rifd("Q") and rifd("QA") < 1 and ifd("QA") < 1:
                kept[i] = "QA"
        elif versions["A"][i] is not None and rifd("A") < rifd("ori") and rifd("A") < 1 and ifd("A") < 1:
            kept[i] = "A"
    return kept


def _rewrite(fmt: str, e, instruction: str | None, response: str) -> dict:
    """The example in its own format with the response (and instruction) replaced, other fields kept."""
    raw = dict(e.raw) if isinstance(e.raw, dict) else {}
    if e.instruction is not None and fmt == "alpaca":
        out = dict(raw)
        key_out = next(k for k in ("output", "response") if k in raw) if any(k in raw for k in ("output", "response")) else "output"
        out[key_out] = response
        if instruction is not None:
            out["instruction"] = instruction
            if "input" in out:
                out["input"] = ""      # the new instruction is self-contained
        return out
    msgs = [dict(m) for m in e.messages]
    last_a = max(i for i, m in enumerate(msgs) if m["role"] == "assistant")
    msgs[last_a]["content"] = response
    if instruction is not None:
        last_u = max(i for i, m in enumerate(msgs[:last_a]) if m["role"] == "user")
        msgs[last_u]["content"] = instruction
    rec = to_record(fmt, msgs)
    for k, v in raw.items():      # keep the record's other fields (ids, metadata)
        rec.setdefault(k, v)
    return rec


def _student_scores(versions: dict, student, options: dict,
                    split: list[tuple[str, str]] | None = None) -> dict[str, np.ndarray]:
    """IFD and r-IFD of every version under the student model (the spine's rifd method).

    ``split``: per example, the record's (instruction, input), scored for ori and A in place of the
    joined question (their instruction is the record's); None scores every version's question as is."""
    if student is None:
        raise TunesiftError("selective reflection needs the student model")
    n = len(versions["ori"])
    out = {}
    for v, pairs in versions.items():
        idx = [i for i, p in enumerate(pairs) if p is not None]
        ifd, rifd = np.full(n, np.nan), np.full(n, np.nan)
        if idx:
            ins = {i: split[i] if split is not None and v in ("ori", "A") else (pairs[i][0], "") for i in idx}
            ds = from_records([{"instruction": ins[i][0], "input": ins[i][1], "output": pairs[i][1]} for i in idx],
                              name=f"versions-{v}")
            t = api.score(ds, "rifd", lm=student, progress=False, **options).table
            ifd[idx], rifd[idx] = t["ifd"].to_numpy(), t["rifd"].to_numpy()
        out[f"ifd_{v}"], out[f"rifd_{v}"] = ifd, rifd
    return out
