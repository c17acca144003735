"""Shared TIES and DARE pieces: magnitude trimming, sign election, disjoint mean, seeded random drop."""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .base import stable_seed


def kept_count(numel: int, pct: float) -> int:
    """Entries kept by a top-pct % trim: rounded half up, and at least one for any positive pct."""
    return min(numel, max(1, math.floor(numel * pct / 100.0 + 0.5)))


def trim_top_k(x: torch.Tensor, pct: float) -> torch.Tensor:
    """Zero all but the top pct % entries of x by magnitude (per tensor; pct=100 keeps all).

    Exactly kept_count entries survive; among equal magnitudes at the threshold the lower flat index
    wins, so the result is deterministic. Uses kthvalue instead of a full sort (O(n) on big matrices).
    """
    n = x.numel()
    n_keep = kept_count(n, pct)
    if n_keep >= n:
        return x
    magnitude = x.abs().flatten()
    threshold = torch.kthvalue(magnitude, n - n_keep + 1).values
    above = magnitude > threshold
    at_threshold = magnitude == threshold
    room = n_keep - int(above.sum())
    keep = above | (at_threshold & (torch.cumsum(at_threshold, 0) <= room))
    return x * keep.view_as(x)


def elect_sign(stack: torch.Tensor) -> torch.Tensor:
    """Per-entry sign of the summed task values (TIES: the sign with the larger total mass); 0 on ties."""
    return torch.sign(stack.sum(0))


def disjoint_mean(stack: torch.Tensor, sign: torch.Tensor) -> torch.Tensor:
    """Per-entry mean of the values that agree with the elected sign; zeros never count; 0 where none."""
    agrees = (torch.sign(stack) == sign) & (sign != 0)
    total = (stack * agrees).sum(0)
    count = agrees.sum(0).clamp(min=1)
    return total / count


def ties_combine(trimmed: Sequence[torch.Tensor]) -> torch.Tensor:
    """TIES after the trim: elect signs, disjoint mean."""
    stack = torch.stack(list(trimmed))
    return disjoint_mean(stack, elect_sign(stack))


def ties_merge(dense: Sequence[torch.Tensor], top_k: float) -> torch.Tensor:
    """TIES without λ: trim each tensor, elect signs, disjoint mean."""
    return ties_combine([trim_top_k(x, top_k) for x in dense])


def dare_drop(x: torch.Tensor, p: float, seed: int, key: str) -> torch.Tensor:
    """Drop each entry with probability p and rescale survivors by 1/(1−p).

    The mask comes from a generator seeded by (run seed, key) alone, so a task's mask is the same in
    every candidate merge whatever else is kept, and fitness stays deterministic. The mask is drawn on
    the CPU, so it is also the same whichever device x lives on.
    """
    if p == 0:
        return x
    generator = torch.Generator().manual_seed(stable_seed(seed, key))
    survives = (torch.rand(x.shape, generator=generator) >= p).to(x.device)
    return x * survives / (1.0 - p)
