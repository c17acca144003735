"""TIES: trim each update to its top-k % entries, elect signs, average the agreeing values."""

from __future__ import annotations

from typing import Sequence

import torch

from .base import MergeParams, TaskDelta, register
from .sparsify import ties_merge


@register("ties", description="TIES: trim to top-k %, elect sign, disjoint mean, times λ",
          uses=("lam", "top_k"))
def ties(deltas: Sequence[TaskDelta], params: MergeParams) -> torch.Tensor:
    """Trimming is per task and per matrix (the paper's per-tensor Top-k %)."""
    return params.lam * ties_merge([d.dense() for d in deltas], params.top_k)
