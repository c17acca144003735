"""The merge methods by name: one explicit list, the checking of their parameters, and dispatch.

Each method declares its parameters in its own module (`MergeMethod.params`); this module only reads those
declarations. `method_params` is the one way a merge's hyperparameters are built from what a user gave (CLI
flags, a run config, the demo, recipes): unset values take the method's own defaults and every value is
checked once, here, against its declaration.
"""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch

from ..errors import EnmpError, NumericalError
from ..options import Options
from . import core_space, dare, iso_c, knots, ta, ties, tsv
from .base import MergeMethod, MergeParams, PerTaskCache, TaskDelta
from .iso_c import flatten_spectrum
from .params import ALIGN_THEN_PRUNE, COMMON, where

METHODS: dict[str, MergeMethod] = {m.name: m for m in (
    ta.METHOD, ties.METHOD, dare.DARE_TA, dare.DARE_TIES, tsv.METHOD, knots.METHOD, core_space.METHOD,
    iso_c.METHOD)}


def available_methods() -> list[str]:
    return sorted(METHODS)


def get_method(name: str) -> MergeMethod:
    if name not in METHODS:
        raise EnmpError(f"unknown merge method '{name}'", where="--method / merge.method",
                        fix=f"choose one of: {', '.join(available_methods())}")
    return METHODS[name]


def declared_options() -> Options:
    """Every parameter some method accepts, once each (the first declaration, in registry order; iso last):
    the `enmp merge` flags and the names a `merge:` section may hold."""
    global _union
    key = tuple((name, id(m)) for name, m in METHODS.items())  # rebuilt only when METHODS changes (tests add one)
    if _union is None or _union[0] != key:
        union = Options()
        for method in METHODS.values():
            union = union + method.params
        _union = (key, union + COMMON)
    return _union[1]


_union: tuple[tuple, Options] | None = None  # merges run thousands of times per search: build the union once


def declaring(name: str) -> list[str]:
    """The methods that accept parameter `name`, in registry order."""
    return [m.name for m in METHODS.values() if name in m.options]


