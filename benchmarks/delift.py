"""DELIFT's cost: forward passes and seconds of the utility kernel, full (n + n^2 passes) and with the
k-nearest-neighbour restriction (n + n(K+1) passes), on real Alpaca examples.

    python benchmarks/delift.py                       # n = 20, 40; K = 4; the default model on CPU
    python benchmarks/delift.py --n 8 16 --neighbors 3

Each (i, j) one-shot prompt is its own sequence (example j's text sits before query i), so there is
no shared prefix to reuse: the full kernel's time grows as n^2.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from tunesift.data import read_dataset  # noqa: E402
from tunesift.methods.base import Context  # noqa: E402
from tunesift.methods.delift import Delift  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared/data/train/alpaca/alpagasus_random_9k.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--n", type=int, nargs="+", default=[20, 40])
    ap.add_argument("--neighbors", type=int, default=4)
    ap.add_argument("--model", default=None, help="causal LM path (default: the packaged default model)")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    ctx = Context(model=args.model, device=args.device, dtype="float32", use_cache=False, progress=False)
    ctx.causal_lm()
    print(f"{'n':>4} {'neighbors':>9} {'passes':>7} {'seconds':>8} {'passes/s':>8}")
    for n in args.n:
        ds = read_dataset(args.data, limit=n)
        for k in (0, args.neighbors):
            m = Delift(neighbors=k)
            t0 = time.perf_counter()
            m.score(ds, ctx)
            dt = time.perf_counter() - t0
            p = m.stats_["passes"]
            print(f"{n:>4} {k or 'all':>9} {p:>7} {dt:>8.1f} {p / dt:>8.1f}", flush=True)


if __name__ == "__main__":
    main()
