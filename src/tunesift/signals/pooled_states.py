"""Pooled last-layer hidden states of a causal LM: every LM embedding tunesift uses.

Pooling over a sequence's L real tokens h_1..h_L (the final, normed layer: ``hidden_states[-1]``):
- ``mean``: the plain mean ("Maybe Only 0.5% Data is Needed", DiverseEvol: ``--embedder lm``);
- ``last``: h_L (DEITA's ``clm_embedder.py``: ``--embedder lm-last``);
- ``weighted_mean``: sum_t w_t h_t with w_t = t / sum_s s (t = 1..L), later tokens weigh more
  (SGPT's position weighting, as RDS+ uses it).
Then L2-normalised (``normalize=False`` keeps the raw pooled vector).  Batched longest-first into
token budgets and right-padded with no mask: under causal attention a pad after a sequence never
reaches its real tokens, and the pooling reads only the real positions.  Cached per token-id
sequence in a namespace for the weights, dtype, length and pooling, so a killed run resumes and a
second target set reuses the pool's vectors.  With a remote runner the batches run on its workers.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from ..models.loading import cache_root
from ..models.progress import progress_bar
from .batching import cached_split, gathered, pad_id_of, right_padded, run_and_store, token_batches
from .cache import CacheWriter, ShardCache
from .distributed import Recipe, Runner, parts_of, units_of

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
    """``encode(ids)`` / ``encode_ids`` for token-id sequences, ``encode_texts(texts)`` for texts (tokenised with the
    model's tokenizer, special tokens included, cut at ``max_length``; an empty text is its EOS)."""

    def __init__(self, lm, pooling: str = "weighted_mean", batch_tokens: int = 16384, cache_dir: str | None = None,
                 use_cache: bool = True, progress: bool = True, max_length: int | None = None,
                 normalize: bool = True, namespace: str | None = None, runner: Runner | None = None):
        pool_weights(1, pooling)   # validates the name
        self.lm, self.pooling, self.batch_tokens, self.progress = lm, pooling, batch_tokens, progress
        self.max_length, self.normalize, self.runner = max_length, normalize, runner
        ns = namespace or f"pooled-states/{lm.fingerprint.replace('/', '_')}-{lm.dtype}-{pooling}" + (
            "" if normalize else "-raw")
        self._key = ns
        self.cache = ShardCache(cache_root(cache_dir), ns, ("vec",)) if use_cache else None

    def recipe(self) -> Recipe:
        kw = (("pooling", self.pooling), ("batch_tokens", self.batch_tokens), ("use_cache", False),
              ("progress", False), ("max_length", self.max_length), ("normalize", self.normalize))
        return Recipe(PooledStates, kw, self.runner.lm_source(self.lm), key=self._key)

    def run_unit(self, unit: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Pooled vectors of each batch of token-id rows."""
        import torch
        model = self.lm.model
        dev = next(model.parameters()).device
        pad = pad_id_of(self.lm.tokenizer)
        out = []
        with torch.inference_mode():
            for rows in unit:
                x = torch.from_numpy(right_padded(rows, pad)).to(dev)
                h = model.base_model(input_ids=x, use_cache=False)[0].float()
                W = torch.zeros(x.shape, dtype=torch.float32)
                for r, ids in enumerate(rows):
                    W[r, :len(ids)] = torch.from_numpy(pool_weights(len(ids), self.pooling))
                v = torch.einsum("bl,bld->bd", W.to(dev), h)
                if self.normalize:
                    v = torch.nn.functional.normalize(v, dim=-1)
                out.append(v.cpu().numpy())
        return out

    def encode_texts(self, texts: Sequence[str], desc: str = "hidden states") -> np.ndarray:
        tok = self.lm.tokenizer
        kw = dict(truncation=True, max_length=self.max_length) if self.max_length else {}
        enc = tok(list(texts), return_attention_mask=False, **kw)["input_ids"]
        return self.encode_ids([x if len(x) else [tok.eos_token_id or 0] for x in enc], desc=desc)

    def encode(self, ids: Sequence[np.ndarray], desc: str = "hidden states") -> np.ndarray:
        return self.encode_ids(ids, desc)

    def encode_ids(self, ids: Sequence[np.ndarray], desc: str = "hidden states") -> np.ndarray:
        """Pooled vectors [N, hidden] for each token-id sequence (each at least one token)."""
        ids = [np.asarray(x, dtype=np.int64) for x in ids]
        out = gathered(len(ids), self._hidden_size(), self.cache.dir.parent.parent if self.cache else None)
        keys, todo = cached_split(self.cache, len(ids), lambda i: ShardCache.key(ids[i].tobytes()), out,
                                  self.runner)
        lens = [len(x) for x in ids]
        batches = token_batches(lens, todo, self.batch_tokens)
        units = units_of(batches, lens, 4 * self.batch_tokens, parts_of(self.runner))
        bar = progress_bar(total=len(todo), desc=desc, unit="ex", disable=not self.progress, leave=False)

        run_and_store(self.runner, self.recipe, self, units, [[[ids[i] for i in b] for b in unit] for unit in units],
                      out, keys, CacheWriter(self.cache, every=2048), bar)
        return out

    def _hidden_size(self) -> int:
        lm = self.lm
        if getattr(lm, "_model", True) is None and lm.source:   # a lazy driver model: its config suffices
            from transformers import AutoConfig
            return AutoConfig.from_pretrained(lm.source, trust_remote_code=lm.trust_remote_code).hidden_size
        return lm.model.config.hidden_size
