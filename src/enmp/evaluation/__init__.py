"""Evaluation: task kinds, data loading, heads and metrics (no knowledge of merging or search)."""

from .data import Examples, load_examples
from .heads import Head, load_head
from ..metrics import fitness, normalized, summary
from .kinds import (KINDS, CausalLMTask, ClassificationTask, ClipZeroShotTask, PreparedSplit, TaskKind, accuracy,
                    available_kinds, correct, get_kind, model_class_for)

__all__ = ["Examples", "load_examples", "Head", "load_head", "fitness", "normalized", "summary",
           "CausalLMTask", "ClassificationTask", "ClipZeroShotTask", "PreparedSplit", "TaskKind", "accuracy",
           "correct", "KINDS", "available_kinds", "get_kind", "model_class_for"]
