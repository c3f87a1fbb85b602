"""Model loading (causal LMs, the offline defaults) and prompt templates."""
from .loading import DEFAULT_LM, LoadedLM, cache_root, load_causal_lm, wrap_model
from .templates import TEMPLATES, Rendered, render_conversation, render_direct

__all__ = ["DEFAULT_LM", "LoadedLM", "cache_root", "load_causal_lm", "wrap_model", "TEMPLATES", "Rendered",
           "render_conversation", "render_direct"]
