"""Reward-model scores: Hugging Face sequence-classification reward models from any path.

A reward model reads a (question, answer) text pair and returns a scalar logit (MoDS uses
OpenAssistant/reward-model-deberta-v3-large-v2; any ``AutoModelForSequenceClassification`` with one
label works).  Batched like the likelihood engine: length-sorted token-budget batches, padded with
an attention mask (these encoders attend both ways, so padding must be masked), cached on disk
keyed by the exact token ids within a namespace for the model's weights.
"""
from __future__ import annotations

import time
from typing import Sequence

import numpy as np

from ..data.errors import TunesiftError
from ..models.loading import cache_root, resolve_device, tensor_fingerprint
from .batching import cached_split, token_batches
from .cache import ShardCache


class RewardModel:
    def __init__(self, model: str | object, tokenizer: object | None = None, device: str | None = "auto",
                 max_length: int = 512, batch_tokens: int = 16384, cache_dir: str | None = None,
                 use_cache: bool = True, progress: bool = True):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        dev = resolve_device(device)
        if isinstance(model, str):
            self.name = model
            self.tokenizer = AutoTokenizer.from_pretrained(model)
            self.model = AutoModelForSequenceClassification.from_pretrained(model).to(dev).eval()
        else:
            if tokenizer is None:
                raise TunesiftError("an in-memory reward model needs its tokenizer")
            self.model, self.tokenizer, self.name = model, tokenizer, type(model).__name__
        if getattr(self.model.config, "num_labels", 1) != 1:
            raise TunesiftError(f"reward model {self.name} has {self.model.config.num_labels} labels; "
                                "a reward model returns one scalar")
        self.device = next(self.model.parameters()).device
        self.max_length, self.batch_tokens, self.progress = max_length, batch_tokens, progress
        self.cache = None
        if use_cache:
            fp = tensor_fingerprint(self.model)
            self.cache = ShardCache(cache_root(cache_dir), f"reward/{fp}", ("reward",))
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.seconds = 0.0
        self._torch = torch

    def score(self, questions: Sequence[str], answers: Sequence[str], desc: str = "reward") -> tuple[np.ndarray, np.ndarray]:
        """Reward per (question, answer) pair and whether the pair was truncated to ``max_length``."""
        from tqdm.auto import tqdm
        torch = self._torch
        t0 = time.perf_counter()
        enc = self.tokenizer(list(questions), list(answers), truncation="longest_first", max_length=self.max_length,
                             return_overflowing_tokens=False, return_attention_mask=False)
        full = self.tokenizer(list(questions), list(answers), return_attention_mask=False)
        ids = [np.asarray(x, dtype=np.int64) for x in enc["input_ids"]]
        trunc = np.array([len(a) < len(b) for a, b in zip(enc["input_ids"], full["input_ids"])])
        types = enc.get("token_type_ids")
        out = np.zeros(len(ids))
        def key(i: int) -> bytes:
            return ShardCache.key(ids[i].tobytes(), np.asarray(types[i] if types else [], np.int64).tobytes())
        keys, todo = cached_split(self.cache, len(ids), key, out)
        batches = token_batches([len(x) for x in ids], todo, self.batch_tokens)
        bar = tqdm(total=len(todo), desc=desc, unit="ex", disable=not self.progress, leave=False)
        try:
            with torch.inference_mode():
                for b in batches:
                    L = len(ids[b[0]])
                    x = torch.full((len(b), L), self.pad_id, dtype=torch.long)
                    att = torch.zeros((len(b), L), dtype=torch.long)
                    tt = torch.zeros((len(b), L), dtype=torch.long) if types else None
                    for r, i in enumerate(b):
                        x[r, :len(ids[i])] = torch.from_numpy(ids[i])
                        att[r, :len(ids[i])] = 1
                        if tt is not None:
                            tt[r, :len(ids[i])] = torch.tensor(types[i])
                    kw = {"token_type_ids": tt.to(self.device)} if tt is not None else {}
                    logits = self.model(input_ids=x.to(self.device), attention_mask=att.to(self.device), **kw).logits
                    vals = logits[:, 0].float().cpu().numpy()
                    for r, i in enumerate(b):
                        out[i] = vals[r]
                        if self.cache is not None:
                            self.cache.put(keys[i], (float(vals[r]),))
                    bar.update(len(b))
        finally:
            bar.close()
            if self.cache is not None:
                self.cache.flush()
        self.seconds += time.perf_counter() - t0
        return out, trunc
