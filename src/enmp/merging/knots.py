"""KnOTS: align the tasks in the shared SVD basis of their concatenation, merge the per-task V blocks."""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from ..options import Options
from .base import MergeMethod, MergeParams, TaskDelta
from .linalg import checked_svd, deltas_tolerance, drop_zero_spectrum
from .params import LAM, ORDER, TOP_K, inner
from .sparsify import ties_merge

SplitSvd = tuple[torch.Tensor, torch.Tensor, list[torch.Tensor]]


def concatenation_svd(deltas: Sequence[TaskDelta]) -> SplitSvd:
    """[ΔW_1 … ΔW_K] = U S [V_1ᵀ … V_Kᵀ] from the factors, never forming d_out × K·d_in.

    The concatenation is [s_1 B_1 … s_K B_K] · blockdiag(A_1 … A_K). With [s B] = Q_b R_b and
    A_tᵀ = Q_t R_t it becomes Q_b · (R_b blockdiag(R_tᵀ)) · blockdiag(Q_tᵀ): only the small middle
    core is decomposed. Returns U (d_out × n), S (n) and each task's V_tᵀ block (n × d_in), with n the
    numeric rank.
    """
    scaled_B = torch.cat([d.B.to(torch.float64) * d.scale for d in deltas], dim=1)
    Qb, Rb = torch.linalg.qr(scaled_B)
    Qs, Rs = zip(*(torch.linalg.qr(d.A.to(torch.float64).T) for d in deltas))
    Uc, S, Vhc = checked_svd(Rb @ torch.block_diag(*(R.T for R in Rs)))
    d_out, d_in = deltas[0].shape
    rtol = deltas_tolerance((d_out, len(deltas) * d_in), deltas)
    U, S, Vhc = drop_zero_spectrum(Qb @ Uc, S, Vhc, rtol)
    blocks = torch.split(Vhc, [Q.shape[1] for Q in Qs], dim=1)
    return U, S, [block @ Q.T for block, Q in zip(blocks, Qs)]


def knots(deltas: Sequence[TaskDelta], params: MergeParams,
          kept: Optional[Sequence[int]] = None) -> torch.Tensor:
    """ΔW = λ U S V_mergedᵀ. TIES trims each task's V_tᵀ block separately (per tensor, as in TIES).

    `kept` (align-then-prune): `deltas` are every task's, the joint SVD is taken over all of them and only the
    kept tasks' V_tᵀ blocks are merged, so a pruned task still shapes U and S but contributes no block. With
    inner TA that is U S (Σ_{t kept} V_tᵀ) = Σ_{t kept} ΔW_t, as prune-then-align gives: the order matters with
    TIES, whose trimming and sign election act on coordinates in the basis. `params.inner` was checked by
    `method_params`.
    """
    U, S, Vts = concatenation_svd(deltas)
    if kept is not None:
        Vts = [Vts[i] for i in kept]
    V_merged = ties_merge(Vts, params.top_k) if params.inner == "ties" else torch.stack(Vts).sum(0)
    return (params.lam * ((U * S) @ V_merged)).to(torch.float32)


#: top-k 90 is the paper's KnOTS-TIES setting in both its NLP and vision tables (Table 6)
METHOD = MergeMethod("knots", knots, "KnOTS: merge the V blocks of the joint SVD with TIES (default) or TA",
                     params=Options(LAM, TOP_K.with_default(90.0), inner(("ties", "ta"), "ties"), ORDER))
