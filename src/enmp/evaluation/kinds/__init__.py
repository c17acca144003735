"""Task kinds: one module per kind declaring everything about it (see `base.TaskKind`), listed by name in
`registry.KINDS`."""

from .base import PreparedSplit, Required, TaskKind, accuracy, correct
from .causal_lm import CausalLMTask
from .classification import ClassificationTask
from .clip_zero_shot import ClipZeroShotTask
from .lm_eval_kind import LmEvalTask
from .processors import PROCESSORS
from .registry import KINDS, available_kinds, check_options, declaring, get_kind, model_class_for

__all__ = ["PreparedSplit", "Required", "TaskKind", "accuracy", "correct", "CausalLMTask", "ClassificationTask",
           "ClipZeroShotTask", "LmEvalTask", "PROCESSORS", "KINDS", "available_kinds", "check_options", "declaring",
           "get_kind", "model_class_for"]
