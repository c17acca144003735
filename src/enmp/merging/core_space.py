"""CoreSpace: express every task in shared reference bases, merge the small cores, map back."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..options import Options
from .base import MergeMethod, MergeParams, TaskDelta
from . import iso_c, ta, ties, tsv
from .linalg import thin_svd
from .params import LAM, ORDER, TOP_K, inner

#: the inner methods CoreSpace can run on the cores (the paper: TSV for NLP, TSV + Iso-C for vision)
INNER_METHODS = {m.name: m for m in (tsv.METHOD, ta.METHOD, ties.METHOD, iso_c.METHOD)}


def core_space(deltas: Sequence[TaskDelta], params: MergeParams,
               kept: Optional[Sequence[int]] = None) -> torch.Tensor:
    """ΔW = λ U_ref M V_refᵀ with M = inner({U_refᵀ ΔW_t V_ref}) at λ = 1.

    U_ref spans every B_t's columns and V_ref every A_t's rows, so U_ref U_refᵀ ΔW_t V_ref V_refᵀ = ΔW_t
    and TA in core space is exactly TA. The bases come from the unscaled factors (the method's
    definition); the scales enter the cores. A float64 thin SVD of the d × Σr stacks is cheap.
    `kept` (align-then-prune): `deltas` are every task's, the bases are built from all of them, and only
    the kept tasks' cores are merged.
    """
    U_ref = thin_svd(torch.cat([d.B for d in deltas], dim=1))[0]
    V_ref = thin_svd(torch.cat([d.A for d in deltas], dim=0))[2].T
    if U_ref.shape[1] == 0 or V_ref.shape[1] == 0:
        return torch.zeros(deltas[0].shape, dtype=torch.float32, device=U_ref.device)
    identity = torch.eye(V_ref.shape[1], dtype=torch.float64, device=V_ref.device)
    members = deltas if kept is None else [deltas[i] for i in kept]
    cores = [TaskDelta(B=(U_ref.T @ d.B.to(torch.float64)) @ (d.A.to(torch.float64) @ V_ref) * d.scale,
                       A=identity, scale=1.0, seed_key=d.seed_key) for d in members]
    core_params = params.replace(lam=1.0, inner=None, iso=False)
    merged_core = INNER_METHODS[params.inner].combine(cores, core_params).to(torch.float64)
    return (params.lam * (U_ref @ merged_core @ V_ref.T)).to(torch.float32)


# top-k only matters with inner TIES; 100 keeps every entry of the cores
METHOD = MergeMethod("core_space", core_space, "CoreSpace: merge Σr×Σr cores in shared bases with an inner "
                     "method (TSV default, or TA, TIES, Iso-C), times λ",
                     params=Options(LAM, TOP_K, inner(tuple(INNER_METHODS), "tsv"), ORDER))
