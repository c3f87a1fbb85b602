"""Rating-token scoring (one forward pass) vs generating the rating, same model, same real examples.

    python benchmarks/judges.py                  # default model, 200 Alpaca examples, CPU
    python benchmarks/judges.py --n 50 --model PATH --device cuda --dtype bfloat16

Both read the same SelectIT rating prompt (tunesift's first rating line).  The rating-token path
takes the next-token distribution over "1".."5" from the batched likelihood engine; the generation
path greedily generates up to ``--new-tokens`` tokens in length-sorted batches and parses the first
digit 1-5 (unparseable answers are counted, not scored).  Agreement: how often the generated digit
equals the most probable rating token, and the Spearman correlation between the generated digit
and the expected rating sum_k k * P'_k.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "train" / "alpaca" / "alpagasus_random_9k.json"


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    import pandas as pd
    return float(pd.Series(a).rank().corr(pd.Series(b).rank()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=16, help="generation batch size")
    args = ap.parse_args()

    from tunesift.data import read_dataset
    from tunesift.evaluate import generate
    from tunesift.methods.selectit import RATING_PROMPTS, digit_ids, instruction_text, rating_text
    from tunesift.models import load_causal_lm
    from tunesift.signals import LikelihoodEngine

    ds = read_dataset(args.data, limit=args.n, on_error="skip")
    lm = load_causal_lm(args.model, args.device, args.dtype)
    texts = [rating_text(RATING_PROMPTS[0], instruction_text(e), e.response) for e in ds.examples]
    print(f"model {lm.name} ({lm.device}, {lm.dtype}); {len(texts)} examples from {args.data}")

    eng = LikelihoodEngine(lm, max_length=2048, use_cache=False, progress=False)
    t = time.perf_counter()
    lp, _ = eng.next_token_logprobs(texts, digit_ids(lm.tokenizer))
    tok_s = time.perf_counter() - t
    P = np.exp(lp)
    P /= P.sum(1, keepdims=True)
    top = P.argmax(1) + 1
    expected = (P * np.arange(1, 6)).sum(1)
    print(f"rating tokens: {len(texts)} examples in {tok_s:.1f}s = {len(texts) / tok_s:.2f} examples/s "
          f"(one forward pass each, batched); mass on '1'..'5': median {np.median(np.exp(lp).sum(1)):.3f}")

    t = time.perf_counter()
    outs = generate(lm, texts, max_new_tokens=args.new_tokens, batch_size=args.batch_size)
    gen_s = time.perf_counter() - t
    parsed = [re.search(r"[1-5]", o) for o in outs]
    ok = np.array([m is not None for m in parsed])
    gen = np.array([int(m.group()) if m else 0 for m in parsed])
    print(f"generation:    {len(texts)} examples in {gen_s:.1f}s = {len(texts) / gen_s:.2f} examples/s "
          f"(greedy, up to {args.new_tokens} new tokens, batches of {args.batch_size}); "
          f"unparseable: {int((~ok).sum())}")
    print(f"speed-up:      {gen_s / tok_s:.1f}x for the rating-token path")
    if ok.any():
        print(f"agreement:     generated digit == most probable rating token on {np.mean(gen[ok] == top[ok]):.1%} "
              f"of {int(ok.sum())} parseable; Spearman(generated, expected rating) = "
              f"{spearman(gen[ok], expected[ok]):.3f}")
    print("rating-token distribution of the argmax:", np.bincount(top, minlength=6)[1:].tolist(),
          "| generated:", np.bincount(gen[ok], minlength=6)[1:].tolist())


if __name__ == "__main__":
    main()
