"""Pooled last-layer hidden states of a causal LM over given token ids (RDS+'s representation).

Pooling over a sequence's L real tokens h_1..h_L (the final, normed layer: ``hidden_states[-1]``):
- ``weighted_mean``: sum_t w_t h_t with w_t = t / sum_s s (t = 1..L), later tokens weigh more
  (SGPT's position weighting, as RDS+ uses it);
- ``mean``: the plain mean;
- ``last``: h_L.
Then L2-normalised.  Batched longest-first into token budgets and right-padded with no mask:
under causal attention a pad after a sequence never reaches its real tokens, and the pooling reads
only the real positions.  Cached per token-id sequence in a namespace for the weights, dtype and
pooling, so a killed run resumes and a second target set reuses the pool's vectors.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .batching import cached_split, pad_id_of, right_padded, token_batches
from .cache import ShardCache

POOLINGS = ("weighted_mean", "mean", "last")


def pool_weights(L: int, pooling: str) -> np.ndarray:
    if pooling == "weighted_mean":
        w = np.arange(1, L + 1, dtype=np.float64)
        return w / w.sum()
    if pooling == "mean":
        return np.full(L, 1.0 / L)
    if pooling == "last":
        w = np.zeros(L)
        w[-1] = 1.0
        return w
    raise ValueError(f"pooling must be one of {', '.join(POOLINGS)}")


class PooledStates:
    def __init__(self, lm, pooling: str = "weighted_mean", batch_tokens: int = 16384, cache_dir: str | None = None,
                 use_cache: bool = True, progress: bool = True):
        from ..models.loading import cache_root
        pool_weights(1, pooling)   # validates the name
        self.lm, self.pooling, self.batch_tokens, self.progress = lm, pooling, batch_tokens, progress
        ns = f"pooled-states/{lm.fingerprint.replace('/', '_')}-{lm.dtype}-{pooling}"
        self.cache = ShardCache(cache_root(cache_dir), ns, ("vec",)) if use_cache else None

    def encode(self, ids: Sequence[np.ndarray], desc: str = "hidden states") -> np.ndarray:
        """Unit-norm pooled vectors [N, hidden] for each token-id sequence (each at least one token)."""
        import torch
        from tqdm.auto import tqdm
        model = self.lm.model
        dev = next(model.parameters()).device
        ids = [np.asarray(x, dtype=np.int64) for x in ids]
        out = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
        keys, todo = cached_split(self.cache, len(ids), lambda i: ShardCache.key(ids[i].tobytes()), out)
        batches = token_batches([len(x) for x in ids], todo, self.batch_tokens)
        pad = pad_id_of(self.lm.tokenizer)
        bar = tqdm(total=len(todo), desc=desc, unit="ex", disable=not self.progress, leave=False)
        try:
            with torch.inference_mode():
                for b in batches:
                    x = torch.from_numpy(right_padded([ids[i] for i in b], pad)).to(dev)
                    h = model.base_model(input_ids=x, use_cache=False)[0].float()
                    W = torch.zeros(x.shape, dtype=torch.float32)
                    for r, i in enumerate(b):
                        W[r, :len(ids[i])] = torch.from_numpy(pool_weights(len(ids[i]), self.pooling))
                    v = torch.einsum("bl,bld->bd", W.to(dev), h)
                    v = torch.nn.functional.normalize(v, dim=-1).cpu().numpy()
                    for r, i in enumerate(b):
                        out[i] = v[r]
                        if self.cache is not None:
                            self.cache.put(keys[i], (v[r],))
                    bar.update(len(b))
                    if self.cache is not None and self.cache.pending >= 2048:
                        self.cache.flush()
        finally:
            bar.close()
            if self.cache is not None:
                self.cache.flush()
        return out
