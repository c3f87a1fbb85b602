"""AlpaGasus: an LLM grades each (instruction, input, response) from 0 to 5; keep grades >= 4.5.

Chen et al., "AlpaGasus: Training a Better Alpaca with Fewer Data", ICLR 2024 (arXiv 2307.08701).
Code: github.com/gpt4life/alpagasus (its README calls itself "the unofficial implementation", from
the authors' Hugging Face organisation; it says it uses the paper's prompt).  Read in
``rating/chatgpt_rating.py`` and ``rating/filter.py``:
- Chat request: the system prompt ``SYSTEM_PROMPT``; the user turn is the triplet
  "###Instruction:\\n{instruction}\\n\\n### Input:\\n{input}\\n\\n### Response:\\n{output}\\n\\n" followed
  by the rating request (``RATING_PROMPTS["accuracy"]``, the code's active prompt and the paper's;
  ``dimension=helpfulness`` is the one the code leaves commented out).  Character for character.
- Judge: gpt-3.5-turbo-0301, temperature 0, top_p 1, max_tokens 256.
- Parsing: the answer's first line as a float; else the text after "score:" (or "Score:") up to the
  line's end; else -1 (so dropped).  Keep score >= 4.5 (``filter.py -t 4.5``): the default budget.

Back ends (``backend``): ``api``, any OpenAI-compatible chat server (``api_base``, ``api_model``; key
from $OPENAI_API_KEY; answers cached on disk by the client), or ``local``, the run's causal LM
generating the answer greedily through its chat template (answers cached on disk by prompt and
model).  A local SmolLM2 is not ChatGPT: its grades follow the paper's prompt, not the paper's judge.
An answer with no score is asked again with sampling (``parse_retries`` times, each a distinct
request), then left without a score, ineligible, and counted -- never scored -1 or 0.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.fingerprint import fingerprint
from ..data.io import Dataset, Example
from ..models.loading import cache_root
from ..models.openai_client import OpenAIClient
from ..signals.generation import Generator
from .base import Context, Method, register
from .faithfulness import Divergence
from .params import Range

log = logging.getLogger("tunesift")

SYSTEM_PROMPT = ("We would like to request your feedback on the performance of AI assistant in response to the "
                 "instruction and the given input displayed following.")
TRIPLET = "###Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n{output}\n\n"
RATING_PROMPTS = {
    "accuracy": "Please rate according to the accuracy of the response to the instruction and the input. Each "
                "assistant receives a score on a scale of 0 to 5, where a higher score indicates higher level of the "
                "accuracy. Please first output a single line containing value indicating the scores. In the subsequent "
                "line, please provide a comprehensive explanation of your evaluation, avoiding any potential bias. \n\n",
    "helpfulness": "Please rate according to the helpfulness of the response to the instruction and the input. Each "
                   "assistant receives an score on a scale of 0 to 5, where a higher score indicates higher level of "
                   "the helpfulness. Please first output a single line containing value indicating the scores. In the "
                   "subsequent line, please provide a comprehensive explanation of your evaluation, avoiding any "
                   "potential bias. \n\n",
}
_NUMBER = r"\s*([-+]?\d+(?:\.\d+)?)"


@dataclass
class AlpaGasusConfig:
    backend: Literal["local", "api"] = "local"   # local: the run's model | api: an OpenAI-compatible chat server
    api_base: str | None = None       # e.g. http://127.0.0.1:8000/v1
    api_model: str | None = None      # the paper: gpt-3.5-turbo-0301
    dimension: Literal[tuple(RATING_PROMPTS)] = "accuracy"   # accuracy (paper, code) | helpfulness (the code's commented-out prompt)
    max_tokens: Annotated[int, Range(1)] = 16              # the code: 256; the grade is on the first line (greedy: same first tokens)
    parse_retries: Annotated[int, Range(0)] = 2

    def validate(self) -> None:
        if self.backend == "api" and not (self.api_base and self.api_model):
            raise TunesiftError("backend=api needs api_base and api_model")


def conversation(e: Example, dimension: str = "accuracy") -> list[dict]:
    ins, inp = (e.instruction, e.input or "") if e.instruction is not None else (e.prompt, "")
    user = TRIPLET.format(instruction=ins, input=inp, output=e.response) + RATING_PROMPTS[dimension]
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


def parse_score(review: str) -> float | None:
    """The code's order: the first line as a number, else the number after "score:", else after "Score:"."""
    try:
        return float(review.split("\n")[0])
    except ValueError:
        pass
    for tag in ("score:", "Score:"):
        if tag in review:
            m = re.match(_NUMBER, review.split(tag)[1])
            return float(m.group(1)) if m else None
    return None


