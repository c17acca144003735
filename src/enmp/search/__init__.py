"""Search strategies over keep-masks (ask/tell); they know nothing of models."""

from . import cma_strategy, cmawm_strategy, fast_strategy, greedy, none_strategy, random_strategy  # noqa: F401  (registration)
from .base import Candidate, Strategy, available_strategies, get_strategy

__all__ = ["Candidate", "Strategy", "available_strategies", "get_strategy"]
