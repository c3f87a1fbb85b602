"""What the likelihood engine returns: per-rendering NLL sums and counts, and the engine's counters."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class NLLResult:
    sum_nll: np.ndarray      # float64, summed over scored target tokens
    n_tokens: np.ndarray     # int, target tokens scored
    n_target: np.ndarray     # int, target tokens before truncation
    truncated: np.ndarray    # bool, some target tokens fell beyond max_length

    @property
    def mean_nll(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.n_tokens > 0, self.sum_nll / np.maximum(self.n_tokens, 1), np.nan)

    @property
    def ppl(self) -> np.ndarray:
        return np.exp(self.mean_nll)

    def grouped(self, groups: np.ndarray, n: int) -> "NLLResult":
        """Sum several renderings per example (e.g. one per assistant turn)."""
        return NLLResult(np.bincount(groups, self.sum_nll, n), np.bincount(groups, self.n_tokens, n).astype(int),
                         np.bincount(groups, self.n_target, n).astype(int),
                         np.bincount(groups, self.truncated.astype(int), n) > 0)


@dataclass
class EngineStats:
    requests: int = 0
    cached: int = 0
    computed: int = 0
    batches: int = 0
    tokens: int = 0          # tokens fed to the model (padding excluded)
    padded_tokens: int = 0   # tokens fed including padding
    target_tokens: int = 0   # positions the LM head scored
    seconds: float = 0.0
    prepare_seconds: float = 0.0   # host side: tokenisation and target location, in all
    prepare_wait_seconds: float = 0.0   # the part of it that scoring waited for (not overlapped)
    other_slice: int = 0     # requests left to other --shard slices
