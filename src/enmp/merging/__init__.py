"""Merge methods: pure tensor functions on LoRA factors, one module per method, registry by name.

Each method declares its own hyperparameters (`MergeMethod.params`, shared ones in `params.py`); validation,
run configs, `enmp merge` flags and model cards are derived from those declarations.
"""

from .base import MergeMethod, MergeParams, TaskDelta, stable_seed
from .registry import (METHODS, available_methods, declared_options, describe_defaults, flag_params, get_method,
                       merge, merge_kept, method_params, resolved)

__all__ = ["METHODS", "MergeMethod", "MergeParams", "TaskDelta", "available_methods", "declared_options",
           "describe_defaults", "flag_params", "get_method", "merge", "merge_kept", "method_params", "resolved",
           "stable_seed"]
