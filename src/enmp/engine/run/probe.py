"""`enmp probe`: the paper's pilot study on a user's own merge — what removing each module does, and whether
the harmful ones add up when removed together.

Every module is pruned alone and scored on the validation split beside the full merge (T·G + 1 evaluations:
the same singles greedy pruning starts from). Then the interaction check: the k most helpful single
prunings together, and (given a finished run) the run's own mask, each scored once; their measured gain is
set against the sum of their single gains. A sum far above the measurement is why pruning every
individually harmful module does not work (the paper's argument for searching masks instead).
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from rich.console import Console
from rich.progress import Progress

from ...config import RunConfig
from ...masking import Mask
from ...search.effects import single_effects
from ...search.greedy import single_prunings
from .search_run import default_evaluator_factory
from ..loading.inputs import load_inputs

SIGNIFICANT_Z = 1.96  # a module whose single gain is this many paired standard errors above 0 is marked


def probe_cost(n_modules: int, top: int, with_mask: bool) -> int:
    """Evaluations the probe runs on the validation split: the full merge, each single pruning, the joints."""
    return 1 + n_modules + len(joint_sizes(n_modules, top)) + int(with_mask)


def joint_sizes(n_modules: int, top: int) -> list[int]:
    """The interaction check's joint prunings: the 2, 3, …, `top` most helpful single modules together."""
    return list(range(2, min(top, n_modules) + 1))


def probe(cfg: RunConfig, *, top: int = 5, mask: Optional[Mask] = None, console: Optional[Console] = None) -> dict:
    """Score every single pruning and the joint checks; returns the probe's data (what probe.json holds)."""
    console = console or Console(stderr=True)
    inputs = load_inputs(cfg, log=console.log)
    tasks, groups = inputs.task_names, list(inputs.groups)
    if mask is not None:
        mask = mask.check_matches(tasks, groups)
    shape = (len(tasks), len(groups))
    n = shape[0] * shape[1]
    console.print(f"probe: {probe_cost(n, top, mask is not None)} evaluations of the validation split "
                  f"({n} single prunings of {shape[0]} tasks × {shape[1]} groups, the full merge, "
                  f"{len(joint_sizes(n, top))} joint checks{', the run mask' if mask is not None else ''})")
    ev = default_evaluator_factory(cfg, console.log)(inputs, cfg.merge.method, cfg.merge.params())
    with ev:
        full = ev.evaluate(np.ones(shape, dtype=bool), "val")
        singles = []
        with Progress(console=console, transient=True) as bar:
            job = bar.add_task("single prunings", total=n)
            for start in range(0, n, 8):  # a few at a time: the bar moves, workers stay busy
                batch = single_prunings(shape)[start:start + 8]
                singles += ev.evaluate_many([c.mask for c in batch], "val")
                bar.advance(job, len(batch))
        effects = single_effects(full, singles)
        order = [int(i) for i in np.argsort(-effects.gain, kind="stable") if effects.gain[i] > 0]
        joints = []
        for k in joint_sizes(n, top):
            if len(order) >= k:
                joints.append(_joint(ev, shape, order[:k], effects.gain, full.fitness, f"top {k}"))
        if mask is not None:
            pruned = [int(i) for i in np.flatnonzero(~mask.keep.ravel())]
            joints.append(_joint(ev, shape, pruned, effects.gain, full.fitness, "the run's mask"))
    labels = [[tasks[i // shape[1]], groups[i % shape[1]]] for i in range(n)]
    data = {"tasks": tasks, "layers": groups, "method": cfg.merge.method, "params": cfg.merge.params().to_dict(),
            "full_fitness": full.fitness, "examples_per_task": list(ev.val_sizes),
            "gain": _floats(effects.gain.reshape(shape)), "se": _floats(effects.se.reshape(shape)),
            "significant": (effects.t > SIGNIFICANT_Z).reshape(shape).tolist(),
            "task_gain": {t: _floats(effects.task_gain[:, i].reshape(shape)) for i, t in enumerate(tasks)},
            "task_se": {t: _floats(effects.task_se[:, i].reshape(shape)) for i, t in enumerate(tasks)},
            "ranked": [{"module": labels[i], "gain": float(effects.gain[i]), "se": float(effects.se[i])}
                       for i in order],
            "joints": joints, "cost": ev.search_cost.to_json()}
    return data


def _joint(ev, shape, pruned: list[int], gains: np.ndarray, full_fitness: float, name: str) -> dict:
    keep = np.ones(shape[0] * shape[1], dtype=bool)
    keep[pruned] = False
    measured = ev.evaluate(keep.reshape(shape), "val").fitness - full_fitness
    return {"name": name, "modules": pruned, "sum_of_single_gains": float(gains[pruned].sum()),
            "measured_gain": float(measured)}


def _floats(a: np.ndarray) -> list:
    """JSON-safe: non-finite values (a failed single pruning, an unknown SE) become null."""
    return [[float(v) if np.isfinite(v) else None for v in row] for row in a]
