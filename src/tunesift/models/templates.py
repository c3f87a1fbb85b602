"""Prompt templates that turn an example into scored text.

A rendering is the text the model reads plus the character spans of the target (the response,
or every assistant turn).  The likelihood engine maps spans to tokens by the tokenizer's offsets,
so nothing is found by searching the text for the response string (the authors' ``rfind`` breaks
when the response text also occurs in the prompt).

Templates:
- ``alpaca``: the Stanford Alpaca prompt as Cherry LLM / Reflection-Tuning write it, ending in
  "### Response:" with no separator before the response.
- ``plain``: Superfiltering's "{instruction}\\n{input}\\n" followed directly by the response.
- ``vicuna``: the Vicuna v1.1 prompt of Reflection-Tuning's ``data_analysis.py`` (its default).
- ``chat``: the model tokenizer's own chat template.
Multi-turn examples: the paper templates are single-turn; tunesift renders earlier turns as earlier
blocks of the same template (an extension, documented as such).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data.errors import TunesiftError
from ..data.io import Example

ALPACA_INPUT = ("Below is an instruction that describes a task, paired with an input that provides further context. "
                "Write a response that appropriately completes the request.\n\n"
                "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:")
ALPACA_NO_INPUT = ("Below is an instruction that describes a task. "
                   "Write a response that appropriately completes the request.\n\n"
                   "### Instruction:\n{instruction}\n\n### Response:")
VICUNA_SYSTEM = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")
VICUNA_INPUT = VICUNA_SYSTEM + " USER: {instruction}\nInput:\n{input} ASSISTANT:"
VICUNA_NO_INPUT = VICUNA_SYSTEM + " USER: {instruction} ASSISTANT:"
RESPONSE_TAGS = {"alpaca": "### Response:", "vicuna": "ASSISTANT:", "plain": ""}
TEMPLATES = ("alpaca", "plain", "vicuna", "chat")


@dataclass(frozen=True, slots=True)   # one per example and pass: no per-instance __dict__
class Rendered:
    text: str
    spans: tuple[tuple[int, int], ...]
    # Chat templates write their own special tokens; the tokenizer must not add a second BOS.
    add_special_tokens: bool = True


def _turn_pairs(ex: Example) -> tuple[str | None, list[tuple[str, str, str]]]:
    """(system, [(instruction, input, response)]) with Alpaca's input split kept for the last turn."""
    system = next((m["content"] for m in ex.messages if m["role"] == "system"), None)
    msgs = [m for m in ex.messages if m["role"] != "system"]
    pairs: list[tuple[str, str, str]] = []
    pending: list[str] = []
    for m in msgs:
        if m["role"] == "user":
            pending.append(m["content"])
        else:
            pairs.append(("\n".join(pending), "", m["content"]))
            pending = []
    if ex.instruction is not None and pairs:   # Alpaca-family record: keep instruction and input apart
        pairs[-1] = (ex.instruction, ex.input or "", pairs[-1][2])
    return system, pairs


def _single(template: str, instruction: str, inp: str, system: str | None) -> str:
    if template == "alpaca":
        p = (ALPACA_INPUT if inp.strip() else ALPACA_NO_INPUT).format(instruction=instruction, input=inp)
        if system:   # a record's own system text replaces the Alpaca preamble
            p = system + "\n\n" + p.split("\n\n", 1)[1]
        return p
    if template == "vicuna":
        p = (VICUNA_INPUT if inp.strip() else VICUNA_NO_INPUT).format(instruction=instruction, input=inp)
        return (system + p[len(VICUNA_SYSTEM):]) if system else p
    if template == "plain":
        return f"{instruction}\n{inp}\n" if inp.strip() else f"{instruction}\n"
    raise TunesiftError(f"unknown template {template!r}; choose from {', '.join(TEMPLATES)}")


