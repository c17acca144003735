"""TIES: trim each update to its top-k % entries, elect signs, average the agreeing values."""

from __future__ import annotations

from typing import Sequence

import torch

from ..options import Options
from .base import MergeMethod, MergeParams, TaskDelta
from .params import LAM, TOP_K
from .sparsify import ties_merge


def ties(deltas: Sequence[TaskDelta], params: MergeParams) -> torch.Tensor:
    """Trimming is per task and per matrix (the paper's per-tensor Top-k %)."""
    return params.lam * ties_merge([d.dense() for d in deltas], params.top_k)


#: top-k 80 is the paper's NLP setting (Table 6)
METHOD = MergeMethod("ties", ties, "TIES: trim to top-k %, elect sign, disjoint mean, times λ",
                     params=Options(LAM, TOP_K.with_default(80.0)))
