"""The merge methods by name: one explicit list, each method's parameters and defaults, and dispatch.

`method_params` is the one way a merge's hyperparameters are built from what a user gave (CLI flags, a
run config, the demo, recipes): unset values come from the method's own `defaults`, and every value is
checked once, here.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ..errors import EnmpError, NumericalError
from . import core_space, dare, iso_c, knots, ta, ties, tsv
from .base import COMMON_PARAMS, MergeMethod, MergeParams, TaskDelta
from .iso_c import flatten_spectrum

METHODS: dict[str, MergeMethod] = {m.name: m for m in (
    ta.METHOD, ties.METHOD, dare.DARE_TA, dare.DARE_TIES, tsv.METHOD, knots.METHOD, core_space.METHOD,
    iso_c.METHOD)}

#: the CLI flag of each parameter, named in error lines (run configs use the field name under `merge:`)
FLAGS = {"lam": "--lam", "top_k": "--top-k", "drop_rate": "--drop-rate", "seed": "--seed", "inner": "--inner",
         "iso": "--iso"}


def available_methods() -> list[str]:
    return sorted(METHODS)


def get_method(name: str) -> MergeMethod:
    if name not in METHODS:
        raise EnmpError(f"unknown merge method '{name}'", where="--method / merge.method",
                        fix=f"choose one of: {', '.join(available_methods())}")
    return METHODS[name]


def _where(name: str) -> str:
    return f"{FLAGS[name]} / merge.{name}"


def validate_params(method: str, params: MergeParams) -> None:
    """Reject out-of-range hyperparameters with one clear line."""
    info = get_method(method)
    if not math.isfinite(params.lam):
        raise EnmpError(f"λ must be a finite number, got {params.lam}", where=_where("lam"),
                        fix="pass a number such as 0.3 (the paper uses 0.1–1.2)")
    if not 0.0 < params.top_k <= 100.0:
        raise EnmpError(f"top-k must be a percentage in (0, 100], got {params.top_k}", where=_where("top_k"),
                        fix="pass the percent of entries kept, e.g. 80")
    if not 0.0 <= params.drop_rate < 1.0:
        raise EnmpError(f"DARE drop rate must be in [0, 1), got {params.drop_rate}", where=_where("drop_rate"),
                        fix="pass a probability such as 0.1")
    if params.seed < 0:
        raise EnmpError(f"seed must be ≥ 0, got {params.seed}", where=_where("seed"), fix="pass e.g. 0")
    if params.inner is not None:
        if not info.inner_choices:
            raise EnmpError(f"method '{method}' takes no inner method", where=_where("inner"),
                            fix="use an inner method only with knots or core_space")
        if params.inner not in info.inner_choices:
            raise EnmpError(f"unknown inner method '{params.inner}' for {method}", where=_where("inner"),
                            fix=f"choose one of: {', '.join(info.inner_choices)}")


def method_params(method: str, **given: Any) -> MergeParams:
    """The full hyperparameters of `method`: given values (None = unset) over the method's defaults.

    Values a method does not read are kept as given (they change nothing) so that one set of flags can
    be tried with several methods.
    """
    info = get_method(method)
    unknown = sorted(set(given) - set(FLAGS))
    if unknown:
        raise EnmpError(f"unknown merge parameter(s) {', '.join(unknown)}", where="merge",
                        fix=f"use: {', '.join(FLAGS)}")
    values = {**COMMON_PARAMS, **info.defaults, **{k: v for k, v in given.items() if v is not None}}
    params = MergeParams(**values)
    validate_params(method, params)
    return params


def resolved(method: str, params: MergeParams) -> MergeParams:
    """`params` checked, with the method's default inner method named (so cache keys and reports say it)."""
    return method_params(method, **params.to_dict())


def describe_defaults(method: str) -> str:
    """'lam=1.0, top_k=80.0' — for help texts and logs."""
    return ", ".join(f"{k}={v}" for k, v in get_method(method).defaults.items())


def merge(method: str, deltas: Sequence[TaskDelta], params: MergeParams,
          shape: tuple[int, int]) -> torch.Tensor:
    """Merge the kept tasks' updates of one matrix into one float32 ΔW of `shape`.

    No kept task gives exactly zeros (the layer stays bit-identical to the base weight).
    """
    if not deltas:
        return torch.zeros(shape, dtype=torch.float32)
    params = resolved(method, params)
    out = get_method(method).fn(deltas, params)
    if params.iso:
        out = flatten_spectrum(out)
    out = out.to(torch.float32).contiguous()
    if not torch.isfinite(out).all():
        raise NumericalError(f"merge '{method}' produced NaN/Inf", where=deltas[0].seed_key or None,
                             fix="check the adapters for NaN/Inf and the hyperparameters")
    return out

