"""One module per paper; each registers itself by name."""
from .base import REGISTRY, Context, Method, SetMethod, available_methods, get_method, register

__all__ = ["REGISTRY", "Context", "Method", "SetMethod", "available_methods", "get_method", "register"]
