"""CoreSpace: express every task in shared reference bases, merge the small cores, map back."""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import EnmpError
from .base import MergeParams, TaskDelta, get_method, register
from .linalg import thin_svd

INNER_METHODS = ("tsv", "ta", "ties", "iso_c")


@register("core_space", description="CoreSpace: merge Σr×Σr cores in shared bases with an inner method "
          "(TSV default, or TA, TIES, Iso-C), times λ",
          uses=("lam", "top_k", "inner"), inner_choices=INNER_METHODS, default_inner="tsv")
def core_space(deltas: Sequence[TaskDelta], params: MergeParams) -> torch.Tensor:
    """ΔW = λ U_ref M V_refᵀ with M = inner({U_refᵀ ΔW_t V_ref}) at λ = 1.

    U_ref spans every B_t's columns and V_ref every A_t's rows, so U_ref U_refᵀ ΔW_t V_ref V_refᵀ = ΔW_t
    and TA in core space is exactly TA. The bases come from the unscaled factors (the method's
    definition); the scales enter the cores. A float64 thin SVD of the d × Σr stacks is cheap.
    """
    inner_name = params.inner or "tsv"
    if inner_name not in INNER_METHODS:
        raise EnmpError(f"unknown inner method '{inner_name}' for core_space", where="--inner",
                        fix=f"choose one of: {', '.join(INNER_METHODS)}")
    U_ref = thin_svd(torch.cat([d.B for d in deltas], dim=1))[0]
    V_ref = thin_svd(torch.cat([d.A for d in deltas], dim=0))[2].T
    if U_ref.shape[1] == 0 or V_ref.shape[1] == 0:
        return torch.zeros(deltas[0].shape, dtype=torch.float32, device=U_ref.device)
    identity = torch.eye(V_ref.shape[1], dtype=torch.float64, device=V_ref.device)
    cores = [TaskDelta(B=(U_ref.T @ d.B.to(torch.float64)) @ (d.A.to(torch.float64) @ V_ref) * d.scale,
                       A=identity, scale=1.0, seed_key=d.seed_key) for d in deltas]
    core_params = params.replace(lam=1.0, inner=None, iso=False)
    merged_core = get_method(inner_name).fn(cores, core_params).to(torch.float64)
    return (params.lam * (U_ref @ merged_core @ V_ref.T)).to(torch.float32)
