"""Shared linear algebra for the SVD-based merges (float64, torch.linalg only).

LoRA updates are low rank, so every SVD is taken from the factors: QR of each factor reduces the problem
to an r×r core whose SVD is cheap, and d_out × d_in products are never decomposed.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import NumericalError
from .base import TaskDelta

Svd = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def rank_tolerance(shape: tuple[int, ...], *sources: torch.Tensor) -> float:
    """Relative cut-off below which a singular value counts as zero (numpy's matrix_rank rule).

    The precision of the source tensors (half types counted as float32) sets the floor: a direction
    below max(d)·eps of float32 factors is rounding noise from how they were made, not signal, and
    Iso-C would otherwise inflate it to the mean singular value.
    """
    dtype = torch.float32
    for source in sources:
        dtype = torch.promote_types(dtype, source.dtype)
    return max(shape) * torch.finfo(dtype).eps


def deltas_tolerance(shape: tuple[int, ...], deltas: Sequence[TaskDelta]) -> float:
    """rank_tolerance for a matrix built from these tasks' factors (they are cast to float64 first)."""
    return rank_tolerance(shape, *(d.B for d in deltas), *(d.A for d in deltas))


def drop_zero_spectrum(U: torch.Tensor, S: torch.Tensor, Vh: torch.Tensor, rtol: float) -> Svd:
    """Keep only the singular triplets above rtol · σ_max (zero matrix → empty factors)."""
    keep = 0 if S.numel() == 0 or S[0] <= 0 else int((S > rtol * S[0]).sum())
    return U[:, :keep], S[:keep], Vh[:keep]


def checked_svd(M: torch.Tensor) -> Svd:
    """Thin SVD of a float64 matrix, with one clear error for NaN/Inf instead of a LAPACK failure."""
    if not torch.isfinite(M).all():
        raise NumericalError("non-finite values in a LoRA update", fix="check the adapters for NaN/Inf")
    return torch.linalg.svd(M, full_matrices=False)


def thin_svd(M: torch.Tensor, rtol: float | None = None) -> Svd:
    """Thin SVD of a dense matrix in float64 over its non-zero spectrum.

    The default tolerance follows M's own precision (see rank_tolerance).
    """
    if rtol is None:
        rtol = rank_tolerance(tuple(M.shape), M)
    return drop_zero_spectrum(*checked_svd(M.to(torch.float64)), rtol)


def lowrank_svd(B: torch.Tensor, A: torch.Tensor, rtol: float | None = None) -> Svd:
    """Thin SVD of B @ A (d_out × d_in) from its factors: U (d_out × n), S (n), Vh (n × d_in).

    B = Q_b R_b and Aᵀ = Q_a R_a, so B A = Q_b (R_b R_aᵀ) Q_aᵀ and only the r×r core is decomposed.
    Computed in float64; the default zero cut-off follows the factors' precision (see rank_tolerance).
    """
    Qb, Rb = torch.linalg.qr(B.to(torch.float64))
    Qa, Ra = torch.linalg.qr(A.to(torch.float64).T)
    Uc, S, Vhc = checked_svd(Rb @ Ra.T)
    if rtol is None:
        rtol = rank_tolerance((B.shape[0], A.shape[1]), B, A)
    return drop_zero_spectrum(Qb @ Uc, S, Vhc @ Qa.T, rtol)


def nearest_orthogonal(M: torch.Tensor) -> torch.Tensor:
    """Closest matrix with orthonormal columns (rows, if wide) in Frobenius norm: M = P S Qᵀ → P Qᵀ."""
    P, _, Qh = checked_svd(M.to(torch.float64))
    return P @ Qh
