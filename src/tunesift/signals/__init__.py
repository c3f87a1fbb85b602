"""Per-example measurements. ``LikelihoodEngine`` computes every likelihood-based signal."""
from .cache import ShardCache
from .likelihood import EngineStats, LikelihoodEngine, NLLResult, tokenize_targets
from .reward import RewardModel

__all__ = ["ShardCache", "EngineStats", "LikelihoodEngine", "NLLResult", "tokenize_targets", "RewardModel"]
