"""The shared pycma toolkit of every CMA-ES strategy: a seeded `randn`, options without stop rules, and the
one constructor (full covariance as in the paper, pycma's diagonal variant above `FULL_COVARIANCE_MAX`).

Above `FULL_COVARIANCE_MAX` modules (100 adapters on an 80-layer model are 8,000) pycma's full covariance
costs O(D²) memory and time per generation (measured, population 8: 1.5 GB and 1.35 s per generation at
D = 8,000, where 32,000 would need ~24 GB), so `evolution_strategy` switches to pycma's own diagonal
variant (``CMA_diagonal: True``, linear in D) and says so. At the paper's sizes (6 × 32 = 192 modules, or
768–1,344 with projection grouping) nothing changes: the same pycma call, bit for bit.
"""

from __future__ import annotations

import warnings
from statistics import NormalDist

import cma
import numpy as np

from ..errors import EnmpError
from ..options import Option

# pycma minimises −fitness; a failed candidate gets this finite penalty (pycma rejects NaN/inf).
FAILED_PENALTY = 1e9

#: full covariance up to this many modules (pycma, population 8: 77 ms per generation and ~90 MB at 2,000;
#: 320 ms and ~370 MB at 4,000); above it the diagonal variant (6 ms per generation at 8,000, 21 ms at 32,000)
FULL_COVARIANCE_MAX = 2000

#: the CMA-ES options strategies share (each may re-default them with `Option.with_default`)
SIGMA0 = Option("sigma0", float, 0.5, "initial step size σ0 of CMA-ES over the latent scores", low=0, low_open=True)
DIAGONAL = Option("diagonal", str, "auto", f"covariance: auto (diagonal above {FULL_COVARIANCE_MAX} modules), "
                  "true or false", choices=("auto", True, False))


class SeededRandn:
    """``randn`` for pycma from its own generator: runs are reproducible (and replayable on resume)
    independent of numpy's global state."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)

    def __call__(self, *shape: int) -> np.ndarray:
        return self.rng.standard_normal(shape)


def cma_options(popsize: int, seed: int) -> dict:
    """Fixed population, own RNG, no logs, and no stop rules: many latents decode to the same mask, so
    flat fitness is normal here and must not end the run; the generation count is driven by us."""
    return {"popsize": popsize, "seed": np.nan, "randn": SeededRandn(seed),
            "tolflatfitness": np.inf, "tolfun": 0, "tolfunhist": 0, "tolx": 0,
            "tolstagnation": np.inf, "tolxstagnation": [0, np.inf, 0], "maxiter": np.inf,
            "verb_log": 0, "verbose": -9, "verb_disp": 0}


def use_diagonal(n: int, diagonal="auto") -> bool:
    """Whether CMA-ES over `n` modules runs with a diagonal covariance (`diagonal`: "auto", true or false)."""
    return n > FULL_COVARIANCE_MAX if diagonal == "auto" else bool(diagonal)


def covariance_note(n: int, diagonal="auto") -> str:
    """One line for logs and reports when CMA-ES is not the paper's full-covariance one ("" when it is)."""
    if not use_diagonal(n, diagonal):
        return ""
    why = (f"{n} modules > {FULL_COVARIANCE_MAX}: a full covariance would take O(D²) memory"
           if diagonal == "auto" else "search.options.diagonal: true")
    return f"diagonal CMA-ES (pycma CMA_diagonal, linear memory) over {n} modules ({why})"


def evolution_strategy(mean0: np.ndarray, sigma0: float, popsize: int, seed: int,
                       diagonal="auto") -> cma.CMAEvolutionStrategy:
    """The one pycma constructor of every CMA-ES strategy: full covariance up to `FULL_COVARIANCE_MAX`
    modules (exactly the paper's call), pycma's diagonal variant above it (a warning says so)."""
    options = cma_options(popsize, seed)
    note = covariance_note(len(mean0), diagonal)
    if note:
        options["CMA_diagonal"] = True
        warnings.warn(note, UserWarning, stacklevel=2)
    return cma.CMAEvolutionStrategy(mean0, sigma0, options)


def calibrated_mean0(expected_pruned: float, n_modules: int, sigma0: float) -> float:
    """The latent mean at which each of `n_modules` scores N(mean, σ0²) is positive with probability
    expected_pruned / n_modules, so a candidate prunes `expected_pruned` modules on average (cma's mean of −1
    prunes a fixed ~2 % of the modules: well under one at small T·G, so early generations re-score the full
    merge)."""
    p = min(max(expected_pruned / n_modules, 1e-9), 0.5)
    return sigma0 * float(NormalDist().inv_cdf(p))


def latent_mean0(value, n: int, where: str = "search.options.mean0") -> np.ndarray:
    """A scalar or length-n initial mean, checked finite."""
    try:
        arr = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        arr = np.full(0, np.nan)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,) or not np.isfinite(arr).all() or isinstance(value, bool):
        raise EnmpError(f"mean0 must be a finite number or {n} finite numbers, got {value!r}", where=where,
                        fix="write mean0: -1.0 (the paper's start from the full merge)")
    return arr


def losses(fitnesses) -> list[float]:
    """pycma minimises: −fitness, with failures at the finite `FAILED_PENALTY`."""
    return [FAILED_PENALTY if f == -np.inf else -float(f) for f in fitnesses]
