"""DARE: randomly drop and rescale each task's entries, then Task Arithmetic or TIES."""

from __future__ import annotations

from typing import Sequence

import torch

from ..options import Options
from .base import MergeMethod, MergeParams, TaskDelta
from .params import DROP_RATE, LAM, SEED, TOP_K
from .sparsify import dare_drop, ties_merge


def dropped_updates(deltas: Sequence[TaskDelta], params: MergeParams) -> list[torch.Tensor]:
    """Each task's dense update after DARE; its mask depends only on (params.seed, seed_key)."""
    return [dare_drop(d.dense(), params.drop_rate, params.seed, d.seed_key) for d in deltas]


def dare_ta(deltas: Sequence[TaskDelta], params: MergeParams) -> torch.Tensor:
    return params.lam * torch.stack(dropped_updates(deltas, params)).sum(0)


def dare_ties(deltas: Sequence[TaskDelta], params: MergeParams) -> torch.Tensor:
    return params.lam * ties_merge(dropped_updates(deltas, params), params.top_k)


# p 0.1 and top-k 80 are the paper's NLP setting (Table 6)
DARE_TA = MergeMethod("dare", dare_ta, "DARE then Task Arithmetic (DARE-TA)",
                      params=Options(LAM, DROP_RATE.with_default(0.1), SEED))
DARE_TIES = MergeMethod("dare_ties", dare_ties, "DARE then TIES (the paper's 'DARE' rows)",
                        params=Options(LAM, TOP_K.with_default(80.0), DROP_RATE.with_default(0.1), SEED))
