"""Search strategies over keep-masks (ask/tell); they know nothing of models."""

from . import cma_strategy, cmawm_strategy, crossfit, fast_strategy, greedy, none_strategy, random_strategy, stepwise  # noqa: F401  (registration)
from .base import (Candidate, Decision, Estimate, Strategy, ValidationData, available_strategies, get_strategy)
from .outcome import Outcome, Subset

__all__ = ["Candidate", "Decision", "Estimate", "Outcome", "Strategy", "Subset", "ValidationData",
           "available_strategies", "get_strategy"]
