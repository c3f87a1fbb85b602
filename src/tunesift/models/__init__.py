"""Model loading (causal LMs, the offline defaults), prompt templates, judges and API clients."""
from .judge import JudgeResult, RatingJudge
from .loading import DEFAULT_LM, LoadedLM, cache_root, load_causal_lm, wrap_model
from .openai_client import APIError, OpenAIClient
from .templates import TEMPLATES, Rendered, render_conversation, render_direct

__all__ = ["DEFAULT_LM", "LoadedLM", "cache_root", "load_causal_lm", "wrap_model", "TEMPLATES", "Rendered",
           "render_conversation", "render_direct", "APIError", "OpenAIClient", "JudgeResult", "RatingJudge"]
