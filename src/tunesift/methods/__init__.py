"""One module per paper; each registers itself by name."""
from .base import Context, Method, SetMethod
from .registry import REGISTRY, available_methods, get_method, register

__all__ = ["REGISTRY", "Context", "Method", "SetMethod", "available_methods", "get_method", "register"]