def render_conversation(ex: Example, template: str, tokenizer: Any = None, turns: str = "last") -> Rendered:
    """Render ``ex`` with its assistant turns as targets (the last one, or all)."""
    if turns not in ("last", "all"):
        raise TunesiftError("turns must be 'last' or 'all'")
    if template == "chat":
        return _render_chat(ex, tokenizer, turns)
    system, pairs = _turn_pairs(ex)
    text, spans = "", []
    for i, (ins, inp, resp) in enumerate(pairs):
        last = i == len(pairs) - 1
        if i > 0:
            text += "\n\n" if template != "plain" else ""
        text += _single(template, ins, inp, system if i == 0 else None) if i == 0 else _continuation(template, ins, inp)
        start = len(text)
        text += resp
        if last or turns == "all":
            spans.append((start, len(text)))
        if template == "plain" and not last:
            text += "\n"
    return Rendered(text, tuple(spans))


def _continuation(template: str, ins: str, inp: str) -> str:
    if template == "alpaca":
        return "### Instruction:\n" + ins + ("\n\n### Input:\n" + inp if inp.strip() else "") + "\n\n### Response:"
    if template == "vicuna":
        return " USER: " + ins + ("\nInput:\n" + inp if inp.strip() else "") + " ASSISTANT:"
    return _single("plain", ins, inp, None)


def _render_chat(ex: Example, tokenizer: Any, turns: str) -> Rendered:
    if tokenizer is None or not getattr(tokenizer, "chat_template", None):
        raise TunesiftError("template 'chat' needs a tokenizer with a chat template; "
                            "this model has none: use --template alpaca or plain")
    msgs = ex.messages
    targets = [i for i, m in enumerate(msgs) if m["role"] == "assistant"]
    if turns == "last":
        targets = targets[-1:]
    spans = []
    for i in targets:
        before = tokenizer.apply_chat_template(msgs[:i], tokenize=False, add_generation_prompt=True)
        after = tokenizer.apply_chat_template(msgs[:i + 1], tokenize=False)
        content = msgs[i]["content"]
        if not after.startswith(before):
            raise TunesiftError(f"example {ex.id}: the chat template does not render turns as prefixes of each "
                                "other, so the response span cannot be located; use --template alpaca")
        # The template may strip the content; locate it right after the generation prompt.
        offset = after.find(content.strip(), len(before))
        if offset < 0:
            raise TunesiftError(f"example {ex.id}: the chat template rewrote the response text; use --template alpaca")
        spans.append((offset, offset + len(content.strip())))
    text = tokenizer.apply_chat_template(msgs[:targets[-1] + 1], tokenize=False)
    return Rendered(text, tuple(spans), add_special_tokens=False)


def response_tag(template: str, tokenizer: Any = None) -> str:
    """Text placed before the response in the unconditioned ("direct") pass."""
    if template == "chat":
        probe = [{"role": "user", "content": "x"}]
        with_gen = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        without = tokenizer.apply_chat_template(probe, tokenize=False)
        return with_gen[len(without):] if with_gen.startswith(without) else ""
    return RESPONSE_TAGS[template]


def render_direct(text: str, tag: str = "", add_special_tokens: bool = True) -> Rendered:
    """The target alone (optionally after a tag such as "### Response:")."""
    return Rendered(tag + text, ((len(tag), len(tag) + len(text)),), add_special_tokens)


def render_responses_direct(ex: Example, tag: str, turns: str = "last") -> list[Rendered]:
    """One direct rendering per target assistant turn."""
    resp = [m["content"] for m in ex.messages if m["role"] == "assistant"]
    return [render_direct(r, tag) for r in (resp if turns == "all" else resp[-1:])]


def with_eos(r: Rendered, eos: str | None) -> Rendered:
    """The rendering with the EOS the fine-tune appends after the response, as one more target token
    (scored tokens = trained tokens).  Chat templates write their own end-of-turn: left as they are."""
    if not eos or not r.add_special_tokens or not r.spans:
        return r
    a, b = r.spans[-1]
    if b != len(r.text):
        return r
    return Rendered(r.text + eos, r.spans[:-1] + ((a, b + len(eos)),), r.add_special_tokens)
