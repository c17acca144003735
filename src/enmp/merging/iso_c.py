"""Iso-C (isotropic merging): flatten the spectrum of the summed update to its mean singular value."""

from __future__ import annotations

from typing import Sequence

import torch

from ..options import Options
from .base import MergeMethod, MergeParams, TaskDelta
from .linalg import deltas_tolerance, lowrank_svd, thin_svd
from .params import LAM
from .ta import stacked_factors


def _isotropic(U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor) -> torch.Tensor:
    """σ̄ U Vᵀ over the non-zero spectrum only: a low-rank update must not gain new directions."""
    if S.numel() == 0:
        return torch.zeros(U.shape[0], Vh.shape[1], dtype=torch.float64, device=U.device)
    return S.mean() * (U @ Vh)


def flatten_spectrum(delta: torch.Tensor) -> torch.Tensor:
    """Replace every non-zero singular value of a dense matrix by their mean (zero stays zero).

    Used as the ``iso`` post-step after any method; the zero cut-off follows delta's dtype.
    """
    return _isotropic(*thin_svd(delta)).to(torch.float32)


def iso_c(deltas: Sequence[TaskDelta], params: MergeParams) -> torch.Tensor:
    """Decomposes Σ_t ΔW_t from the stacked factors, never the dense sum."""
    B, A = stacked_factors(deltas, torch.float64)
    rtol = deltas_tolerance(deltas[0].shape, deltas)
    return (params.lam * _isotropic(*lowrank_svd(B, A, rtol))).to(torch.float32)


METHOD = MergeMethod("iso_c", iso_c, "Iso-C: sum of the updates with all non-zero singular values set to their mean",
                     params=Options(LAM))
