"""TSV (task singular vectors): keep each task's top singular triplets, decorrelate them, recombine."""

from __future__ import annotations

from typing import Sequence

import torch

from ..options import Options
from .base import MergeMethod, MergeParams, TaskDelta
from .linalg import deltas_tolerance, lowrank_svd, nearest_orthogonal
from .params import LAM


def components_per_task(shape: tuple[int, int], n_tasks: int) -> int:
    """k = ⌊min(d_out, d_in)/K⌋ so the concatenated bases fit the matrix; at least 1 so a tiny matrix
    with many tasks still merges to something rather than silently to zero."""
    return max(1, min(shape) // n_tasks)


def tsv(deltas: Sequence[TaskDelta], params: MergeParams) -> torch.Tensor:
    """ΔW = λ U⊥ Σ V⊥ᵀ, U⊥ and V⊥ being the nearest orthogonal matrices to the stacked bases.

    Each task keeps min(k, its rank) components, so ranks may differ between tasks.
    """
    shape = deltas[0].shape
    k = components_per_task(shape, len(deltas))
    Us, Ss, Vhs = [], [], []
    for d in deltas:
        rtol = deltas_tolerance(shape, [d])
        U, S, Vh = lowrank_svd(d.B.to(torch.float64) * d.scale, d.A, rtol)
        Us.append(U[:, :k])
        Ss.append(S[:k])
        Vhs.append(Vh[:k])
    S = torch.cat(Ss)
    if S.numel() == 0:
        return torch.zeros(shape, dtype=torch.float32, device=deltas[0].B.device)
    U_orth = nearest_orthogonal(torch.cat(Us, dim=1))
    Vh_orth = nearest_orthogonal(torch.cat(Vhs, dim=0))
    return (params.lam * ((U_orth * S) @ Vh_orth)).to(torch.float32)


METHOD = MergeMethod("tsv", tsv, "Task Singular Vectors: per-task top-k SVD, orthogonalised bases",
                     params=Options(LAM))
