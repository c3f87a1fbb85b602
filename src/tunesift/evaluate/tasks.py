"""Evaluations of a (fine-tuned) model, each returning ``{metric: value}`` plus counts.

Likelihood evaluations run through the batched ``LikelihoodEngine`` (the same code that scores
data), so they are as fast as scoring; generation runs batched ``generate`` with left padding.

Named evaluations (``EVALS``) take a spec ``name[:limit][=path]``; without a path the file is
looked up under an evaluation root laid out like ``shared/data/eval``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..data.errors import TunesiftError
from ..data.example import Dataset, question_text
from ..data.readers import from_records
from ..methods._judging import PairJudge
from ..methods.base import Context
from ..models.generate import generate, prompts_of  # noqa: F401  (re-exported: generation lives in models)
from ..models.loading import LoadedLM
from ..models.templates import Rendered, render_conversation
from ..signals import LikelihoodEngine
from . import sets
from .ifeval import load_ifeval, score_responses


def _engine(lm: LoadedLM, max_length: int, batch_tokens: int, progress: bool):
    # No score cache: a trained model is evaluated once, and its results go to the bench's cell cache.
    return LikelihoodEngine(lm, max_length=max_length, batch_tokens=batch_tokens, use_cache=False, progress=progress)


def response_nll(lm: LoadedLM, data: Dataset, template: str = "alpaca", max_length: int = 1024,
                 batch_tokens: int = 16384, progress: bool = False) -> dict:
    """Mean NLL of reference answers given their prompts: token-weighted (log-perplexity) and per example."""
    reqs = [render_conversation(e, template, lm.tokenizer) for e in data.examples]
    res = _engine(lm, max_length, batch_tokens, progress).nll(reqs, desc="eval nll")
    ok = res.n_tokens > 0
    return {"nll": float(res.sum_nll[ok].sum() / res.n_tokens[ok].sum()),
            "nll_per_example": float(np.nanmean(res.mean_nll[ok])), "n": int(ok.sum()),
            "truncated": int(res.truncated.sum())}


def multiple_choice(lm: LoadedLM, items: list[sets.MCItem], max_length: int = 2048, batch_tokens: int = 16384,
                    progress: bool = False) -> dict:
    """Accuracy by the log-likelihood of each option after the prompt: ``acc`` (summed log-prob)
    and ``acc_norm`` (per token), as lm-evaluation-harness reports them."""
    eng = _engine(lm, max_length, batch_tokens, progress)
    single = _single_token_options(lm, items)
    if single is not None:
        # Every option is one token after its prompt (MMLU's " A".." D", BBH's letters in most
        # tokenizers): one forward per question reads all options' log-probs at once (a k-fold saving).
        return _mc_single_token(eng, items, single)
    reqs = [Rendered(it.prompt + o, ((len(it.prompt), len(it.prompt) + len(o)),)) for it in items for o in it.options]
    res = eng.nll(reqs, desc="eval choices")
    correct = correct_norm = 0
    by_group: dict[str, list[int]] = {}
    k = 0
    for it in items:
        n = len(it.options)
        s, t = res.sum_nll[k:k + n], np.maximum(res.n_tokens[k:k + n], 1)
        k += n
        hit = int(np.argmin(s) == it.answer)
        correct += hit
        correct_norm += int(np.argmin(s / t) == it.answer)
        by_group.setdefault(it.group, []).append(hit)
    n = max(len(items), 1)
    return {"acc": correct / n, "acc_norm": correct_norm / n, "n": len(items),
            "acc_macro": float(np.mean([np.mean(v) for v in by_group.values()])) if by_group else 0.0,
            "truncated": int(res.truncated.sum())}


def _single_token_options(lm: LoadedLM, items: list[sets.MCItem]) -> list[list[int]] | None:
    tok = lm.tokenizer
    out = []
    for it in items:
        base = tok(it.prompt).input_ids
        ids = []
        for o in it.options:
            full = tok(it.prompt + o).input_ids
            if len(full) != len(base) + 1 or full[:len(base)] != base:
                return None
            ids.append(full[-1])
        out.append(ids)
    return out


def _mc_single_token(eng, items: list[sets.MCItem], option_ids: list[list[int]]) -> dict:
    # group by the option set so each group is one next_token_logprobs call
    groups: dict[tuple, list[int]] = {}
    for q, ids in enumerate(option_ids):
        groups.setdefault(tuple(ids), []).append(q)
    correct = 0
    by_group: dict[str, list[int]] = {}
    truncated = 0
    for ids, qs in groups.items():
        lp, tr = eng.next_token_logprobs([items[q].prompt for q in qs], list(ids), desc="eval choices")
        truncated += int(tr.sum())
        for row, q in zip(lp, qs):
            hit = int(np.argmax(row) == items[q].answer)
            correct += hit
            by_group.setdefault(items[q].group, []).append(hit)
    n = max(len(items), 1)
    return {"acc": correct / n, "acc_norm": correct / n, "n": len(items),
            "acc_macro": float(np.mean([np.mean(v) for v in by_group.values()])) if by_group else 0.0,
            "truncated": truncated}


def gsm8k(lm: LoadedLM, items: list[sets.GenItem], template: str = "alpaca", max_new_tokens: int = 256,
          batch_size: int = 16, progress: bool = False) -> dict:
    """Exact match of the last number in the greedy answer against the reference after '####'."""
    ds = from_records([{"instruction": it.prompt, "input": "", "output": "x"} for it in items], name="gsm8k")
    prompts, special = prompts_of(ds, template, lm.tokenizer)
    answers = generate(lm, prompts, max_new_tokens, batch_size, progress, add_special_tokens=special)
    hits = [sets._number(a) == it.answer for a, it in zip(answers, items)]
    return {"exact_match": float(np.mean(hits)) if hits else 0.0, "n": len(items)}


def ifeval(lm: LoadedLM, rows: list[dict], template: str = "alpaca", max_new_tokens: int = 512,
           batch_size: int = 16, progress: bool = False) -> dict:
    """IFEval: generate a response per prompt (greedy), then run the verifiable-instruction checkers."""
    ds = from_records([{"instruction": r["prompt"], "input": "", "output": "x"} for r in rows], name="ifeval")
    prompts, special = prompts_of(ds, template, lm.tokenizer)
    answers = generate(lm, prompts, max_new_tokens, batch_size, progress, add_special_tokens=special)
    out = score_responses(rows, answers)
    out.pop("by_type")
    return out


def winrate(lm: LoadedLM, data: Dataset, judge: "WinrateJudge", template: str = "alpaca", max_new_tokens: int = 256,
            batch_size: int = 16, progress: bool = False) -> dict:
    """Win rate of the model's greedy answers against the dataset's reference answers (AlpacaEval's
    setting: the reference outputs are the reference model's), judged pointwise: the judge scores both
    answers to the same question; win 1, tie 0.5, loss 0."""
    prompts, special = prompts_of(data, template, lm.tokenizer)
    answers = generate(lm, prompts, max_new_tokens, batch_size, progress, add_special_tokens=special)
    qs = [question_text(e) for e in data.examples]
    mine = judge(qs, answers)
    ref = judge(qs, [e.response for e in data.examples])
    wins, ties = int((mine > ref).sum()), int((mine == ref).sum())
    n = max(len(qs), 1)
    return {"win_rate": (wins + 0.5 * ties) / n, "wins": wins, "ties": ties, "losses": len(qs) - wins - ties,
            "n": len(qs), "judge": judge.name}


@dataclass
class WinrateJudge:
    """The judge of win-rate evaluations: a reward model (``reward_model``) or an LM reading a rating
    prompt (``model``; None = the packaged default model). Never the model being evaluated."""
    reward_model: str | None = None
    model: str | None = None
    device: str = "auto"
    cache_dir: str | None = None

    @property
    def name(self) -> str:
        return f"reward:{self.reward_model}" if self.reward_model else f"rating:{self.model or 'default'}"

    def __call__(self, questions: list[str], answers: list[str]) -> np.ndarray:
        if not hasattr(self, "_ctx"):
            self._ctx = Context(model=self.model, device=self.device, cache_dir=self.cache_dir, progress=False)
            self._judge = PairJudge(self.reward_model)
        return self._judge(self._ctx, list(questions), list(answers))


# ---------------------------------------------------------------- named evaluations
@dataclass
class EvalSpec:
    name: str
    limit: int | None
    path: Path
    exclude: frozenset[int] = frozenset()   # positions in the file held out (a bench's target-set slice)


@dataclass(frozen=True)
class EvalDef:
    default_path: str             # relative to the evaluation root
    metric: str                   # the headline metric
    higher_is_better: bool
    run: Callable[..., dict]


def _ifeval_rows(spec: EvalSpec) -> list[dict]:
    return load_ifeval(spec.path, spec.limit)


def _nll_eval(spec: EvalSpec, lm: LoadedLM, template: str, progress: bool, **_) -> dict:
    return response_nll(lm, sets.load_references(spec.path, spec.limit, spec.exclude), template=template,
                        progress=progress)


def _ifeval(spec: EvalSpec, lm: LoadedLM, template: str, progress: bool, batch_size: int = 16, **_) -> dict:
    return ifeval(lm, _ifeval_rows(spec), template=template, batch_size=batch_size, progress=progress)


def _winrate(spec: EvalSpec, lm: LoadedLM, template: str, progress: bool, judge=None, batch_size: int = 16,
             **_) -> dict:
    return winrate(lm, sets.load_references(spec.path, spec.limit, spec.exclude), judge or WinrateJudge(), template,
                   batch_size=batch_size, progress=progress)


EVALS: dict[str, EvalDef] = {
    "alpaca_eval_nll": EvalDef("alpaca_eval/alpaca_eval.json", "nll", False, _nll_eval),
    "mt_bench_nll": EvalDef("mt_bench", "nll", False, _nll_eval),
    "vicuna_nll": EvalDef("vicuna_bench", "nll", False, _nll_eval),
    # Self-Instruct's 252 user-oriented tasks, one reference per instance (the others in
    # instruct_test_sets/, Koala, LIMA test, Vicuna, WizardLM, carry no reference answers)
    "sinstruct_nll": EvalDef("instruct_test_sets/sinstruct_test_set.jsonl", "nll", False, _nll_eval),
    # LIMA's 1,030 curated answers (its train split: held out from any Alpaca pool)
    "lima_nll": EvalDef("../train/lima/lima_train.json", "nll", False, _nll_eval),
    "alpaca_eval_winrate": EvalDef("alpaca_eval/alpaca_eval.json", "win_rate", True, _winrate),
    "vicuna_winrate": EvalDef("vicuna_bench", "win_rate", True, _winrate),
    "mmlu": EvalDef("mmlu", "acc", True,
                    lambda s, lm, t, p, **_: multiple_choice(lm, sets.load_mmlu(s.path, limit=s.limit), progress=p)),
    "mmlu_text": EvalDef("mmlu", "acc_norm", True,
                         lambda s, lm, t, p, **_: multiple_choice(lm, sets.load_mmlu(s.path, limit=s.limit, style="text"),
                                                                  progress=p)),
    "bbh": EvalDef("bbh", "acc", True,
                   lambda s, lm, t, p, **_: multiple_choice(lm, sets.load_bbh(s.path, limit=s.limit), progress=p)),
    "ifeval": EvalDef("ifeval/input_data.jsonl", "prompt_strict", True, _ifeval),
    "ifeval_loose": EvalDef("ifeval/input_data.jsonl", "prompt_loose", True, _ifeval),
    "gsm8k": EvalDef("gsm8k/test.jsonl", "exact_match", True,
                     lambda s, lm, t, p, batch_size=16, **_: gsm8k(lm, sets.load_gsm8k(s.path, limit=s.limit), template=t,
                                                                   batch_size=batch_size, progress=p)),
}


def parse_eval(spec: str, root: str | Path | None) -> EvalSpec:
    """``name[:limit][=path]``, e.g. ``mmlu:500`` or ``heldout_nll=data/heldout.jsonl``."""
    head, _, path = spec.partition("=")
    name, _, lim = head.partition(":")
    name = name.strip()
    limit = int(lim) if lim else None
    if name not in EVALS and not (name.endswith("_nll") and path):
        raise TunesiftError(f"unknown evaluation {name!r}; known: {', '.join(sorted(EVALS))}, "
                            "or NAME_nll=PATH for reference answers in any dataset file")
    if path:
        p = Path(path)
    else:
        if root is None:
            raise TunesiftError(f"evaluation {name!r}: give its file ({name}=PATH) or an evaluation root (--eval-root)")
        p = Path(root) / EVALS[name].default_path
    if not p.exists():
        raise TunesiftError(f"evaluation {name!r}: {p} does not exist")
    return EvalSpec(name, limit, p)


def run_eval(spec: EvalSpec, lm: LoadedLM, template: str = "alpaca", progress: bool = False,
             judge: WinrateJudge | None = None, batch_size: int = 16) -> dict:
    """``batch_size``: prompts per generation batch (generation evaluations only)."""
    d = EVALS.get(spec.name) or EvalDef("", "nll", False, _nll_eval)
    t = time.perf_counter()
    out = d.run(spec, lm, template, progress, judge=judge, batch_size=batch_size)
    out["seconds"] = time.perf_counter() - t
    return out


def headline(name: str) -> tuple[str, bool]:
    d = EVALS.get(name)
    return (d.metric, d.higher_is_better) if d else ("nll", False)
