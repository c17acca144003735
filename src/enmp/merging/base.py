"""Shared types for merges: the hyperparameter record and the declaration every method module exports.

Every merge method is a pure function ``fn(deltas, params) -> Tensor`` that maps the *kept* tasks' LoRA
updates of one weight matrix to one dense float32 update ΔW (d_out × d_in). It never sees a model.
Prune-then-align: callers pass only kept tasks; an empty list must give exactly zeros. A method that declares
`order` (params.ORDER) also accepts ``kept=``: given every task's updates and the kept indices it builds its
shared basis from all of them and merges only the kept ones (align-then-prune, see `registry.merge_kept`).
A method whose tasks each go through a step of their own first (TIES' trim, DARE's drop) declares that step as
`per_task`; its `fn` then combines the steps' results, and a caller that merges many kept sets may compute each
(task, matrix) result once (`merge_kept(..., per_task_cache=...)`).
"""

from __future__ import annotations

import hashlib
from functools import cached_property
from dataclasses import FrozenInstanceError, dataclass
from typing import Any, Callable, Mapping, Optional, Sequence

import torch

from ..adapters.types import TaskDelta
from ..options import Options
from .params import COMMON

__all__ = ["MergeFn", "MergeMethod", "MergeParams", "PerTaskCache", "PerTaskFn", "TaskDelta", "stable_seed"]


class MergeParams:
    """A merge's hyperparameter values by name, immutable: `MergeParams(lam=0.3, top_k=80.0)`.

    The record only carries values; which names exist, their types, ranges and defaults are declared by the
    methods (`MergeMethod.params`). A name not given is unset: `registry.resolved` fills in the method's
    default and drops values the method does not read, so resolved records of equal merges are equal.
    `params.lam` reads a value that is present (AttributeError otherwise); `vars(params)` is the record.
    """

    def __init__(self, **values: Any):
        clash = sorted(n for n in values if n.startswith("_") or hasattr(type(self), n))
        if clash:  # a value named like a method would hide it (params.replace)
            raise ValueError(f"invalid merge parameter name(s): {', '.join(clash)}")
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # only reached for names that are not present
        raise AttributeError(f"merge parameter '{name}' is not set in {self!r}; resolve the record for a method "
                             f"first (enmp.merging.resolved) to fill in its defaults")

    def __setattr__(self, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"MergeParams is immutable: use params.replace({name}=...)")

    def __delattr__(self, name: str) -> None:
        raise FrozenInstanceError("MergeParams is immutable")

    def replace(self, **changes: Any) -> "MergeParams":
        return MergeParams(**{**self.__dict__, **changes})

    def cache_key(self) -> tuple:
        """Hashable, equal for equal values whatever the order they were given in: (name, value, …) by name."""
        return tuple(x for item in sorted(self.__dict__.items()) for x in item)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MergeParams) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(self.cache_key())

    def __repr__(self) -> str:
        return f"MergeParams({', '.join(f'{k}={v!r}' for k, v in self.__dict__.items())})"


MergeFn = Callable[..., torch.Tensor]  # fn(deltas, params) (+ kept=... for methods that declare `order`)
PerTaskFn = Callable[[TaskDelta, "MergeParams"], torch.Tensor]  # one task's update on its own (trim, drop)
PerTaskCache = Callable[[int, Callable[[], torch.Tensor]], torch.Tensor]  # (task index, compute) → its result


@dataclass(frozen=True)
class MergeMethod:
    """A method's one declaration: its function and the parameters it reads, with its own defaults.

    `params` is the single source of the method's parameters: the CLI flags, run configs, validation, the
    demo, recipes, dry-run, `--help` and model cards all read it (mergekit's ConfigParameterDef is the model).
    `iso` (params.COMMON) is accepted by every method on top of these: the registry applies it.
    """

    name: str
    fn: MergeFn  # with `per_task`: fn(per-task results, params)
    description: str
    params: Options
    per_task: Optional[PerTaskFn] = None

    def __post_init__(self):
        nullable = [o.name for o in self.params.values() if o.nullable]
        if nullable:  # under `merge:` null means "the method's default", so a null value cannot mean anything else
            raise ValueError(f"merge method '{self.name}': parameters cannot be nullable ({', '.join(nullable)})")

    @cached_property  # read on every merge; the declaration is frozen, so built once
    def options(self) -> Options:
        """Everything the method accepts: its own parameters, then the common ones (iso)."""
        return self.params + COMMON

    @property
    def defaults(self) -> Mapping[str, Any]:
        """Its own parameters' defaults (without the common iso)."""
        return self.params.defaults

    @property
    def uses(self) -> frozenset[str]:
        return frozenset(self.params)

    def combine(self, deltas: Sequence[TaskDelta], params: "MergeParams", *, tasks: Sequence[int] = (),
                cache: Optional[PerTaskCache] = None) -> torch.Tensor:
        """`fn` on these updates, after the method's per-task step when it declares one; with `cache`, each
        step's result is `cache(task index, compute)` (`tasks`: the updates' indices among all tasks), so a
        caller merging many kept sets runs each (task, matrix) step once, bit for bit the same."""
        step = self.per_task
        if step is None:
            return self.fn(deltas, params)
        if cache is None:
            return self.fn([step(d, params) for d in deltas], params)
        return self.fn([cache(t, lambda d=d: step(d, params)) for t, d in zip(tasks, deltas, strict=True)], params)

    @property
    def inner_choices(self) -> tuple[str, ...]:
        return tuple(self.params["inner"].choices) if "inner" in self.params else ()

    @property
    def default_inner(self) -> str | None:
        return self.defaults.get("inner")


def stable_seed(seed: int, key: str) -> int:
    """A 63-bit seed from (run seed, key) that does not depend on Python's hash randomisation."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)
