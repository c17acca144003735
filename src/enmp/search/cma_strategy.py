"""ENMP's search (the paper's method): CMA-ES (pycma) over one negativity score per module.

The latent z ∈ R^{T·G} decodes to a mask with ``masking.decode`` (prune the ⌊ρ·T·G⌋ largest positive
scores). The mean starts at −1, so the first generation is (mostly) the full merge.

Above `FULL_COVARIANCE_MAX` modules (100 adapters on an 80-layer model are 8,000) pycma's full covariance
costs O(D²) memory and time per generation (measured, population 8: 1.5 GB and 1.35 s per generation at
D = 8,000, where 32,000 would need ~24 GB), so `evolution_strategy` switches to pycma's own diagonal
variant (``CMA_diagonal: True``, linear in D) and says so. At the paper's sizes (6 × 32 = 192 modules, or
768–1,344 with projection grouping) nothing changes: the same pycma call, bit for bit.
"""

from __future__ import annotations

import math
import numbers
import warnings

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


#: full covariance up to this many modules (pycma, population 8: 77 ms per generation and ~90 MB at 2,000;
#: 320 ms and ~370 MB at 4,000); above it the diagonal variant (6 ms per generation at 8,000, 21 ms at 32,000)
FULL_COVARIANCE_MAX = 2000
DIAGONAL_CHOICES = ("auto", True, False)


def use_diagonal(n: int, diagonal="auto") -> bool:
    """Whether CMA-ES over `n` modules runs with a diagonal covariance (`diagonal`: "auto", true or false)."""
    if not any(diagonal is c or (isinstance(c, str) and diagonal == c) for c in DIAGONAL_CHOICES):
        raise EnmpError(f"diagonal must be auto, true or false, got {diagonal!r}", where="search.options.diagonal",
                        fix=f"write diagonal: auto (diagonal above {FULL_COVARIANCE_MAX} modules), true or false")
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
    """Paper defaults: mean −1, σ0 = 0.5, population 16, 60 generations; options ``sigma0``, ``mean0`` and
    ``diagonal`` (auto: diagonal covariance above `FULL_COVARIANCE_MAX` modules; ``es_note`` says so)."""

    OPTIONS = frozenset({"sigma0", "mean0", "diagonal"})

    def __init__(self, shape, *, sigma0: float = 0.5, mean0=-1.0, diagonal="auto", **kw):
        super().__init__(shape, sigma0=sigma0, mean0=mean0, diagonal=diagonal, **kw)
        self._require_budget()
        self.sigma0 = positive_float(sigma0, "sigma0")
        self.mean0 = latent_mean0(mean0, self.n_modules)
        self.es_note = covariance_note(self.n_modules, diagonal)
        self.es = evolution_strategy(self.mean0, self.sigma0, self.popsize, self.seed, diagonal)

    def _ask(self) -> list[Candidate]:
        return [Candidate(decode(z, self.rho, self.shape), np.array(z, dtype=float))
                for z in self.es.ask()]

    def _tell(self, cands, fits) -> None:
        losses = [FAILED_PENALTY if f == -math.inf else -float(f) for f in fits]
        self.es.tell([c.z for c in cands], losses)
