"""Task Arithmetic: ΔW = λ Σ_t ΔW_t."""

from __future__ import annotations

from typing import Sequence

import torch

from ..options import Options
from .base import MergeMethod, MergeParams, TaskDelta
from .params import LAM


def stacked_factors(deltas: Sequence[TaskDelta],
                    dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """[s_1 B_1 … s_K B_K] and [A_1; …; A_K]: their product is Σ_t ΔW_t, whatever the ranks."""
    B = torch.cat([d.scaled_B(dtype) for d in deltas], dim=1)
    A = torch.cat([d.A_as(dtype) for d in deltas], dim=0)
    return B, A


def task_arithmetic(deltas: Sequence[TaskDelta], params: MergeParams) -> torch.Tensor:
    """One matmul of the stacked factors instead of K dense products."""
    B, A = stacked_factors(deltas)
    return params.lam * (B @ A)


METHOD = MergeMethod("ta", task_arithmetic, "Task Arithmetic: λ times the sum of the task updates",
                     params=Options(LAM))
