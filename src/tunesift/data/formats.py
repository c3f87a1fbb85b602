"""Instruction-data formats: detect which one a record uses and normalise it to messages.

The canonical form of an example is a list of ``{"role", "content"}`` messages with roles
``system``/``user``/``assistant``.  Writing goes back through the untouched raw record, so the
selection keeps the input's own format and field order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from .errors import DataError

SHAREGPT_ROLES = {
    "human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
    "chatgpt": "assistant", "bard": "assistant", "bing": "assistant", "model": "assistant",
    "system": "system",
}
OPENAI_ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass(frozen=True)
class Normalised:
    messages: list[dict]
    # Alpaca's instruction and input, kept apart because the Alpaca and Superfiltering prompts place
    # them differently; None for formats that have no such split.
    instruction: str | None = None
    input: str | None = None


def _text(rec: dict, key: str, ctx: tuple, required: bool = True, allow_empty: bool = False) -> str:
    path, line = ctx
    if key not in rec or rec[key] is None:
        if required:
            raise DataError(path, line, key, "missing_field", f"required field '{key}' is missing")
        return ""
    val = rec[key]
    if not isinstance(val, str):
        raise DataError(path, line, key, "bad_type", f"expected a string, got {type(val).__name__}")
    if not allow_empty and required and not val.strip():
        reason = "empty_response" if key in RESPONSE_KEYS else "empty_field"
        raise DataError(path, line, key, reason, f"field '{key}' is empty")
    return val


RESPONSE_KEYS = {"output", "response", "completion", "answer", "chosen"}


def _alpaca(rec: dict, ctx) -> Normalised:
    instruction = _text(rec, "instruction", ctx)
    inp = _text(rec, "input", ctx, required=False)
    output = _text(rec, "output", ctx)
    msgs: list[dict] = []
    system = rec.get("system")
    if isinstance(system, str) and system.strip():
        msgs.append({"role": "system", "content": system})
    history = rec.get("history") or []
    if not isinstance(history, list):
        raise DataError(ctx[0], ctx[1], "history", "bad_type", "expected a list of [instruction, response] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, (list, tuple)) and len(pair) == 2 and all(isinstance(p, str) for p in pair)):
            raise DataError(ctx[0], ctx[1], f"history[{i}]", "bad_type", "expected [instruction, response]")
        msgs += [{"role": "user", "content": pair[0]}, {"role": "assistant", "content": pair[1]}]
    user = instruction + ("\n" + inp if inp.strip() else "")  # LLaMA-Factory joins them with "\n"
    msgs += [{"role": "user", "content": user}, {"role": "assistant", "content": output}]
    return Normalised(msgs, instruction, inp)


def _conversation(rec: dict, ctx, key: str, role_key: str, content_key: str, roles: dict) -> Normalised:
    path, line = ctx
    turns = rec.get(key)
    if not isinstance(turns, list) or not turns:
        reason = "missing_field" if turns is None else ("empty_conversation" if turns == [] else "bad_type")
        raise DataError(path, line, key, reason, f"'{key}' must be a non-empty list of turns")
    msgs: list[dict] = []
    last = None
    system = rec.get("system")
    if isinstance(system, str) and system.strip():
        msgs.append({"role": "system", "content": system})
    for i, t in enumerate(turns):
        if not isinstance(t, dict):
            raise DataError(path, line, f"{key}[{i}]", "bad_type", "each turn must be an object")
        role = roles.get(str(t.get(role_key, "")).lower())
        if role is None:
            raise DataError(path, line, f"{key}[{i}].{role_key}", "unknown_role",
                            f"unknown role {t.get(role_key)!r}")
        content = t.get(content_key)
        if not isinstance(content, str):
            raise DataError(path, line, f"{key}[{i}].{content_key}", "bad_type", "turn content must be a string")
        msgs.append({"role": role, "content": content})
        if role == "assistant":
            last = i
    if last is None:
        raise DataError(path, line, key, "missing_response", "the conversation has no assistant turn")
    if not turns[last][content_key].strip():
        raise DataError(path, line, f"{key}[{last}].{content_key}", "empty_response", "the last assistant turn is empty")
    return Normalised(msgs)


def _pair(prompt_key: str, response_key: str) -> Callable[[dict, tuple], Normalised]:
    def norm(rec: dict, ctx) -> Normalised:
        prompt = _text(rec, prompt_key, ctx)
        response = _text(rec, response_key, ctx)
        msgs = [{"role": "user", "content": prompt}, {"role": "assistant", "content": response}]
        return Normalised(msgs, prompt, "")
    return norm


@dataclass(frozen=True)
class Format:
    name: str
    keys: tuple[str, ...]          # all must be present for detection
    normalise: Callable[[dict, tuple], Normalised]
    description: str


FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("alpaca", ("instruction", "output"), _alpaca, "instruction / input / output (+ history, system)"),
    Format("sharegpt", ("conversations",),
           lambda r, c: _conversation(r, c, "conversations", "from", "value", SHAREGPT_ROLES),
           "conversations: [{from, value}] (human/gpt/system)"),
    Format("openai", ("messages",),
           lambda r, c: _conversation(r, c, "messages", "role", "content", OPENAI_ROLES),
           "messages: [{role, content}] (system/user/assistant)"),
    Format("prompt_response", ("prompt", "response"), _pair("prompt", "response"), "prompt / response"),
    Format("prompt_completion", ("prompt", "completion"), _pair("prompt", "completion"), "prompt / completion"),
    Format("question_answer", ("question", "answer"), _pair("question", "answer"), "question / answer (GSM8K)"),
]}


def detect_format(records: list[dict], path: str) -> Format:
    """The format whose keys most of the first records carry; an error when none fits."""
    votes: dict[str, int] = {}
    for rec in records:
        if not isinstance(rec, dict):
            continue
        for f in FORMATS.values():
            if all(k in rec for k in f.keys):
                votes[f.name] = votes.get(f.name, 0) + 1
                break
    if not votes:
        seen = sorted({k for r in records if isinstance(r, dict) for k in r})[:20]
        known = "; ".join(f"{f.name}: {', '.join(f.keys)}" for f in FORMATS.values())
        raise DataError(path, None, None, "unknown_format",
                        f"cannot tell the format: fields seen {seen}; known formats need ({known}). "
                        "Pass format= explicitly if the fields are there under other names.")
    return FORMATS[max(votes, key=lambda k: (votes[k], -list(FORMATS).index(k)))]


def to_record(fmt: str, messages: list[dict]) -> dict[str, Any]:
    """Build a new record in ``fmt`` from messages (used for converted output and tests)."""
    if fmt == "openai":
        return {"messages": [dict(m) for m in messages]}
    if fmt == "sharegpt":
        back = {"user": "human", "assistant": "gpt", "system": "system"}
        return {"conversations": [{"from": back[m["role"]], "value": m["content"]} for m in messages]}
    if fmt == "alpaca":
        sys = [m["content"] for m in messages if m["role"] == "system"]
        turns = [m for m in messages if m["role"] != "system"]
        pairs = [(turns[i]["content"], turns[i + 1]["content"]) for i in range(0, len(turns) - 1, 2)]
        rec: dict[str, Any] = {"instruction": pairs[-1][0], "input": "", "output": pairs[-1][1]}
        if sys:
            rec["system"] = sys[0]
        if len(pairs) > 1:
            rec["history"] = [list(p) for p in pairs[:-1]]
        return rec
    raise ValueError(f"cannot build records in format {fmt!r}")
