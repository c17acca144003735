"""DARE: randomly drop and rescale each task's entries, then Task Arithmetic or TIES."""

from __future__ import annotations

from typing import Sequence

import torch

from .base import MergeParams, TaskDelta, register
from .sparsify import dare_drop, ties_merge


def dropped_updates(deltas: Sequence[TaskDelta], params: MergeParams) -> list[torch.Tensor]:
    """Each task's dense update after DARE; its mask depends only on (params.seed, seed_key)."""
    return [dare_drop(d.dense(), params.drop_rate, params.seed, d.seed_key) for d in deltas]


@register("dare", description="DARE then Task Arithmetic (DARE-TA)", uses=("lam", "drop_rate", "seed"))
def dare_ta(deltas: Sequence[TaskDelta], params: MergeParams) -> torch.Tensor:
    return params.lam * torch.stack(dropped_updates(deltas, params)).sum(0)


@register("dare_ties", description="DARE then TIES (the paper's 'DARE' rows)",
          uses=("lam", "top_k", "drop_rate", "seed"))
def dare_ties(deltas: Sequence[TaskDelta], params: MergeParams) -> torch.Tensor:
    return params.lam * ties_merge(dropped_updates(deltas, params), params.top_k)