def _either(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def _check_names(method: MergeMethod, names) -> None:
    """A parameter the method does not take is a mistake worth one line (it would change nothing)."""
    for name in names:
        if name in method.options:
            continue
        accepted = f"{method.name} accepts: {', '.join(method.options)}"
        others = declaring(name)
        if others:
            raise EnmpError(f"merge method '{method.name}' takes no {name}", where=where(name),
                            fix=f"use {name} only with {_either(others)} ({accepted})")
        raise EnmpError(f"unknown merge parameter '{name}'", where=f"merge.{name}", fix=accepted)


def method_params(method: str, **given: Any) -> MergeParams:
    """The full, checked hyperparameters of `method`: given values (None = unset) over its defaults.

    Every parameter it accepts is in the result (and nothing else). A value for a parameter the method
    does not take is an error naming the methods that do; None (a YAML null) passes for any parameter some
    method declares, so saved configs of earlier versions (null for the keys a method ignores) still load.
    """
    info, known = get_method(method), declared_options()
    _check_names(info, [name for name, value in given.items() if value is not None or name not in known])
    values = info.options.resolve({k: v for k, v in given.items() if v is not None}, "merge",
                                  owner=f"merge method '{method}'", where_of=where)
    return MergeParams(**values)


def _readable(info: MergeMethod, values: Mapping[str, Any]) -> dict[str, Any]:
    """`values` cut to what `info` reads, for records shared by several methods (`enmp merge` flags, a
    programmatic MergeParams): a plain setting it does not read (a number — scripts pass `--seed` to every
    method) is checked against its declaration and dropped; a variant it lacks (a choice such as inner or
    order) is an error, as is a name no method declares."""
    known = declared_options()
    _check_names(info, [k for k, v in values.items() if k not in known or (v is not None and k not in info.options
                                                                          and known[k].choices is not None)])
    for name, value in values.items():
        if name not in info.options and value is not None:
            known[name].check(value, where(name))
    return {k: v for k, v in values.items() if k in info.options}


def flag_params(method: str, **given: Any) -> MergeParams:
    """`method_params` for the `enmp merge` flags, one set shared by every method (see `_readable`)."""
    return method_params(method, **_readable(get_method(method), given))


def resolved(method: str, params: MergeParams | Mapping[str, Any]) -> MergeParams:
    """`params` checked for `method`, its defaults filled in (so cache keys and reports name every value).

    A programmatic record may serve several methods: values only other methods read are dropped (see
    `_readable`), so resolved records of equal merges are equal.
    """
    key = (method, params.cache_key()) if isinstance(params, MergeParams) else None
    info, hit = _resolved.get(key, (None, None))
    if hit is not None and info is METHODS.get(method):  # the same declaration (tests register their own)
        return hit
    values = params.to_dict() if isinstance(params, MergeParams) else dict(params)
    out = method_params(method, **_readable(get_method(method), values))
    if key is not None:
        if len(_resolved) >= 1024:  # a λ sweep makes a few dozen; bound a long-lived process anyway
            _resolved.clear()
        _resolved[key] = (METHODS[method], out)
    return out


# every merge resolves its params: a search's thousands of merges reuse one answer
_resolved: dict[tuple, tuple[MergeMethod, MergeParams]] = {}


def describe_defaults(method: str) -> str:
    """'lam=1.0, top_k=80.0' — for help texts and logs."""
    return ", ".join(f"{k}={v}" for k, v in get_method(method).defaults.items())


def merge(method: str, deltas: Sequence[TaskDelta], params: MergeParams,
          shape: tuple[int, int]) -> torch.Tensor:
    """Merge the kept tasks' updates of one matrix into one float32 ΔW of `shape` (prune-then-align).

    No kept task gives exactly zeros (the layer stays bit-identical to the base weight). `deltas` are only the
    kept tasks', so align-then-prune cannot be computed here: it is refused, use `merge_kept`.
    """
    params = resolved(method, params)
    if vars(params).get("order") == ALIGN_THEN_PRUNE:  # getattr would build an AttributeError message
        raise EnmpError(f"merge method '{method}' with order align_then_prune needs every task's update, not only "
                        "the kept ones", where="enmp.merging.merge",
                        fix="call merge_kept(method, all_deltas, kept, params, shape)")
    return _finish(method, params, lambda: get_method(method).combine(deltas, params), deltas, shape)


def merge_kept(method: str, deltas: Sequence[TaskDelta], kept: Sequence[int], params: MergeParams,
               shape: tuple[int, int], per_task_cache: Optional[PerTaskCache] = None) -> torch.Tensor:
    """Merge one matrix given every task's update (`deltas`, in task order) and the kept task indices.

    The entry point that is right for every method and order: prune-then-align (every method's default)
    merges only the kept updates, exactly as `merge` does; align-then-prune (KnOTS, CoreSpace) hands the
    method all updates and `kept`, so its shared basis comes from every task and the pruned tasks'
    aligned components are dropped before the inner merge. No kept task gives exactly zeros.
    `per_task_cache(task index, compute)` may hold the method's per-task step (`MergeMethod.per_task`) of these
    `deltas` across calls (the caller keys it by matrix and params): the result is bit for bit the same.
    """
    params = resolved(method, params)
    kept = [int(i) for i in kept]
    info, kept_deltas = get_method(method), [deltas[i] for i in kept]
    if vars(params).get("order") == ALIGN_THEN_PRUNE:  # getattr would build an AttributeError message
        compute = lambda: info.fn(deltas, params, kept=kept)  # noqa: E731
    else:
        compute = lambda: info.combine(kept_deltas, params, tasks=kept, cache=per_task_cache)  # noqa: E731
    return _finish(method, params, compute, kept_deltas, shape)


def _finish(method: str, params: MergeParams, compute, kept_deltas: Sequence[TaskDelta],
            shape: tuple[int, int]) -> torch.Tensor:
    """The steps every merge shares: zeros for no kept task, the iso post-step, float32, a finite check."""
    if not kept_deltas:
        return torch.zeros(shape, dtype=torch.float32)
    out = compute()
    if params.iso:
        out = flatten_spectrum(out)
    out = out.to(torch.float32).contiguous()
    if not torch.isfinite(out).all():
        raise NumericalError(f"merge '{method}' produced NaN/Inf", where=kept_deltas[0].seed_key or None,
                             fix="check the adapters for NaN/Inf and the hyperparameters")
    return out
