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
    # The model a method scores with where it is not the scoring model (Superfiltering's small proxy)
    method_models: dict[str, str] = field(default_factory=dict)
    # Target-set methods (needs "target_set": LESS, BIDS, G2IS, RDS+, RECOST) get a few-shot slice of
    # one evaluation's references, "EVAL:K" (K drawn with seed 0), held out of that evaluation.
    target: str | None = None
    gen_batch_size: int = 16            # prompts per generation batch in evaluations
    cache_dir: str | None = None        # the methods' score cache; None: <output>/score-cache
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


# Every method that runs on an unlabelled single-response Alpaca pool with offline models (left out:
# grape needs several candidate responses, mig label tags, rose a preference set, recost a knowledge
# corpus, mods and reward-score a reward model; alpagasus, iterselecttune and instruction-mining
# rate with a generating judge, which a 270M base model is not).
LEADERBOARD_METHODS = ["ifd", "ifd-pre", "superfiltering", "superfiltering-d", "rifd", "perplexity", "selectit",
                       "deita-scorers", "deita-filter", "kcenter", "cluster", "dpp", "qdit", "less", "bids", "g2is",
                       "rds", "delift", "learning-percentage", "diverseevol", "lead"]
# DEITA's pipeline ranks by its own scorers' score; spelled out (not left to the method's default)
# so that the cells' keys say which score the filter ranked by.
DEITA = {"deita-filter": {"score": "deita-scorers"}}
SMALL_PROXY = {"superfiltering": "smollm2-135m-instruct", "superfiltering-d": "smollm2-135m-instruct"}

PRESETS: dict[str, dict[str, Any]] = {
    # Sized for a 2-core CPU in under an hour (measured: see docs/bench.md).
    "small-cpu": dict(pool_limit=1000, budget="5%", seeds=3, full_seeds=1, evals=["alpaca_eval_nll:100", "mmlu:100"],
                      train=dict(epochs=1, batch_size=8, micro_batch_tokens=1024, max_length=512)),
    # One H100: the whole pool, the likelihood and multiple-choice suites, GSM8K on a slice.
    # The leaderboard (docs/leaderboard.md): Gemma 3 270M base, fully fine-tuned on a 10% selection of
    # a seeded 2,000-example Alpaca sample, 3 seeds; reference-answer NLL on five held-out sets and
    # IFEval.  Recipe checked first (docs/leaderboard.md: the full-pool and random models' NLL against
    # the base model's).  IFEval (generation, the costliest evaluation) is measured on the references
    # first (docs/leaderboard.md: "Which evaluations carry signal") and left out where it carries none.
    "leaderboard": dict(pool_sample=2000, budget="10%", seeds=3, full_seeds=1, base_model="gemma3-270m",
                        methods=LEADERBOARD_METHODS, method_models=SMALL_PROXY, method_params=DEITA, target="alpaca_eval_nll:20",
                        evals=["alpaca_eval_nll:300", "vicuna_nll", "mt_bench_nll", "sinstruct_nll:300", "lima_nll:300"],
                        gen_batch_size=160,
                        # the Alpaca recipe (full, 3 epochs, lr 2e-5, cosine), 16 examples a step for a 200-example
                        # selection; benchmarks/recipe_sweep.py measures it against other rates and epochs
                        train=dict(method="full", epochs=3, learning_rate=2e-5, batch_size=16, lr_schedule="cosine",
                                   max_length=1024)),
    # The leaderboard shrunk to what a 2-core CPU runs in a few sessions (the pool first, as the issue
    # asks, then the evaluation sizes; seeds and methods kept): 400 examples, 40 selected, 8 a step.
    # Cells under docs/leaderboard/cpu/ are committed as they finish, so later sessions resume.
    "leaderboard-cpu": dict(pool_sample=400, budget="10%", seeds=3, full_seeds=1, base_model="gemma3-270m",
                            methods=LEADERBOARD_METHODS, method_models=SMALL_PROXY, method_params=DEITA, target="alpaca_eval_nll:10",
                            # LIMA's references (lima_nll:60) were measured on the first 19 cells and dropped: every
                            # trained model, random and full pool alike, scores them worse than the base model
                            # (docs/leaderboard.md), and they were a third of each cell's time
                            evals=["alpaca_eval_nll:100", "sinstruct_nll:60"],
                            train=dict(method="full", epochs=3, learning_rate=2e-5, batch_size=8, lr_schedule="cosine",
                                       max_length=512)),
    # The same protocol on the whole 47k Alpaca pool (pass the reconstruction as the pool), for a GPU;
    # run it at -b 5% and -b 10% into two folders.
    # DELIFT's whole kernel over 47k examples is 2.2e9 conditional passes: here each example is scored
    # against its 16 nearest neighbours only (neighbors=K, ours, named in the cell key and the report).
    "gpu": dict(budget="5%", seeds=3, full_seeds=1, base_model="gemma3-270m", methods=LEADERBOARD_METHODS,
                method_models=SMALL_PROXY, method_params={**DEITA, "delift": {"neighbors": 16}}, target="alpaca_eval_nll:20", gen_batch_size=128,
                evals=["alpaca_eval_nll", "vicuna_nll", "mt_bench_nll", "sinstruct_nll", "lima_nll", "ifeval_loose"],
                train=dict(method="full", epochs=3, learning_rate=2e-5, batch_size=64, lr_schedule="cosine",
                           max_length=2048)),
    "gpu-h100": dict(budget="5%", seeds=3, evals=["alpaca_eval_nll", "mt_bench_nll", "mmlu", "bbh", "gsm8k:500"],
                     train=dict(epochs=3, batch_size=64, micro_batch_tokens=16384, max_length=2048)),
}
