"""Shared types for merges: the hyperparameter record and the declaration every method module exports.

Every merge method is a pure function ``fn(deltas, params) -> Tensor`` that maps the *kept* tasks' LoRA
updates of one weight matrix to one dense float32 update ΔW (d_out × d_in). It never sees a model.
Prune-then-align: callers pass only kept tasks; an empty list must give exactly zeros.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping, Sequence

import torch

from ..adapters.types import TaskDelta

__all__ = ["MergeFn", "MergeMethod", "MergeParams", "TaskDelta", "stable_seed"]


@dataclass(frozen=True)
class MergeParams:
    """Every hyperparameter any method reads; a method reads only those it declares.

    The field values here are the neutral "switched off" settings (no trimming, no dropping), not any
    method's defaults: those live in each method's `MergeMethod.defaults`, and `method_params` applies
    them. lam: global scale λ. top_k: percent of entries kept by TIES trimming. drop_rate: DARE drop
    probability p. seed: run seed for DARE. inner: inner method for KnOTS / CoreSpace. iso: flatten the
    spectrum of the result (Iso-C style) after the method.
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


MergeFn = Callable[[Sequence[TaskDelta], MergeParams], torch.Tensor]

#: parameters every method accepts (the Iso-C post-step), beside the ones it declares
COMMON_PARAMS = MappingProxyType({"iso": False})


@dataclass(frozen=True)
class MergeMethod:
    """A method's one declaration: its function and the parameters it reads with their defaults.

    `defaults` is the single source of each method's default values: the CLI, run configs, the demo,
    recipes, dry-run and `--help` all read it (mergekit's registry is the model).
    """

    name: str
    fn: MergeFn
    description: str
    defaults: Mapping[str, Any]
    inner_choices: tuple[str, ...] = ()

    @property
    def uses(self) -> frozenset[str]:
        return frozenset(self.defaults)

    @property
    def default_inner(self) -> str | None:
        return self.defaults.get("inner")


def stable_seed(seed: int, key: str) -> int:
    """A 63-bit seed from (run seed, key) that does not depend on Python's hash randomisation."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
