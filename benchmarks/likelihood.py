"""Engine vs a reference-style loop: same model, same real examples, same IFD scores.

The reference loop is what the authors' scripts do: one example at a time, two Hugging Face forward
passes with -100 labels (response | Alpaca prompt, and response after "### Response:"), the response
start found by tokenising the prefix, full-vocabulary logits at every position.

    python benchmarks/likelihood.py                      # CPU, fp32, default model, 500 Alpaca examples
    python benchmarks/likelihood.py --n 100 --skip-reference-after 50
    python benchmarks/likelihood.py --device cuda --dtype bfloat16 --random-init smollm2-135m --n 5000
    python benchmarks/likelihood.py --device cuda --dtype bfloat16 --random-init llama-1.7b --n 2000

``--random-init`` builds the model from a config with random weights (cost does not depend on the
weights), using the default model's tokenizer; on a GPU it also reports model FLOP/s against a
measured bf16 matmul peak.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "train" / "alpaca" / "alpagasus_random_9k.json"
CONFIGS = {  # name -> LlamaConfig kwargs (SmolLM2 family shapes)
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3, tie_word_embeddings=True),
    "llama-1.7b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=24, num_attention_heads=32,
                       num_key_value_heads=32, tie_word_embeddings=True),
}


def reference_ifd(lm, examples, max_length: int, time_budget: float | None):
    from tunesift.models.templates import render_conversation
    tok, model = lm.tokenizer, lm.model
    dev = next(model.parameters()).device

    def part_loss(text, start_char):
        ids = tok(text, return_tensors="pt", truncation=True, max_length=max_length).input_ids.to(dev)
        start = len(tok(text[:start_char]).input_ids)
        labels = ids.clone()
        labels[0, :start] = -100
        return model(input_ids=ids, labels=labels, use_cache=False).loss.float().item()

    out, t0 = [], time.perf_counter()
    with torch.no_grad():
        for e in examples:
            r = render_conversation(e, "alpaca")
            cond = part_loss(r.text, r.spans[0][0])
            direct = part_loss("### Response:" + e.response, len("### Response:"))
            out.append(cond / direct)
            if time_budget and time.perf_counter() - t0 > time_budget:
                break
    if dev.type == "cuda":
        torch.cuda.synchronize()
    return np.array(out), time.perf_counter() - t0


def matmul_peak(device, dtype) -> float:
    n = 8192
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * 20 / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--model", default=None)
    ap.add_argument("--random-init", choices=sorted(CONFIGS), default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-tokens", type=int, default=16384)
    ap.add_argument("--reference-seconds", type=float, default=None,
                    help="stop the (slow) reference loop after this many seconds; its rate is still exact; 0 skips it")
    ap.add_argument("--tokenizer", default=None,
                    help="with --random-init: a tokenizer folder (skips loading the default model's weights)")
    ap.add_argument("--share-prefix", choices=["on", "off"], default="on", help="the engine's preamble-KV reuse")
    ap.add_argument("--compile", default="off",
                    help="torch.compile the decoder body: off, on (inductor default) or an inductor mode "
                         "(e.g. max-autotune-no-cudagraphs); compile time falls in --warmup")
    ap.add_argument("--prepare-chunk", type=int, default=1024,
                    help="renderings in the engine's first tokenisation slice (later ones overlap scoring); "
                         "a number above the pass's size tokenises it whole before the first batch")
    ap.add_argument("--engine-runs", type=int, choices=[1, 2], default=2,
                    help="2: time the engine again after the reference loop and compare the loop with the mean "
                         "of the two, so a machine that speeds up or slows down during the run (shared CPUs "
                         "drift by 10-20%% here) does not tilt the ratio")
    ap.add_argument("--warmup", type=int, default=0, help="score this many examples first, untimed (GPU start-up)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()

    import tunesift
    from tunesift.data import read_dataset
    from tunesift.models import load_causal_lm, wrap_model

    ds = read_dataset(args.data, limit=args.n, on_error="skip")   # the 9k file has a few empty outputs
    if args.random_init:
        from transformers import LlamaConfig, LlamaForCausalLM
        if args.tokenizer:
            from transformers import AutoTokenizer
            tok = AutoTokenizer.from_pretrained(args.tokenizer)
        else:
            tok = load_causal_lm(args.model, device="cpu").tokenizer
        cfg = LlamaConfig(vocab_size=len(tok), max_position_embeddings=8192, **CONFIGS[args.random_init])
        torch.manual_seed(0)
        with torch.device(args.device):   # initialise on the device: a 1.7B CPU init takes minutes
            model = LlamaForCausalLM(cfg).to(dtype=getattr(torch, args.dtype)).eval()
        lm = wrap_model(model, tok, args.random_init)
    else:
        lm = load_causal_lm(args.model, device=args.device, dtype=args.dtype)
    params = sum(p.numel() for p in lm.model.parameters())
    print(f"model {lm.name}: {params / 1e6:.1f}M parameters, {args.device}, {args.dtype}; "
          f"{len(ds)} examples from {args.data}; torch threads {torch.get_num_threads()}")

    opts = dict(lm=lm, use_cache=False, progress=False, batch_tokens=args.batch_tokens, max_length=args.max_length,
                engine_options={"share_prefix": args.share_prefix == "on", "prepare_chunk": args.prepare_chunk,
                                "compile_body": {"off": False, "on": True}.get(args.compile, args.compile)})
    if args.warmup:
        tunesift.score(ds.subset(list(range(min(args.warmup, len(ds))))), "ifd", **opts)

    def timed_engine():
        t = time.perf_counter()
        r = tunesift.score(ds, "ifd", **opts)
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return r, time.perf_counter() - t

    res, eng_s = timed_engine()
    stats = res.context.engine_stats()[str(args.max_length)]
    eng_rate = len(ds) / eng_s
    print(f"engine:    {len(ds)} examples in {eng_s:.1f}s = {eng_rate:,.1f} examples/s "
          f"({stats['tokens']:,} tokens, padding {1 - stats['tokens'] / max(stats['padded_tokens'], 1):.1%}, "
          f"{stats['batches']} batches, tokenisation {stats['prepare_seconds']:.2f}s of which {stats['prepare_wait_seconds']:.2f}s not overlapped, shared-prefix reuse {next(iter(res.context.engines.values()))._prefix_ok})")
    figures = {"examples": len(ds), "engine_examples_per_s": eng_rate, "device": args.device, "dtype": args.dtype,
               "model": lm.name, "parameters": params, "compile": args.compile, "batch_tokens": args.batch_tokens,
               "prepare_chunk": args.prepare_chunk,
               "prepare_seconds": stats["prepare_seconds"], "prepare_wait_seconds": stats["prepare_wait_seconds"]}
    if args.device.startswith("cuda"):
        # forward matmul FLOPs: 2 per body parameter per token fed, the head only at scored positions
        emb = lm.model.get_input_embeddings().weight.numel()
        tied = lm.model.get_output_embeddings().weight is lm.model.get_input_embeddings().weight
        body = params - emb if tied else params - 2 * emb
        flops = 2 * body * stats["tokens"] + 2 * emb * stats["target_tokens"]
        peak = matmul_peak(args.device, getattr(torch, args.dtype))
        figures.update(model_tflops=flops / eng_s / 1e12, matmul_peak_tflops=peak / 1e12,
                       fraction_of_peak=flops / eng_s / peak)
        print(f"GPU: {flops / eng_s / 1e12:.1f} TFLOP/s model vs {peak / 1e12:.1f} TFLOP/s matmul peak "
              f"= {flops / eng_s / peak:.0%}")

    if args.reference_seconds == 0:
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
        return
    ref, ref_s = reference_ifd(lm, ds.examples, args.max_length, args.reference_seconds)
    k = len(ref)
    ref_rate = k / ref_s
    eng = res.table["ifd"].to_numpy()[:k]
    ok = ~res.table["truncated"].to_numpy()[:k]
    rel = np.abs(eng[ok] / ref[ok] - 1)
    print(f"reference: {k} examples in {ref_s:.1f}s = {ref_rate:,.1f} examples/s")
    if args.engine_runs == 2:
        again, eng_s2 = timed_engine()
        assert np.allclose(again.table["ifd"].to_numpy(), res.table["ifd"].to_numpy(), equal_nan=True)
        print(f"engine:    again after the reference, {eng_s2:.1f}s; mean of the two {(eng_s + eng_s2) / 2:.1f}s")
        eng_rate = 2 * len(ds) / (eng_s + eng_s2)
        figures.update(engine_seconds_runs=[eng_s, eng_s2], engine_examples_per_s=eng_rate)
    print(f"speed-up:  {eng_rate / ref_rate:.2f}x")
    print(f"agreement: max relative IFD difference {rel.max():.2e} over {ok.sum()} untruncated examples "
          f"(median {np.median(rel):.1e})")
    figures.update(reference_examples=k, reference_examples_per_s=ref_rate, speedup=eng_rate / ref_rate,
                   max_rel_diff=float(rel.max()))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    sys.exit(0 if rel.max() < 1e-4 or args.dtype != "float32" else 1)


if __name__ == "__main__":
    main()
