"""Evaluation: held-out response likelihood, multiple choice by log-likelihood, generation tasks."""
from .sets import GenItem, MCItem, load_bbh, load_gsm8k, load_mmlu, load_references
from .tasks import EVALS, generate, gsm8k, multiple_choice, parse_eval, response_nll, run_eval

__all__ = ["GenItem", "MCItem", "load_bbh", "load_gsm8k", "load_mmlu", "load_references", "EVALS", "generate",
           "gsm8k", "multiple_choice", "parse_eval", "response_nll", "run_eval"]
