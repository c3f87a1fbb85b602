"""How much of the engine's host work (tokenisation, target location) overlaps a busy device.

A GPU runs a batch while the host prepares the next; this script measures the host side on a machine
without one.  The model's forward pass is replaced by a stand-in device: tiny torch ops, one per
kernel a model would launch (each eager op drops and retakes the GIL, so the tokenising thread
contends with them as with a real launch loop), then a wait with the GIL released, proportional to
the batch's tokens plus a fixed cost per batch.  It measures only what the engine does around the
model: it is not a speed figure for any model.  It runs the real tokenizer on real data,
once with every rendering tokenised before the first batch (``prepare_chunk`` larger than the pass)
and once sliced (the default), alternating so that the machine's drift falls on both.

    python benchmarks/host_overlap.py                      # conditioned IFD pass, 9k Alpaca examples
    python benchmarks/host_overlap.py --tokens-per-s 400000 --batch-seconds 0.005
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "train" / "alpaca" / "alpagasus_random_9k.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--n", type=int, default=None, help="examples (default: all)")
    ap.add_argument("--tokens-per-s", type=float, default=200_000, help="the stand-in device's speed")
    ap.add_argument("--batch-seconds", type=float, default=0.01, help="its fixed cost per batch")
    ap.add_argument("--ops-per-batch", type=int, default=900, help="ops queued per batch (135M: ~900 kernels)")
    ap.add_argument("--batch-tokens", type=int, default=131072)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    import torch

    from tunesift.data import read_dataset
    from tunesift.models import load_causal_lm
    from tunesift.models.templates import render_conversation
    from tunesift.signals import LikelihoodEngine

    ds = read_dataset(args.data, limit=args.n, on_error="skip")
    lm = load_causal_lm(None, device="cpu")
    reqs = [render_conversation(e, "alpaca", lm.tokenizer, "last") for e in ds.examples]
    print(f"{len(reqs)} renderings; stand-in device {args.tokens_per_s:,.0f} tokens/s + {args.batch_seconds}s per batch")

    def run(chunk: int) -> float:
        eng = LikelihoodEngine(lm, max_length=1024, batch_tokens=args.batch_tokens, use_cache=False,
                               progress=False, prepare_chunk=chunk, share_prefix=False)
        busy = [0.0]

        a = torch.zeros(8)

        def device(items):
            # queue the batch: one tiny op per kernel a model launches (each takes and drops the GIL,
            # as eager PyTorch ops do), then wait for the device with the GIL released
            for _ in range(args.ops_per_batch):
                torch.add(a, 1.0)
            d = args.batch_seconds + sum(len(p.ids) for p in items) / args.tokens_per_s
            busy[0] += d
            time.sleep(d)
            return torch.zeros(len(items), dtype=torch.float64)

        eng._forward = device
        t = time.perf_counter()
        eng.nll(reqs)
        wall, s = time.perf_counter() - t, eng.stats
        print(f"  {'sliced' if chunk < len(reqs) else 'whole '}: {wall:.2f}s (device {busy[0]:.2f}s, tokenisation "
              f"{s.prepare_seconds:.2f}s of which {s.prepare_wait_seconds:.2f}s waited for; {s.batches} batches)")
        return wall

    whole, sliced = [], []
    for _ in range(args.repeats):
        whole.append(run(10 ** 9))
        sliced.append(run(1024))
    w, s = statistics.median(whole), statistics.median(sliced)
    print(f"median: whole {w:.2f}s, sliced {s:.2f}s ({w / s:.2f}x)")


if __name__ == "__main__":
    main()
