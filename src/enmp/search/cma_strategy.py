"""ENMP's search (the paper's method): CMA-ES (pycma) over one negativity score per module.

The latent z ∈ R^{T·G} decodes to a mask with ``masking.decode`` (prune the ⌊ρ·T·G⌋ largest positive
scores). The mean starts at −1, so the first generation is (mostly) the full merge.
"""

from __future__ import annotations

import math
import numbers

import cma
import numpy as np

from ..errors import EnmpError
from ..masking import decode
from .base import Candidate, Strategy, register

# pycma minimises −fitness; a failed candidate gets this finite penalty (pycma rejects NaN/inf).
FAILED_PENALTY = 1e9


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


def latent_mean0(value, n: int, where: str = "mean0") -> np.ndarray:
    """A scalar or length-n initial mean, checked finite."""
    arr = np.asarray(value, dtype=float)
    if arr.ndim == 0:
        arr = np.full(n, float(arr))
    if arr.shape != (n,) or not np.isfinite(arr).all():
        raise EnmpError(f"{where} must be a finite number or {n} finite numbers", where=where)
    return arr


def positive_float(value, where: str) -> float:
    if (not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value)
            or value <= 0):
        raise EnmpError(f"{where} must be a finite number > 0, got {value!r}", where=where,
                        fix="set it to a positive number such as 0.5")
    return float(value)


@register("cma")
class CmaStrategy(Strategy):
    """Paper defaults: mean −1, σ0 = 0.5, population 16, 60 generations; options ``sigma0``, ``mean0``."""

    OPTIONS = frozenset({"sigma0", "mean0"})

    def __init__(self, shape, *, sigma0: float = 0.5, mean0=-1.0, **kw):
        super().__init__(shape, sigma0=sigma0, mean0=mean0, **kw)
        self._require_budget()
        self.sigma0 = positive_float(sigma0, "sigma0")
        self.mean0 = latent_mean0(mean0, self.n_modules)
        self.es = cma.CMAEvolutionStrategy(self.mean0, self.sigma0, cma_options(self.popsize, self.seed))

    def _ask(self) -> list[Candidate]:
        return [Candidate(decode(z, self.rho, self.shape), np.array(z, dtype=float))
                for z in self.es.ask()]

    def _tell(self, cands, fits) -> None:
        losses = [FAILED_PENALTY if f == -math.inf else -float(f) for f in fits]
        self.es.tell([c.z for c in cands], losses)
