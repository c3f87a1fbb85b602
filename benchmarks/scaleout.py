"""Scale-out: what Ray costs, and how much memory the driver needs.

speed   The same IFD run (two likelihood passes) over the same real Alpaca examples with the default
        model: the in-process engine with N threads against N single-thread Ray workers on a local
        cluster (loopback).  Prints both wall times, the ratio (in-process / Ray: >= 0.9 means Ray
        costs under 10%) with and without the workers' start-up, and the largest score difference.
memory  A pool of short synthetic examples scored by a tiny model built from a config, through 2 Ray
        workers; prints the driver's peak RSS (the workers' memory is theirs).

    python benchmarks/scaleout.py speed  --n 500 --workers 2             # CPU
    python benchmarks/scaleout.py speed  --n 2000 --workers 1 --device cuda   # one GPU worker vs in-process
    python benchmarks/scaleout.py memory --n 1000000
"""
from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "train" / "alpaca" / "alpagasus_random_9k.json"


def speed(args) -> None:
    import torch

    import tunesift
    from tunesift.data import read_dataset
    from tunesift.signals.distributed import RayRunner

    ds = read_dataset(args.data, limit=args.n)
    kw = dict(model=args.model, device=args.device, dtype=args.dtype, progress=False, use_cache=False,
              max_length=args.max_length)
    if args.device == "cpu":
        torch.set_num_threads(args.workers)
    t = time.perf_counter()
    local = tunesift.score(ds, "ifd", **kw)
    t_local = time.perf_counter() - t
    print(f"in process ({args.device}, {torch.get_num_threads()} threads): {len(ds)} examples in {t_local:.1f}s")

    t = time.perf_counter()
    runner = RayRunner(workers=args.workers, device=args.device, threads=1 if args.device == "cpu" else None)
    try:
        first = tunesift.score(ds, "ifd", runner=runner, **kw)
        t_first = time.perf_counter() - t
        t = time.perf_counter()
        warm = tunesift.score(ds, "ifd", runner=runner, **kw)     # the workers hold the model already
        t_warm = time.perf_counter() - t
    finally:
        runner.close()
    diff = max(float(np.nanmax(np.abs(r.table["ifd"].to_numpy() - local.table["ifd"].to_numpy())))
               for r in (first, warm))
    print(f"ray, {args.workers} worker(s) x {1 if args.device == 'cpu' else 'one GPU'}: "
          f"{t_first:.1f}s including start-up and model loads, {t_warm:.1f}s warm")
    print(f"ratio (in-process / ray): {t_local / t_first:.3f} cold, {t_local / t_warm:.3f} warm")
    print(f"max |IFD difference|: {diff:.2e}; same selection order: "
          f"{np.array_equal(np.argsort(-first.table['score'].fillna(-1).to_numpy(), kind='stable'), np.argsort(-local.table['score'].fillna(-1).to_numpy(), kind='stable'))}")


def memory(args) -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    import tunesift

    tmp = Path(tempfile.mkdtemp(prefix="tunesift-scaleout-"))
    words = ["alpha", "river", "stone", "cloud", "green", "seven", "north", "light", "quick", "table"]
    tk = Tokenizer(models.BPE())
    tk.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    preamble = ("Below is an instruction that describes a task. Write a response that appropriately completes "
                "the request.\n\n### Instruction:\n\n\n### Response:")   # the Alpaca prompt, so it packs
    tk.train_from_iterator([" ".join(words), preamble] * 50, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=tk, pad_token="<pad>", bos_token="<s>", eos_token="</s>")
    torch.manual_seed(0)
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=256,
                                         bos_token_id=1, eos_token_id=2, pad_token_id=0))
    (tmp / "model").mkdir()
    model.save_pretrained(tmp / "model")
    tok.save_pretrained(tmp / "model")
    rng = np.random.default_rng(0)
    path = tmp / "pool.jsonl"
    with open(path, "w") as f:
        for i in range(args.n):
            w = rng.choice(words, 6)
            f.write(json.dumps({"instruction": f"{w[0]} {w[1]} {i}", "input": "", "output": f"{w[2]} {w[3]} {w[4]} {w[5]}"}) + "\n")
    print(f"{args.n:,} examples written to {path} ({path.stat().st_size / 1e6:.0f} MB)")
    t = time.perf_counter()
    res = tunesift.score(path, "perplexity", model=str(tmp / "model"), device="cpu", progress=False, workers=2,
                         threads_per_worker=1, cache_dir=str(tmp / "cache"), max_length=128)
    assert res.table["eligible"].all(), res.summary
    wall = time.perf_counter() - t
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 / 1024
    st = next(iter(res.context.engine_stats().values()))
    print(f"scored {len(res.table):,} examples through 2 Ray workers in {wall:.0f}s "
          f"({st['computed']:,} computed, {st['batches']:,} batches)")
    print(f"driver peak RSS: {rss:.2f} GB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("part", choices=["speed", "memory"])
    ap.add_argument("--data", default=str(DATA))
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--max-length", type=int, default=512)
    args = ap.parse_args()
    if args.part == "speed":
        args.n = args.n or 500
        speed(args)
    else:
        args.n = args.n or 1_000_000
        memory(args)


if __name__ == "__main__":
    main()
