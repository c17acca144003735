"""TIES: trim each update to its top-k % entries, elect signs, average the agreeing values."""

from __future__ import annotations

from typing import Sequence

import torch

from ..options import Options
from .base import MergeMethod, MergeParams, TaskDelta
from .params import LAM, TOP_K
from .sparsify import ties_combine, trim_top_k


def trimmed(delta: TaskDelta, params: MergeParams) -> torch.Tensor:
    """Trimming is per task and per matrix (the paper's per-tensor Top-k %)."""
    return trim_top_k(delta.dense(), params.top_k)


def ties(updates: Sequence[torch.Tensor], params: MergeParams) -> torch.Tensor:
    """The trimmed updates' sign election and disjoint mean, times λ."""
    return params.lam * ties_combine(updates)


#: top-k 80 is the paper's NLP setting (Table 6)
METHOD = MergeMethod("ties", ties, "TIES: trim to top-k %, elect sign, disjoint mean, times λ",
                     params=Options(LAM, TOP_K.with_default(80.0)), per_task=trimmed)
