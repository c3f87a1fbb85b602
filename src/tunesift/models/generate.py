"""Text generation with a loaded causal LM: a model primitive shared by evaluations (GSM8K, IFEval,
win rates), judges that answer in text, methods that generate (MoDS, IterSelectTune, AlpaGasus's
local judge) and recycling.

``generate`` sorts prompts by length and left-pads each batch, so a batch wastes few pad tokens and
every row's new tokens start at the same column.
"""
from __future__ import annotations

from ..data.example import Dataset
from .loading import LoadedLM
from .progress import progress_bar
from .templates import render_conversation


def prompts_of(data: Dataset, template: str, tokenizer) -> tuple[list[str], bool]:
    """Each example's rendering up to its response (what a model answers), and whether the
    tokenizer should add special tokens (not for chat templates, which write their own)."""
    rendered = [render_conversation(e, template, tokenizer) for e in data.examples]
    return [r.text[:r.spans[0][0]] for r in rendered], (rendered[0].add_special_tokens if rendered else True)


def generate(lm: LoadedLM, prompts: list[str], max_new_tokens: int = 256, batch_size: int = 16,
             progress: bool = False, add_special_tokens: bool = True, num_beams: int = 1,
             temperature: float = 0.0, seed: int = 0) -> list[str]:
    """Batched (length-sorted, left-padded) generation, greedy or beam search, or sampled at
    ``temperature`` (seeded: judges and oracles re-ask with it); returns only the new text."""
    import torch   # heavy: loaded on first generation, not when the package is imported

    sample = temperature > 0
    if sample:
        torch.manual_seed(seed)
    tok, model = lm.tokenizer, lm.model
    dev = next(model.parameters()).device
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    enc = [tok(p, add_special_tokens=add_special_tokens).input_ids for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: -len(enc[i]))
    out: list[str] = [""] * len(prompts)
    bar = progress_bar(total=len(order), desc="generating", unit="ex", disable=not progress, leave=False)
    with bar, torch.inference_mode():
        for s in range(0, len(order), batch_size):
            idx = order[s:s + batch_size]
            L = max(len(enc[i]) for i in idx)
            ids = torch.full((len(idx), L), pad, dtype=torch.long)
            att = torch.zeros((len(idx), L), dtype=torch.long)
            for r, i in enumerate(idx):
                ids[r, L - len(enc[i]):] = torch.tensor(enc[i])
                att[r, L - len(enc[i]):] = 1
            gen = model.generate(input_ids=ids.to(dev), attention_mask=att.to(dev), max_new_tokens=max_new_tokens,
                                 do_sample=sample, num_beams=num_beams, pad_token_id=pad,
                                 eos_token_id=tok.eos_token_id, **({"temperature": temperature} if sample else {}))
            for r, i in enumerate(idx):
                out[i] = tok.decode(gen[r, L:], skip_special_tokens=True)
            bar.update(len(idx))
    return out
