"""Does the leaderboard's training recipe train?  Fine-tunes the bench's base model on a seeded random
10% of the leaderboard pool under several learning rates and epoch counts, and prints each model's
held-out reference NLL next to the untrained model's (docs/leaderboard.md, "The recipe").

    python benchmarks/recipe_sweep.py --pool POOL --eval-root EVAL [--json out.json]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np

from tunesift.bench import PRESETS
from tunesift.data import read_dataset
from tunesift.evaluate import sets
from tunesift.evaluate.tasks import response_nll
from tunesift.models.loading import load_causal_lm
from tunesift.train import TrainConfig, finetune


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pool", required=True)
    ap.add_argument("--eval-root", required=True)
    ap.add_argument("--lrs", default="1e-5,2e-5,5e-5,1e-4")
    ap.add_argument("--epochs", default="1,3")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    p = PRESETS["leaderboard"]
    pool = read_dataset(a.pool, on_error="skip")
    pool = pool.subset(sorted(np.random.default_rng(0).choice(len(pool), p["pool_sample"], replace=False).tolist()))
    k = int(len(pool) * 0.10)
    train = pool.subset(sorted(np.random.default_rng(0).choice(len(pool), k, replace=False).tolist()))
    evals = {"alpaca_eval_nll": sets.load_references(f"{a.eval_root}/alpaca_eval/alpaca_eval.json", 300),
             "lima_nll": sets.load_references(f"{a.eval_root}/../train/lima/lima_train.json", 300),
             "sinstruct_nll": sets.load_references(f"{a.eval_root}/instruct_test_sets/sinstruct_test_set.jsonl", 300)}
    base = load_causal_lm(p["base_model"], a.device, "float32")

    def score(lm) -> dict:
        return {n: round(response_nll(lm, d, "alpaca", batch_tokens=65536)["nll"], 4) for n, d in evals.items()}
    rows = [{"lr": None, "epochs": 0, "steps": 0, "train_s": 0.0, **score(base)}]
    print(rows[0], flush=True)
    preset = TrainConfig(**p["train"])
    for ep in [float(e) for e in a.epochs.split(",")]:
        for lr in [float(x) for x in a.lrs.split(",")]:
            cfg = dataclasses.replace(preset, learning_rate=lr, epochs=ep, template="alpaca", seed=0)
            t = time.perf_counter()
            tr = finetune(base, train, cfg, progress=False)
            rows.append({"lr": lr, "epochs": ep, "steps": len(tr.log), "train_s": round(time.perf_counter() - t, 1),
                         "loss_first": round(tr.log[0]["loss"], 3), "loss_last": round(tr.log[-1]["loss"], 3),
                         **score(tr.lm)})
            print(rows[-1], flush=True)
            del tr
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"pool": len(pool), "train": k, "preset_train": p["train"], "rows": rows}, fh, indent=1)


if __name__ == "__main__":
    main()
