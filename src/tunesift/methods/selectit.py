"""SelectIT: selective instruction tuning by the model's own uncertainty about its rating.

Liu et al., "SelectIT: Selective Instruction Tuning for LLMs via Uncertainty-Aware Self-Reflection",
NeurIPS 2024 (github.com/Blue-Raincoat/SelectIT, ``self_reflection/``).

The base model reads a rating prompt and the probabilities P_1..P_5 of the next tokens "1".."5" are
taken from one forward pass (nothing is generated; tunesift batches these passes in the likelihood
engine, the official code runs one example per pass).  The rating tokens are the bare digits, as the
code's hard-coded LLaMA-2 ids (``models.judge.rating_token_ids``), so SentencePiece tokenizers work.
- Token level: P' = softmax(P / sum(P)) -- the official code's second softmax, in all three of its
  scripts (token, sentence and model level); ``normalization="paper"`` takes P' = P / sum(P).
  S_base = argmax P' (1..5); S_token = S_base * sum_i (P'_base - P'_i) / (K - 1).
- Sentence level, over ``k`` rating prompts: S_sent = mean(S_token) / (1 + alpha * std(S_token)), std
  the population std as in the code.
- Model level, over models of different sizes: S = sum_n w_n S_sent^(n), w_n the paper's parameter
  shares (``model_weights="official_code"``: the code's 7/20, 13/20, 70/90 for its three models).
Selection: the top 20% by S.

The prompt layout is the official code's: the rating line, a blank line, ``Instruction:`` + the
instruction, ``Response:`` + the response, then ``The answer is: `` on its own line.  The rating
lines are tunesift's own paraphrases of the task; ``prompts_file`` takes any others (one per line),
e.g. the authors' ``data/rating_prompt.txt``.  A prompt over ``max_length`` tokens loses its middle
(the first quarter and the last three quarters of its tokens are kept, and it is flagged
``truncated``): the rating instruction and the answer cue survive, the example's content is cut; the
official code never truncates.  The ``faithfulness`` rows list every divergence.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset
from ..models.judge import RatingJudge, rating_token_ids
from ..models.loading import load_causal_lm
from ..models.openai_client import OpenAIClient
from ..signals import LikelihoodEngine
from ._judging import RATING_PROMPTS, question_text, rating_text
from .base import Context, Method, register
from .faithfulness import Divergence
from .params import Aliases, Positive

OFFICIAL_MODEL_WEIGHTS = (7 / 20, 13 / 20, 70 / 90)


@dataclass
class SelectITConfig:
    k: Positive = 5                        # rating prompts per example (sentence level)
    alpha: float = 0.2
    normalization: Annotated[Literal["official", "paper"], Aliases(token_level_code="official")] = "official"  # official (the code's second softmax) | paper (P / sum P)
    models: str = ""                  # extra models (comma-separated paths) for the model level
    model_weights: Literal["paper", "official_code"] = "paper"   # paper (parameter shares) | official_code (7/20, 13/20, 70/90)
    prompts_file: str | None = None
    max_length: int = 2048
    backend: Literal["local", "api"] = "local"   # local: the run's model(s); api: an OpenAI-compatible server's logprobs
    api_base: str | None = None       # e.g. http://127.0.0.1:8000/v1 (key from $OPENAI_API_KEY)
    api_model: str | None = None
    top_logprobs: int = 20

    def validate(self) -> None:
        if self.backend == "api" and not (self.api_base and self.api_model):
            raise TunesiftError("backend=api needs api_base and api_model")


def rating_prompts(cfg: SelectITConfig) -> list[str]:
    lines = RATING_PROMPTS if cfg.prompts_file is None else tuple(
        ln.rstrip("\n") for ln in Path(cfg.prompts_file).read_text(encoding="utf-8").splitlines() if ln.strip())
    if len(lines) < cfg.k:
        raise TunesiftError(f"selectit: k={cfg.k} rating prompts asked for, {len(lines)} available")
    return list(lines[:cfg.k])


def token_scores(logprobs: np.ndarray, normalization: str = "official") -> np.ndarray:
    """S_token per row of log-probabilities of the ratings 1..K."""
    P = np.exp(logprobs)
    Pn = P / P.sum(axis=1, keepdims=True)
    if normalization in ("official", "token_level_code"):
        e = np.exp(Pn)
        Pn = e / e.sum(axis=1, keepdims=True)
    K = Pn.shape[1]
    base = Pn.argmax(axis=1)
    conf = (Pn[np.arange(len(Pn)), base][:, None] - Pn).sum(axis=1) / (K - 1)
    return (base + 1) * conf


def sentence_scores(tok: np.ndarray, alpha: float) -> np.ndarray:
    """tok: [N, k] token-level scores over the k prompts."""
    return tok.mean(axis=1) / (1 + alpha * tok.std(axis=1))


def instruction_text(e) -> str:
    # the code reads conversations[0].value: the whole user turn (instruction and input together)
    return question_text(e)


@register
class SelectIT(Method):
    name = "selectit"
    cost = "k rating passes (5 prompts) per example and model"
    Config = SelectITConfig
    paper = "SelectIT: Selective Instruction Tuning via Uncertainty-Aware Self-Reflection"
    venue = "NeurIPS 2024"
    code = "https://github.com/Blue-Raincoat/SelectIT"
    needs = ("causal_lm",)
    summary = "Rating-token uncertainty (one forward pass, no generation) over prompts and model sizes; top 20%."
    default_budget = "20%"
    faithfulness = (
        Divergence(topic="rating normalisation",
                   official="self_reflection/sentence_level.py:83-86 (token_level.py:82-84, model_level.py:66-69): "
                            "P / sum(P), then exp and renormalise (a second softmax)",
                   paper="P' = P / sum(P)", default="official", parameter="normalization=paper"),
        Divergence(topic="model-level weights",
                   official="self_reflection/model_level.py:115-117: 7/20, 13/20, 70/90 for exactly three models, "
                            "smallest first",
                   paper="parameter shares theta_n / sum(theta) (7/90, 13/90, 70/90)", default="paper",
                   parameter="model_weights=official_code (three models only; the code's weights look like a typo)"),
        Divergence(topic="confidence sum when k != 5",
                   official="self_reflection/sentence_level.py:96-98: sums over the first k ratings and divides by "
                            "k - 1, k being the number of prompts (the rating count only at k=5)",
                   paper="K = 5 rating classes", default="paper", parameter="k=5 (the code's default) agrees"),
        Divergence(topic="long prompts",
                   official="self_reflection/sentence_level.py:62-65: the whole prompt, never truncated; an exception "
                            "in the forward is printed and the example dropped (lines 76-77), shifting later indices",
                   default="ours",
                   parameter="max_length=N: a longer prompt keeps its first N/4 and last 3N/4 tokens (rating "
                             "instruction and answer cue kept), flagged truncated"),
        Divergence(topic="rating prompts",
                   official="data/rating_prompt.txt, read at self_reflection/sentence_level.py:14 (first k lines); "
                            "token_level.py:13 picks one line at random",
                   default="ours",
                   parameter="prompts_file=<the authors' data/rating_prompt.txt> (k=1 takes its first line)"),
        Divergence(topic="ties",
                   official="self_reflection/sentence_level.py:108: sorted by (score, index) descending: ties go to "
                            "the higher index",
                   default="ours", parameter="none (tunesift's top-k breaks ties to the lower index)"),
    )

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        cfg = self.config
        lines = rating_prompts(cfg)
        texts = [rating_text(ln, instruction_text(e), e.response) for e in data.examples for ln in lines]
        if cfg.backend == "api":
            return self._score_api(data, ctx, texts, len(lines))
        lms = [ctx.causal_lm()] + [load_causal_lm(m.strip(), ctx.device, ctx.dtype, ctx.trust_remote_code)
                                   for m in cfg.models.split(",") if m.strip()]
        sent, sizes, trunc = [], [], np.zeros(len(data), dtype=bool)
        for j, lm in enumerate(lms):
            eng = ctx.engine(cfg.max_length) if j == 0 else LikelihoodEngine(
                lm, max_length=ctx.max_length or cfg.max_length, batch_tokens=ctx.batch_tokens,
                cache_dir=ctx.cache_dir, use_cache=ctx.use_cache, progress=ctx.progress)
            lp, tr = eng.next_token_logprobs(texts, rating_token_ids(lm.tokenizer), desc=f"selectit rating ({lm.name})")
            tok = token_scores(lp, cfg.normalization).reshape(len(data), len(lines))
            sent.append(sentence_scores(tok, cfg.alpha))
            # sizes weigh several models; one model needs none (and a scale-out driver need not load it)
            sizes.append(sum(p.numel() for p in lm.model.parameters()) if len(lms) > 1 else 1)
            trunc |= tr.reshape(len(data), len(lines)).any(axis=1)
        w = self.weights(sizes)
        table = pd.DataFrame({"score": sum(wi * s for wi, s in zip(w, sent)), "eligible": True,
                              "reason": ""})
        for j, s in enumerate(sent):
            table[f"sentence_score_m{j}"] = s
        table["truncated"] = trunc
        return table

    def _score_api(self, data: Dataset, ctx: Context, texts: list[str], k: int) -> pd.DataFrame:
        cfg = self.config
        client = OpenAIClient(cfg.api_base, cfg.api_model, cache_dir=ctx.cache_dir, use_cache=ctx.use_cache)
        res = RatingJudge("api", client=client, top_logprobs=cfg.top_logprobs).distribution(texts, ctx.progress)
        with np.errstate(divide="ignore"):
            tok = token_scores(np.log(res.probs), cfg.normalization).reshape(len(data), k)
        missing = (res.mass == 0).reshape(len(data), k).any(axis=1)
        sent = sentence_scores(tok, cfg.alpha)
        return pd.DataFrame({"score": np.where(missing, np.nan, sent), "eligible": ~missing,
                             "reason": np.where(missing, "no rating token in the server's top logprobs", ""),
                             "sentence_score_m0": sent})

    def weights(self, sizes: list[int]) -> list[float]:
        if len(sizes) == 1:
            return [1.0]
        if self.config.model_weights == "official_code":
            if len(sizes) != 3:
                raise TunesiftError("model_weights=official_code is defined for exactly three models")
            order = np.argsort(sizes)       # the code's weights go smallest to largest
            w = [0.0] * 3
            for rank, j in enumerate(order):
                w[j] = OFFICIAL_MODEL_WEIGHTS[rank]
            return w
        return [s / sum(sizes) for s in sizes]
