"""DARE: randomly drop and rescale each task's entries, then Task Arithmetic or TIES."""

from __future__ import annotations

from typing import Sequence

import torch

from ..options import Options
from .base import MergeMethod, MergeParams, TaskDelta
from .params import DROP_RATE, LAM, SEED, TOP_K
from .sparsify import dare_drop, trim_top_k
from .ties import ties


def dropped(delta: TaskDelta, params: MergeParams) -> torch.Tensor:
    """A task's dense update after DARE; its mask depends only on (params.seed, seed_key)."""
    return dare_drop(delta.dense(), params.drop_rate, params.seed, delta.seed_key)


def dropped_and_trimmed(delta: TaskDelta, params: MergeParams) -> torch.Tensor:
    return trim_top_k(dropped(delta, params), params.top_k)


def dare_ta(updates: Sequence[torch.Tensor], params: MergeParams) -> torch.Tensor:
    return params.lam * torch.stack(list(updates)).sum(0)


# p 0.1 and top-k 80 are the paper's NLP setting (Table 6)
DARE_TA = MergeMethod("dare", dare_ta, "DARE then Task Arithmetic (DARE-TA)",
                      params=Options(LAM, DROP_RATE.with_default(0.1), SEED), per_task=dropped)
# after the per-task drop and trim, DARE-TIES combines exactly as TIES does
DARE_TIES = MergeMethod("dare_ties", ties, "DARE then TIES (the paper's 'DARE' rows)",
                        params=Options(LAM, TOP_K.with_default(80.0), DROP_RATE.with_default(0.1), SEED),
                        per_task=dropped_and_trimmed)
