"""DEITA scorers: EVOL complexity and quality scores from scorer LMs, and their product.

Liu, Zeng, He, Jiang, He, "What Makes Good Data for Alignment? A Comprehensive Study of Automatic
Data Selection in Instruction Tuning" (DEITA), ICLR 2024 (github.com/hkust-nlp/deita).

Read in ``src/deita/selection/scorer/{base,llama_scorer,mistral_scorer}.py`` and
``src/deita/pipeline/score_pipeline.py`` / ``selection/filter/combined_filter.py``:
- A scorer is a causal LM fine-tuned to answer a rating prompt with "1".."6".  Complexity reads the
  user query alone; quality reads the query and the response.  The prompts are the code's,
  character for character (``COMPLEXITY_PROMPT``, ``QUALITY_PROMPT`` below; note the two spaces
  after the query and the space before "##Quality").
- Score = sum_k k * softmax(logits of "1".."6")_k at the first generated position: the expected
  rating.  The code hard-codes the ids of the bare digit pieces of the LLaMA / Mistral vocabularies;
  tunesift looks them up in the scorer's vocabulary (``convert_tokens_to_ids("1")`` gives exactly
  29896.. for LLaMA and 28740.. for Mistral), so any tokenizer with single-token digits works.
- ShareGPT conversations are scored turn by turn (each user turn, and its reply for quality); the
  DEITA score of an example is sum over turns of complexity_t * quality_t (the combined filter's
  ``final_score``).  ``score_turns="last"`` scores only the last turn (the run's ``--turns`` is not
  used: DEITA's rule is over all turns).  ``score="complexity"`` / ``"quality"`` rank by the last
  turn's score alone.

The scorers DEITA released (hkust-nlp/deita-complexity-scorer, deita-quality-scorer) are 7B/13B
LLaMA fine-tunes: pass them with ``-p scorer=PATH`` (or ``complexity_scorer`` / ``quality_scorer``
separately).  Offline nothing like them is bundled, so the default scorer is the run's model (the
packaged SmolLM2-135M-Instruct unless ``--model``): an untrained rater whose scores follow DEITA's
formula but not DEITA's judgement.  Forward passes are batched by the likelihood engine (the code:
one ``generate`` call per prompt) and cached.

For DEITA's selection, feed the score to the score-first diversity filter:
``-m deita-filter -p score=deita-scorers`` (it scores with this method's defaults), or select with
this method and pass the written ``deita_score`` column on as a record field.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import pandas as pd

from ..data.errors import TunesiftError
from ..data.io import Dataset, Example
from ..models.loading import load_causal_lm
from ..signals import LikelihoodEngine
from .base import Context, Method, register
from .faithfulness import Divergence
from .params import Range

COMPLEXITY_PROMPT = ("You are a helpful assistant. Please identify the complexity score of the following user query. "
                     "\n##Query: {instruction}  \n##Complexity: ")
QUALITY_PROMPT = ("You are a helpful assistant. Please identify the quality score of the Response corresponding to "
                  "the Question. \n #Question#:\n{instruction}\n#Response#:\n{output} \n##Quality: ")
SCORE_LABELS = "123456"


@dataclass
class DeitaScorersConfig:
    scorer: str | None = None             # scorer LM path for both scores; None: the run's model
    complexity_scorer: str | None = None  # overrides ``scorer`` for the complexity score
    quality_scorer: str | None = None     # overrides ``scorer`` for the quality score
    score: Literal["deita", "complexity", "quality"] = "deita"   # deita: sum_t complexity_t * quality_t | complexity | quality
    score_turns: Literal["all", "last"] = "all"   # all: every (user, reply) turn, as the code | last
    max_length: Annotated[int, Range(16)] = 2048


def score_ids(tokenizer) -> list[int]:
    """Token ids of "1".."6" as a generated next token: the vocabulary's bare digit pieces."""
    ids = []
    for d in SCORE_LABELS:
        i = tokenizer.convert_tokens_to_ids(d)
        if i is None or i == tokenizer.unk_token_id:
            t = tokenizer.encode(d, add_special_tokens=False)
            if len(t) != 1:
                raise TunesiftError(f"deita-scorers: the scorer's vocabulary has no single token for '{d}'")
            i = t[0]
        ids.append(int(i))
    return ids


def expected_score(logprobs: np.ndarray) -> np.ndarray:
    """sum_k k * softmax over the six score tokens (full-softmax log-probs renormalised: the same)."""
    z = logprobs - logprobs.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    return p @ np.arange(1, len(SCORE_LABELS) + 1)