class _AnswerCache:
    """One small JSON file per answered local prompt, keyed by model, prompt and decoding."""

    def __init__(self, root: Path | None):
        self.root = root

    def _file(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        if self.root is None:
            return None
        try:
            return json.loads(self._file(key).read_text())["answer"]
        except (OSError, ValueError, KeyError):
            return None

    def put(self, key: str, answer: str) -> None:
        if self.root is None:
            return
        f = self._file(key)
        f.parent.mkdir(parents=True, exist_ok=True)
        tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"answer": answer}))
        os.replace(tmp, f)


@register
class AlpaGasus(Method):
    name = "alpagasus"
    cost = "1 generated grade per example (local model or 1 API call), re-asked when unparsed"
    Config = AlpaGasusConfig
    paper = "AlpaGasus: Training a Better Alpaca with Fewer Data"
    venue = "ICLR 2024"
    code = "https://github.com/gpt4life/alpagasus"
    needs = ("judge",)
    summary = "An LLM grades (instruction, input, response) 0-5 with the paper's prompt; keep grades >= 4.5."
    default_budget = ">=4.5"
    faithfulness = (
        Divergence(topic="judge",
                   official="rating/chatgpt_rating.py:129: gpt-3.5-turbo-0301 through the OpenAI API",
                   paper="ChatGPT (and Claude) as the grader",
                   default="ours",
                   parameter="backend=api api_base=URL api_model=NAME (offline default: the run's model)"),
        Divergence(topic="answer length",
                   official="rating/chatgpt_rating.py:80: max_tokens 256 (grade on the first line, then an explanation)",
                   default="ours",
                   parameter="max_tokens=256 (greedy answers share their first tokens; only the grade is read)"),
        Divergence(topic="unparseable answers",
                   official="rating/filter.py:8-21: score -1 (dropped); a 'Score:' answer reads one character "
                            "after the tag ([0] on line 15) and raises on '4.5'",
                   default="ours",
                   parameter="parse_retries=0 (no re-asking); the number after 'Score:' is read whole; "
                             "no score: ineligible and counted"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        cfg = self.config
        convs = [conversation(e, cfg.dimension) for e in data.examples]
        scores = np.full(len(data), np.nan)
        answers = [""] * len(data)
        asked = np.zeros(len(data), dtype=int)
        todo = list(range(len(data)))
        ask = self._api(ctx) if cfg.backend == "api" else self._local(ctx)
        for attempt in range(cfg.parse_retries + 1):
            if not todo:
                break
            outs = ask([convs[i] for i in todo], attempt)
            left = []
            for i, a in zip(todo, outs):
                answers[i], asked[i] = a, attempt + 1
                s = parse_score(a)
                if s is None:
                    left.append(i)
                else:
                    scores[i] = s
            todo = left
        if todo:
            log.warning("alpagasus: %d of %d answers held no score after %d asks; they are ineligible",
                        len(todo), len(data), cfg.parse_retries + 1)
        ok = np.isfinite(scores)
        self.unparsed_ = len(todo)
        return pd.DataFrame({"score": scores, "eligible": ok,
                             "reason": np.where(ok, "", "no score in the judge's answer"),
                             "asks": asked, "answer": [a.split("\n")[0][:200] for a in answers]})

    def _api(self, ctx: Context):
        cfg = self.config
        client = OpenAIClient(cfg.api_base, cfg.api_model, cache_dir=ctx.cache_dir, use_cache=ctx.use_cache)

        def ask(convs: list[list[dict]], attempt: int) -> list[str]:
            kw = dict(temperature=0.0 if attempt == 0 else 0.7, top_p=1.0, max_tokens=cfg.max_tokens)
            if attempt:
                kw["seed"] = attempt     # a distinct request: the cache must not return the same answer
            return [client.text(r) for r in client.chat(convs, progress=ctx.progress, **kw)]
        return ask

    def _local(self, ctx: Context):
        cfg = self.config
        lm = ctx.causal_lm()
        tok = lm.tokenizer
        chat = getattr(tok, "chat_template", None) is not None
        cache = _AnswerCache(cache_root(ctx.cache_dir) / "alpagasus-local" if ctx.use_cache else None)

        def render(c: list[dict]) -> str:
            if chat:
                return tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True)
            return c[0]["content"] + "\n\n" + c[1]["content"]

        def ask(convs: list[list[dict]], attempt: int) -> list[str]:
            prompts = [render(c) for c in convs]
            keys = [fingerprint(lm.fingerprint, lm.dtype, p, cfg.max_tokens, attempt, length=64) for p in prompts]
            out = [cache.get(k) for k in keys]
            miss = [i for i, a in enumerate(out) if a is None]
            if miss:
                got = Generator(lm, ctx.runner(), max_new_tokens=cfg.max_tokens, add_special_tokens=not chat,
                                temperature=0.0 if attempt == 0 else 0.7,
                                seed=attempt)([prompts[i] for i in miss], progress=ctx.progress)
                for i, a in zip(miss, got):
                    out[i] = a
                    cache.put(keys[i], a)
            return out
        return ask
