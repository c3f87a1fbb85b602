"""Rating judges: one interface, local and OpenAI-compatible back ends.

``RatingJudge.distribution(texts)`` returns, per text, the probabilities of the rating tokens
"1".."K" as the next token (normalised over the K ratings) and how much probability mass they held:
- ``local``: one forward pass of a local causal LM (the likelihood engine), no generation;
- ``api``: an OpenAI-compatible ``/completions`` call with ``max_tokens=1`` and ``logprobs`` (the
  server's top log-probabilities of the first token; ratings outside the returned top-k get 0).

``RatingJudge.generate_ratings(texts)`` asks for the rating as text instead (for back ends without
log-probabilities): the first digit 1..K of the answer is the rating; an answer with none is asked
again with sampling (``parse_retries`` times, each a distinct cached request), then left as NaN and
counted in ``unparsed`` -- never scored 0.

The rating vocabulary lives here too: ``RATING_PROMPTS`` (SelectIT's five rating lines) and
``rating_text`` (its rating prompt), shared by SelectIT, the pair judge and win-rate evaluations.

``rating_token_ids(tokenizer)`` gives the local back end its rating tokens: the bare digit tokens,
as SelectIT's code reads them (LLaMA-2's ids of "1".."5", not of a word-start "▁1").
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from ..data.errors import TunesiftError
from .generate import generate

RATING_PROMPTS = (
    "Rate from 1 to 5 how well the response below fulfils the instruction, judging accuracy and helpfulness. "
    "Answer with a single digit.",
    "On a scale of 1 (poor) to 5 (excellent), score the quality of the response to the instruction. "
    "Reply with one number.",
    "Judge whether the response follows the instruction correctly and completely. Give a score between 1 and 5.",
    "Considering relevance, correctness and clarity, how good is this response to the instruction? "
    "Score it 1, 2, 3, 4 or 5.",
    "You are grading an assistant. Read the instruction and its response, then output a grade from 1 (worst) "
    "to 5 (best).",
)


def rating_text(line: str, instruction: str, response: str) -> str:
    """SelectIT's rating prompt (``construction_rps``): the rating line, a blank line, ``Instruction:``,
    ``Response:``, then ``The answer is: `` on its own line."""
    # readlines() keeps the line's newline and the code adds another: a blank line follows the rating line
    return f"{line}\n\nInstruction:{instruction}\nResponse:{response}\nThe answer is: \n"


def rating_token_ids(tokenizer, labels: Sequence[str] = "12345") -> list[int]:
    """The id of each rating label as a bare token (no word-start marker): its own vocabulary entry,
    else the last piece of its encoding when that piece alone decodes to the label.  SentencePiece
    tokenizers (LLaMA-2, Mistral) encode "1" as "▁" + "1", yet after the rating prompt's closing
    newline the model emits the bare "1" -- the token SelectIT's code reads (its hard-coded 29896..)."""
    ids = []
    for lab in labels:
        t = tokenizer.convert_tokens_to_ids(lab)
        if t is None or t == tokenizer.unk_token_id:
            enc = tokenizer.encode(lab, add_special_tokens=False)
            if not enc or tokenizer.decode(enc[-1:]).strip() != lab:
                raise TunesiftError(f"the tokenizer has no token for the rating '{lab}' on its own")
            t = enc[-1]
        ids.append(int(t))
    if len(set(ids)) != len(ids):
        raise TunesiftError(f"the tokenizer maps the ratings {list(labels)} to repeated tokens {ids}")
    return ids


@dataclass
class JudgeResult:
    probs: np.ndarray | None            # [N, K] normalised over the ratings (distribution back ends)
    ratings: np.ndarray                 # [N] argmax rating, or the parsed rating; NaN where none
    mass: np.ndarray | None = None      # [N] probability mass on the rating tokens before normalising
    unparsed: int = 0
    retried: int = 0
    answers: list[str] = field(default_factory=list)


class RatingJudge:
    def __init__(self, backend: str = "local", lm=None, engine=None, client=None, k: int = 5,
                 top_logprobs: int = 20, parse_retries: int = 2, max_tokens: int = 8):
        if backend not in ("local", "api"):
            raise TunesiftError("judge backend must be 'local' or 'api'")
        if backend == "local" and (lm is None or engine is None):
            raise TunesiftError("the local judge needs a causal LM and its engine")
        if backend == "api" and client is None:
            raise TunesiftError("the api judge needs an OpenAIClient (base URL and model)")
        self.backend, self.lm, self.engine, self.client = backend, lm, engine, client
        self.k, self.top_logprobs = k, top_logprobs
        self.parse_retries, self.max_tokens = parse_retries, max_tokens
        self.labels = [str(i) for i in range(1, k + 1)]

    def distribution(self, texts: Sequence[str], progress: bool = False) -> JudgeResult:
        if self.backend == "local":
            lp, _ = self.engine.next_token_logprobs(list(texts), rating_token_ids(self.lm.tokenizer, self.labels))
            P = np.exp(lp)
        else:
            resps = self.client.complete(list(texts), max_tokens=1, temperature=0, logprobs=self.top_logprobs,
                                         progress=progress)
            P = np.zeros((len(texts), self.k))
            for i, r in enumerate(resps):
                lp = (r["choices"][0].get("logprobs") or {}).get("top_logprobs")
                if not lp:
                    raise TunesiftError(f"the server at {self.client.base_url} returned no logprobs; rating-token "
                                        "scoring needs them (use generate_ratings for text answers)")
                top = lp[0]
                for j, lab in enumerate(self.labels):
                    v = max((top[t] for t in top if t.strip() == lab), default=None)
                    P[i, j] = np.exp(v) if v is not None else 0.0
        mass = P.sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            Pn = P / mass[:, None]
        ratings = np.where(mass > 0, Pn.argmax(axis=1) + 1, np.nan)
        return JudgeResult(Pn, ratings.astype(float), mass, unparsed=int((mass == 0).sum()))

    def generate_ratings(self, texts: Sequence[str], progress: bool = False) -> JudgeResult:
        texts = list(texts)
        ratings = np.full(len(texts), np.nan)
        answers = [""] * len(texts)
        todo, retried = list(range(len(texts))), 0
        for attempt in range(self.parse_retries + 1):
            if not todo:
                break
            outs = self._answers([texts[i] for i in todo], attempt, progress)
            left = []
            for i, a in zip(todo, outs):
                answers[i] = a
                m = re.search(rf"[1-{self.k}]", a)
                if m:
                    ratings[i] = int(m.group())
                else:
                    left.append(i)
            if attempt:
                retried += len(todo)
            todo = left
        return JudgeResult(None, ratings, None, unparsed=len(todo), retried=retried, answers=answers)

    def _answers(self, texts: list[str], attempt: int, progress: bool) -> list[str]:
        if self.backend == "api":
            kw = dict(max_tokens=self.max_tokens, temperature=0 if attempt == 0 else 0.7)
            if attempt:
                kw["seed"] = attempt        # a distinct request, so the cache does not return the same answer
            return [self.client.text(r) for r in self.client.complete(texts, progress=progress, **kw)]
        return generate(self.lm, texts, max_new_tokens=self.max_tokens, progress=progress,
                        temperature=0.0 if attempt == 0 else 0.7, seed=attempt)
