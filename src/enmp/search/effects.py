"""Single-module effects: what pruning each module alone does to the merge, with paired standard errors.

The paper's pilot study (its Fig. 2 and App. B) and greedy pruning both start here: the full merge and
every module pruned alone, scored on the same examples. A module's effect is the paired difference of
its single pruning and the full merge — on the fitness (mean normalized accuracy) and per task. Pure
numpy over `Outcome`s; no models.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Optional, Sequence

import numpy as np

from .evidence import paired_difference
from .outcome import Outcome


@dataclass
class SingleEffects:
    """Arrays over modules (task-major, as masks ravel): gain and its paired SE on the fitness; per task."""

    gain: np.ndarray  # (n_modules,) fitness(single) − fitness(full); −inf for a failed single pruning
    se: np.ndarray  # (n_modules,) paired standard error of `gain` (inf when unknown)
    task_gain: np.ndarray  # (n_modules, T) normalized accuracy change of each task
    task_se: np.ndarray  # (n_modules, T)

    @property
    def t(self) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.se > 0, self.gain / self.se, np.sign(self.gain) * np.inf)


def single_effects(full: Outcome, singles: Sequence[Outcome]) -> SingleEffects:
    """Effects from the full merge's and each single pruning's outcomes on the same examples. Outcomes that
    carry only a fitness value give gains without standard errors (inf)."""
    n = len(singles)
    gain = np.array([o.fitness - full.fitness if not (o.failed or full.failed) else -np.inf for o in singles])
    se, n_tasks = np.full(n, np.inf), len(full.correct) if full.correct is not None else 0
    task_gain, task_se = np.full((n, n_tasks), np.nan), np.full((n, n_tasks), np.inf)
    if full.correct is not None and not full.failed:
        base = full.per_example()
        for i, o in enumerate(singles):
            if o.failed or o.correct is None:
                continue
            diffs = [a - b for a, b in zip(o.per_example(), base)]
            se[i] = paired_difference(diffs)[1]
            for t, d in enumerate(diffs):
                task_gain[i, t] = d.mean()
                task_se[i, t] = d.std(ddof=1) / np.sqrt(d.size) if d.size > 1 else np.inf
    return SingleEffects(gain, se, task_gain, task_se)


def selection_frequency(full: Outcome, singles: Sequence[Outcome], budget: int, draws: int,
                        rng: np.random.Generator) -> np.ndarray:
    """How often each module is among the ≤ `budget` largest positive single gains when the examples are
    resampled (with replacement, within each task): stability selection. A module that only a lucky draw of
    examples puts on top is rarely selected; one whose gain is real is selected in most resamples."""
    base = full.per_example()
    ok = [not o.failed and o.correct is not None for o in singles]
    diffs = [[a - b for a, b in zip(o.per_example(), base)] if good else None for o, good in zip(singles, ok)]
    sizes = [len(b) for b in base]
    counts = np.zeros(len(singles))
    for _ in range(draws):
        picks = [rng.integers(0, n, n) for n in sizes]
        gains = np.array([np.mean([d[t][p].mean() for t, p in enumerate(picks)]) if d is not None else -np.inf
                          for d in diffs])
        top = np.argsort(-gains, kind="stable")[:budget]
        counts[top[gains[top] > 0]] += 1
    return counts / draws


def selected_estimate(observed: float, se: float, threshold: float, level: float,
                      beta: Optional[float] = None) -> tuple[float, float, float]:
    """(estimate, low, high) of a normal mean μ from one observation X ~ N(μ, se²) that was acted on only
    because it exceeded `threshold`: the hybrid median-unbiased estimate and its `level` interval (Andrews,
    Kitagawa & McCloskey, "Inference on winners"). Reporting X itself would repeat the winner's curse at the
    decision: among the runs that pass a test, the estimates that passed are the high ones. The purely
    conditional (truncated-normal) estimate fixes that but runs off to −∞ as X nears the threshold; the hybrid
    also conditions on μ lying within X ± c·se (c the two-sided 1 − β quantile, β = (1 − level)/10 by
    default), which keeps the estimate in that range at a cost of at most β in coverage terms."""
    nd = NormalDist()
    beta = (1 - level) / 10 if beta is None else beta
    c = nd.inv_cdf(1 - beta / 2)
    top = nd.cdf(c)

    def survival(mu: float) -> float:
        """P(X ≥ observed | threshold ≤ X, |X − μ| ≤ c·se; μ), increasing in μ on [observed ± c·se]."""
        floor = max(threshold, mu - c * se)
        mass = top - nd.cdf((floor - mu) / se)
        return (top - nd.cdf((observed - mu) / se)) / mass if mass > 1e-300 else 1.0

    def solve(p: float) -> float:
        lo, hi = observed - c * se, observed + c * se
        for _ in range(80):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if survival(mid) < p else (lo, mid)
        return (lo + hi) / 2

    alpha = 1 - level / (1 - beta)  # conditional on the projection event (probability ≥ 1 − β): overall ≥ `level`
    return solve(0.5), solve(alpha / 2), solve(1 - alpha / 2)
