"""What a bench runs: its configuration and the named presets."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..train import TrainConfig

RANDOM, FULL, BASE = "random", "full", "base"


@dataclass
class BenchConfig:
    methods: list[str]
    evals: list[str]
    budget: str = "5%"
    seeds: int = 3
    base_model: str | None = None       # None: the offline default model
    score_model: str | None = None      # the model the selection methods use; None: the base model
    eval_root: str | None = None
    include_random: bool = True
    include_full: bool = True
    include_base: bool = True
    full_seeds: int | None = None       # the full-pool reference is the costliest cell: fewer seeds allowed
    template: str = "alpaca"            # training and evaluation prompt
    judge_reward_model: str | None = None   # win-rate judge: a reward model, or
    judge_model: str | None = None          # an LM reading a rating prompt (None: the packaged default)
    device: str = "auto"
    dtype: str = "auto"
    method_params: dict[str, dict] = field(default_factory=dict)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Cells in parallel as Ray tasks, one device each (a GPU, or threads_per_worker CPUs); 0 = in
    # process, one after another.  Where cells run never changes what they compute: not in the cell key.
    workers: int = 0
    ray_address: str | None = None      # None: a Ray cluster started on this machine
    threads_per_worker: int | None = None

    def methods_all(self) -> list[str]:
        ms = list(dict.fromkeys(self.methods))
        if self.include_random and RANDOM not in ms:
            ms.append(RANDOM)
        return ms


PRESETS: dict[str, dict[str, Any]] = {
    # Sized for a 2-core CPU in under an hour (measured: see docs/bench.md).
    "small-cpu": dict(pool_limit=1000, budget="5%", seeds=3, full_seeds=1, evals=["alpaca_eval_nll:100", "mmlu:100"],
                      train=dict(epochs=1, batch_size=8, micro_batch_tokens=1024, max_length=512)),
    # One H100: the whole pool, the likelihood and multiple-choice suites, GSM8K on a slice.
    "gpu-h100": dict(budget="5%", seeds=3, evals=["alpaca_eval_nll", "mt_bench_nll", "mmlu", "bbh", "gsm8k:500"],
                     train=dict(epochs=3, batch_size=64, micro_batch_tokens=16384, max_length=2048)),
}
