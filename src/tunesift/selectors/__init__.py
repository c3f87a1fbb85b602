"""Subset optimisers over scores and embeddings: objectives and their greedy optimisers."""
from .basic import balanced_greedy, band, rank_order, top_k
from .budget import Budget
from .kcenter import kcenter_greedy, kcenter_naive, kcenter_torch
from .submodular import (dpp_greedy, facility_location, facility_location_value, flcg, flmi, knn_similarity,
                         logdet_diversity, similarity)

__all__ = ["Budget", "balanced_greedy", "band", "rank_order", "top_k", "kcenter_greedy", "kcenter_naive", "kcenter_torch",
           "dpp_greedy", "facility_location", "facility_location_value", "flcg", "flmi", "knn_similarity",
           "logdet_diversity", "similarity"]
