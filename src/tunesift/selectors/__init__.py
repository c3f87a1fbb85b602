"""Subset optimisers over scores (and, later, embeddings)."""
from .basic import band, rank_order, top_k
from .budget import Budget

__all__ = ["Budget", "band", "rank_order", "top_k"]
