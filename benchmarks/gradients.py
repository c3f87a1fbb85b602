"""Per-example LoRA gradients: tunesift's batched features vs the authors' loop (LESS's ``get_info``).

The reference loop is what LESS's code does: one example at a time, a Hugging Face forward with -100
labels outside the response, one backward, the LoRA weights' ``.grad`` read and flattened.  Both run
on the same model (the default model with LoRA adapters on q/k/v/o, adapter weights random so that
every gradient is non-zero) and the same real Alpaca examples, and must agree; the script prints
examples/s for each and the ratio.  Projection is timed apart (LESS projects every 16 examples).

    python benchmarks/gradients.py                       # CPU, default model, LoRA r 8, 64 examples
    python benchmarks/gradients.py --n 200 --lora-r 128 --device cuda
"""
from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "train" / "alpaca" / "alpagasus_random_9k.json"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--max-length", type=int, default=512)
    ap.add_argument("--batch-tokens", type=int, default=1024)
    ap.add_argument("--proj-dim", type=int, default=8192)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    from peft import LoraConfig, get_peft_model

    from tunesift.data import read_dataset
    from tunesift.models import load_causal_lm
    from tunesift.models.loading import LoadedLM
    from tunesift.models.templates import render_conversation
    from tunesift.signals.gradients import RademacherProjector, gradient_features, trainable_linears

    ds = read_dataset(args.data, limit=args.n, on_error="skip")
    base = load_causal_lm(None, device=args.device, dtype="float32")
    torch.manual_seed(0)
    net = get_peft_model(copy.deepcopy(base.model), LoraConfig(r=args.lora_r, lora_alpha=2 * args.lora_r,
                                                                target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    for name, p in net.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.02)
    net.eval()
    lm = LoadedLM(net, base.tokenizer, base.name + "+lora", "bench", args.device, "float32")
    tok = lm.tokenizer
    mods = trainable_linears(net)
    n_par = sum(m.weight.numel() for _, m in mods)
    reqs = [render_conversation(e, "alpaca") for e in ds.examples]
    print(f"model {base.name} + LoRA r {args.lora_r} on q/k/v/o: {n_par:,} trainable parameters, {args.device}, "
          f"float32; {len(reqs)} examples from {args.data}; torch threads {torch.get_num_threads()}")

    def sync():
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()

    def engine():
        sync()
        t = time.perf_counter()
        G, n_tok = gradient_features(lm, reqs, None, kind="sgd", max_length=args.max_length,
                                     batch_tokens=args.batch_tokens, progress=False)
        sync()
        return G, n_tok, time.perf_counter() - t

    def reference():
        rows = []
        sync()
        t = time.perf_counter()
        for r in reqs:
            enc = tok(r.text, return_offsets_mapping=True, truncation=True, max_length=args.max_length)
            ids = torch.tensor([enc["input_ids"]], device=args.device)
            labels = ids.clone()
            for j, (s, e) in enumerate(enc["offset_mapping"]):
                if not (e > s and s >= r.spans[0][0]):
                    labels[0, j] = -100
            net.zero_grad()
            net(input_ids=ids, labels=labels).loss.backward()
            rows.append(torch.cat([m.weight.grad.reshape(-1) for _, m in mods]).cpu().numpy())
        sync()
        return np.stack(rows), time.perf_counter() - t

    G, n_tok, t_engine = engine()
    R, t_ref = reference()
    G2, _, t_engine2 = engine()
    tokens = int(n_tok.sum())
    print(f"engine:    {len(reqs)} examples in {t_engine:.1f}s = {len(reqs) / t_engine:.2f} examples/s "
          f"({tokens:,} response tokens, batches of <= {args.batch_tokens} padded tokens)")
    print(f"reference: {len(reqs)} examples in {t_ref:.1f}s = {len(reqs) / t_ref:.2f} examples/s")
    t_mean = (t_engine + t_engine2) / 2
    print(f"engine:    again after the reference, {t_engine2:.1f}s; mean of the two {t_mean:.1f}s")
    print(f"speed-up:  {t_ref / t_mean:.2f}x")
    rel = np.abs(G - R).max(1) / np.abs(R).max(1)
    print(f"agreement: max |engine - reference| / max |reference| per example: max {rel.max():.1e}, "
          f"median {np.median(rel):.1e}")
    proj = RademacherProjector(n_par, args.proj_dim)
    times = []
    for _ in range(2):
        t = time.perf_counter()
        with torch.no_grad():
            proj(torch.from_numpy(G).to(args.device))
        sync()
        times.append(time.perf_counter() - t)
    print(f"projection to {args.proj_dim}: {len(reqs)} examples in {times[0]:.1f}s the first time (drawing the "
          f"{n_par:,} x {args.proj_dim} matrix), {times[1]:.1f}s again ({proj._held / 2**20:,.0f} MiB of it kept)")


if __name__ == "__main__":
    main()
