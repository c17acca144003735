"""Shared types and the method registry for merges.

Every merge method is a pure function ``fn(deltas, params) -> Tensor`` that maps the *kept* tasks' LoRA
updates of one weight matrix to one dense float32 update ΔW (d_out × d_in). It never sees a model.
Prune-then-align: callers pass only kept tasks; an empty list must give exactly zeros.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from ..errors import EnmpError


@dataclass(frozen=True, eq=False)
class TaskDelta:
    """One task's low-rank update of one matrix: ΔW = scale · B @ A.

    ``seed_key`` names (task, matrix) so random per-entry choices (DARE) are drawn once per run from the
    run seed and reused by every candidate, whatever else is kept.
    """

    B: torch.Tensor  # d_out × r
    A: torch.Tensor  # r × d_in
    scale: float
    seed_key: str = ""

    @property
    def shape(self) -> tuple[int, int]:
        return (self.B.shape[0], self.A.shape[1])

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    def dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return (self.B.to(dtype) @ self.A.to(dtype)) * self.scale


@dataclass(frozen=True)
class MergeParams:
    """Hyperparameters shared by all methods (each method reads the ones it needs).

    lam: global scale λ. top_k: percent of entries kept by TIES trimming (100 = keep all).
    drop_rate: DARE drop probability p. seed: run seed for DARE. inner: inner method for KnOTS /
    CoreSpace. iso: flatten the spectrum of the result (Iso-C style) after the method.
    """

    lam: float = 1.0
    top_k: float = 100.0
    drop_rate: float = 0.0
    seed: int = 0
    inner: str | None = None
    iso: bool = False

    def replace(self, **changes) -> "MergeParams":
        return dataclasses.replace(self, **changes)

    def cache_key(self) -> tuple:
        return (self.lam, self.top_k, self.drop_rate, self.seed, self.inner, self.iso)


MergeFn = Callable[[Sequence[TaskDelta], MergeParams], torch.Tensor]


@dataclass(frozen=True)
class MethodInfo:
    name: str
    fn: MergeFn
    description: str
    uses: frozenset[str]  # which MergeParams fields matter (for validation and docs)
    inner_choices: tuple[str, ...] = ()
    default_inner: str | None = None


_REGISTRY: dict[str, MethodInfo] = {}


def register(name: str, *, description: str, uses: Sequence[str] = ("lam",),
             inner_choices: Sequence[str] = (), default_inner: str | None = None):
    def deco(fn: MergeFn) -> MergeFn:
        _REGISTRY[name] = MethodInfo(name, fn, description, frozenset(uses), tuple(inner_choices), default_inner)
        return fn

    return deco


def available_methods() -> list[str]:
    from . import _load_all  # noqa: F401  (import side effect: registers every method)

    return sorted(_REGISTRY)


def get_method(name: str) -> MethodInfo:
    from . import _load_all  # noqa: F401

    if name not in _REGISTRY:
        raise EnmpError(f"unknown merge method '{name}'", where="--method",
                        fix=f"choose one of: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def stable_seed(seed: int, key: str) -> int:
    """A 63-bit seed from (run seed, key) that does not depend on Python's hash randomisation."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def zeros_like_shape(deltas: Sequence[TaskDelta], shape: tuple[int, int] | None = None) -> torch.Tensor:
    if shape is None:
        shape = deltas[0].shape
    return torch.zeros(shape, dtype=torch.float32)
