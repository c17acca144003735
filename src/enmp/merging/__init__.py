"""Merge methods: pure tensor functions on LoRA factors, one module per method, registry by name."""

from __future__ import annotations

from typing import Sequence

import torch

from ..errors import EnmpError, NumericalError
from .base import MergeParams, TaskDelta, available_methods, get_method, register, stable_seed

__all__ = ["MergeParams", "TaskDelta", "available_methods", "get_method", "merge", "register",
           "stable_seed", "validate_params"]


def validate_params(method: str, params: MergeParams) -> None:
    """Reject out-of-range hyperparameters with one clear line (flag names match the CLI)."""
    info = get_method(method)
    if not (params.lam == params.lam) or abs(params.lam) == float("inf"):
        raise EnmpError(f"λ must be a finite number, got {params.lam}", where="--lam",
                        fix="pass a number such as 0.3 (the paper uses 0.1–1.2)")
    if not 0.0 < params.top_k <= 100.0:
        raise EnmpError(f"top-k must be a percentage in (0, 100], got {params.top_k}", where="--top-k",
                        fix="pass the percent of entries kept, e.g. 80")
    if not 0.0 <= params.drop_rate < 1.0:
        raise EnmpError(f"DARE drop rate must be in [0, 1), got {params.drop_rate}", where="--drop-rate",
                        fix="pass a probability such as 0.1")
    if params.inner is not None:
        if not info.inner_choices:
            raise EnmpError(f"method '{method}' takes no inner method", where="--inner",
                            fix="use --inner only with knots or core_space")
        if params.inner not in info.inner_choices:
            raise EnmpError(f"unknown inner method '{params.inner}' for {method}", where="--inner",
                            fix=f"choose one of: {', '.join(info.inner_choices)}")


def resolve_params(method: str, params: MergeParams) -> MergeParams:
    """Fill the method's default inner method so cache keys and reports name it explicitly."""
    info = get_method(method)
    if info.default_inner and params.inner is None:
        params = params.replace(inner=info.default_inner)
    return params


def merge(method: str, deltas: Sequence[TaskDelta], params: MergeParams,
          shape: tuple[int, int]) -> torch.Tensor:
    """Merge the kept tasks' updates of one matrix into one float32 ΔW of `shape`.

    No kept task gives exactly zeros (the layer stays bit-identical to the base weight).
    """
    if not deltas:
        return torch.zeros(shape, dtype=torch.float32)
    info = get_method(method)
    out = info.fn(deltas, resolve_params(method, params))
    if params.iso:
        from .iso_c import flatten_spectrum

        out = flatten_spectrum(out)
    out = out.to(torch.float32).contiguous()
    if not torch.isfinite(out).all():
        raise NumericalError(f"merge '{method}' produced NaN/Inf", where=deltas[0].seed_key or None,
                             fix="check the adapters for NaN/Inf and the hyperparameters")
    return out