def turns_of(e: Example, which: str) -> list[tuple[str, str]]:
    """(user query, reply) per assistant turn, in order; the user text is "" when none precedes it."""
    pairs, user = [], ""
    for m in e.messages:
        if m["role"] == "user":
            user = m["content"]
        elif m["role"] == "assistant":
            pairs.append((user, m["content"]))
            user = ""
    return pairs[-1:] if which == "last" else pairs


@register
class DeitaScorers(Method):
    name = "deita-scorers"
    cost = "2 rating passes (complexity, quality) per turn"
    Config = DeitaScorersConfig
    paper = "What Makes Good Data for Alignment? (DEITA) - EVOL complexity and quality scorers"
    venue = "ICLR 2024"
    code = "https://github.com/hkust-nlp/deita"
    needs = ("causal_lm",)
    summary = "Expected 1-6 rating of complexity and quality from scorer LMs (DEITA's prompts); score = sum complexity x quality."
    faithfulness = (
        Divergence(topic="scorer model",
                   official="README / score_pipeline.py: hkust-nlp/deita-complexity-scorer and deita-quality-scorer "
                            "(LLaMA 13B / Mistral 7B fine-tunes)",
                   default="ours",
                   parameter="scorer=PATH (complexity_scorer=, quality_scorer=); offline default: the run's model"),
        Divergence(topic="score-token ids",
                   official="llama_scorer.py:9-16, mistral_scorer.py:9-16: ids hard-coded per vocabulary",
                   default="ours",
                   parameter="none: looked up as the vocabulary's pieces '1'..'6' (the same ids on those vocabularies)"),
        Divergence(topic="long prompts",
                   official="scorer/base.py:39: the whole prompt, no truncation",
                   default="ours",
                   parameter="max_length=N (prompts longer keep their last N tokens and are flagged truncated)"),
        Divergence(topic="logits read",
                   official="scorer/base.py:40-50: generate(max_new_tokens=2).scores[0], the logits after the "
                            "scorer's generation-config processors (the raw logits under greedy decoding)",
                   default="ours",
                   parameter="none: the raw next-token logits"),
    )

    def _engine(self, ctx: Context, path: str | None):
        if not path:
            return ctx.engine(self.config.max_length), ctx.causal_lm()
        engines = getattr(self, "engines_", {})
        if path not in engines:
            lm = load_causal_lm(path, ctx.device, ctx.dtype, ctx.trust_remote_code)
            engines[path] = (LikelihoodEngine(lm, max_length=ctx.max_length or self.config.max_length,
                                              batch_tokens=ctx.batch_tokens, cache_dir=ctx.cache_dir,
                                              use_cache=ctx.use_cache, progress=ctx.progress, **ctx.engine_options),
                             lm)
            self.engines_ = engines
        return engines[path]

    def _rate(self, ctx: Context, path: str | None, texts: list[str], desc: str) -> tuple[np.ndarray, np.ndarray]:
        if not texts:
            return np.zeros(0), np.zeros(0, bool)
        eng, lm = self._engine(ctx, path)
        lp, trunc = eng.next_token_logprobs(texts, score_ids(lm.tokenizer), desc=desc)
        return expected_score(lp), trunc

    def score(self, data: Dataset, ctx: Context) -> pd.DataFrame:
        cfg = self.config
        turns = [turns_of(e, cfg.score_turns) for e in data.examples]
        owner = np.repeat(np.arange(len(data)), [len(t) for t in turns])
        flat = [p for t in turns for p in t]
        cx, ct = self._rate(ctx, cfg.complexity_scorer or cfg.scorer,
                            [COMPLEXITY_PROMPT.format(instruction=q) for q, _ in flat], "deita complexity")
        qx, qt = self._rate(ctx, cfg.quality_scorer or cfg.scorer,
                            [QUALITY_PROMPT.format(instruction=q, output=a) for q, a in flat], "deita quality")
        n = len(data)
        deita = np.bincount(owner, weights=cx * qx, minlength=n)
        last = np.full(n, -1)
        last[owner] = np.arange(len(flat))     # later turns overwrite earlier ones
        has = last >= 0
        comp = np.where(has, cx[last] if len(flat) else np.nan, np.nan)
        qual = np.where(has, qx[last] if len(flat) else np.nan, np.nan)
        trunc = np.bincount(owner, weights=(ct | qt).astype(float), minlength=n) > 0
        score = {"deita": np.where(has, deita, np.nan), "complexity": comp, "quality": qual}[cfg.score]
        return pd.DataFrame({"score": score, "eligible": has,
                             "reason": np.where(has, "", "no assistant turn to score"),
                             "deita_score": np.where(has, deita, np.nan), "complexity": comp, "quality": qual,
                             "turns_scored": np.bincount(owner, minlength=n), "truncated": trunc})
