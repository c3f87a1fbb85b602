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
from ..models.progress import progress_bar
from .batching import cached_split, run_and_store, token_batches
from .cache import CacheWriter, ShardCache
from .distributed import Recipe, Runner, parts_of, units_of


class RewardModel:
    def __init__(self, model: str | object, tokenizer: object | None = None, device: str | None = "auto",
                 max_length: int = 512, batch_tokens: int = 16384, cache_dir: str | None = None,
                 use_cache: bool = True, progress: bool = True, runner: Runner | None = None):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer
        dev = resolve_device(device)
        self.runner = runner
        self._worker_kwargs = (("model", model), ("tokenizer", tokenizer), ("device", dev),
                               ("max_length", max_length), ("batch_tokens", batch_tokens), ("use_cache", False),
                               ("progress", False))
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
        self._key = f"reward/{self.name}/{id(self.model) if not isinstance(model, str) else ''}/{max_length}"
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.seconds = 0.0
        self._torch = torch

    def score(self, questions: Sequence[str], answers: Sequence[str], desc: str = "reward") -> tuple[np.ndarray, np.ndarray]:
        """Reward per (question, answer) pair and whether the pair was truncated to ``max_length``."""
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
        keys, todo = cached_split(self.cache, len(ids), key, out, self.runner)
        lens = [len(x) for x in ids]
        batches = token_batches(lens, todo, self.batch_tokens)
        units = units_of(batches, lens, 4 * self.batch_tokens, parts_of(self.runner))
        bar = progress_bar(total=len(todo), desc=desc, unit="ex", disable=not self.progress, leave=False)

        payload = [[[(ids[i], types[i] if types else None) for i in b] for b in unit] for unit in units]
        run_and_store(self.runner, self.recipe, self, units, payload, out, keys, CacheWriter(self.cache), bar,
                      value=lambda v: (float(v),))
        self.seconds += time.perf_counter() - t0
        return out, trunc

    def recipe(self) -> Recipe:
        return Recipe(RewardModel, self._worker_kwargs, key=self._key)

    def run_unit(self, unit) -> list[np.ndarray]:
        """Rewards of each batch of (token ids, token type ids) rows."""
        torch = self._torch
        out = []
        with torch.inference_mode():
            for rows in unit:
                L = len(rows[0][0])
                x = torch.full((len(rows), L), self.pad_id, dtype=torch.long)
                att = torch.zeros((len(rows), L), dtype=torch.long)
                tt = torch.zeros((len(rows), L), dtype=torch.long) if rows[0][1] is not None else None
                for r, (ids, types) in enumerate(rows):
                    x[r, :len(ids)] = torch.from_numpy(ids)
                    att[r, :len(ids)] = 1
                    if tt is not None:
                        tt[r, :len(ids)] = torch.tensor(types)
                kw = {"token_type_ids": tt.to(self.device)} if tt is not None else {}
                logits = self.model(input_ids=x.to(self.device), attention_mask=att.to(self.device), **kw).logits
                out.append(logits[:, 0].float().cpu().numpy())
        return out
