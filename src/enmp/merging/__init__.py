"""Merge methods: pure tensor functions on LoRA factors, one module per method, registry by name."""

from .base import MergeMethod, MergeParams, TaskDelta, stable_seed
from .registry import (METHODS, available_methods, describe_defaults, get_method, merge, method_params, resolved,
                       validate_params)

__all__ = ["METHODS", "MergeMethod", "MergeParams", "TaskDelta", "available_methods", "describe_defaults",
           "get_method", "merge", "method_params", "resolved", "stable_seed", "validate_params"]
