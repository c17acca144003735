"""Search strategies over task × group keep-masks: the ask/tell contract, best-ever tracking, registry.

A strategy knows nothing of models. It proposes keep-masks (bool, shape (T, G), True = keep) and is told
their fitness (higher is better). The runner drives it::

    while not s.done:
        cands = s.ask()
        s.tell(cands, evaluate(cands))

Fitness values may come from the runner's cache, so a strategy must never assume fresh evaluations.
A non-finite fitness (NaN, ±inf) marks a failed candidate: it counts as the worst and never becomes best.
A strategy is deterministic given its seed and the fitnesses it is told, so a fresh one told the same
fitnesses again asks the same candidates: that replay is how `--resume` restores it (no saved state).
"""

from __future__ import annotations

import math
import numbers
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar, Sequence

import numpy as np

from ..errors import EnmpError
from ..masking import prune_budget


@dataclass(eq=False)
class Candidate:
    """One proposed mask and the optimiser's sample behind it.

    ``z`` is what the optimiser learns from: for ``cma`` the latent that ``masking.decode`` turned into
    ``mask``; for ``cmawm`` its raw margin sample; None for strategies without a latent.
    """

    mask: np.ndarray  # bool (T, G), True = keep
    z: np.ndarray | None = None
    tag: str = ""  # "full", "probe", "final" or "" for ordinary population members
    folds: tuple[int, ...] | None = None  # validation folds to score it on (None: the whole split)

    def copy(self) -> "Candidate":
        return Candidate(self.mask.copy(), None if self.z is None else self.z.copy(), self.tag, self.folds)


def check_int(value: Any, name: str, low: int, where: str | None = None) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
        raise EnmpError(f"{name} must be an integer ≥ {low}, got {value!r}", where=where or f"--{name}",
                        fix=f"set it to a whole number of at least {low}")
    return int(value)


class Strategy(ABC):
    """Base class: validation, pending-candidate bookkeeping and best-ever tracking.

    Subclasses implement ``_ask`` (new candidates for this generation) and ``_tell`` (update from fitness
    with failures already mapped to -inf), and may override ``n_generations`` and ``OPTIONS``.
    ``seed`` may be any integer ≥ 0: every strategy seeds its own generator from it (never the clock and
    never numpy's global state), so 0 is as reproducible as any other seed.
    """

    name: ClassVar[str] = ""
    decision: str = ""  # set by strategies that explain how they chose the final mask (reports print it)
    OPTIONS: ClassVar[frozenset[str]] = frozenset()  # extra keyword options this strategy accepts

    def __init__(self, shape: tuple[int, int], *, rho: float = 0.2, seed: int = 1, popsize: int = 16,
                 generations: int = 60, **options: Any):
        if (not isinstance(shape, (tuple, list)) or len(shape) != 2
                or any(not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1 for n in shape)):
            raise EnmpError(f"mask shape must be (tasks ≥ 1, groups ≥ 1), got {shape!r}", where="search")
        if (not isinstance(rho, numbers.Real) or isinstance(rho, bool) or not math.isfinite(rho)
                or not 0.0 < rho < 1.0):
            raise EnmpError(f"ρ must be a fraction in (0, 1), got {rho!r}", where="--rho")
        unknown = sorted(set(options) - self.OPTIONS)
        if unknown:
            raise EnmpError(f"search '{self.name}' has no option(s) {', '.join(unknown)}", where="search",
                            fix=f"accepted: {', '.join(sorted(self.OPTIONS)) or 'none'}")
        self.shape = (int(shape[0]), int(shape[1]))
        self.rho = float(rho)
        self.seed = check_int(seed, "seed", 0)
        self.popsize = check_int(popsize, "popsize", 2)
        self.generations = check_int(generations, "generations", 1)
        self.generation = 0
        self.best: Candidate | None = None
        self.best_fitness = -math.inf
        self._pending: list[Candidate] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def n_modules(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def budget(self) -> int:
        """At most this many modules are pruned by a decoded mask: k = ⌊ρ·T·G⌋."""
        return prune_budget(self.rho, self.n_modules)

    @property
    def n_generations(self) -> int:
        """Total generations this strategy will run (for progress displays)."""
        return self.generations

    @property
    def done(self) -> bool:
        return self.generation >= self.n_generations

    def _require_budget(self) -> None:
        """Searches that prune by the ρ budget are pointless when it allows no module at all."""
        if self.budget < 1:
            raise EnmpError(f"ρ = {self.rho} allows no pruned module among {self.n_modules} "
                            f"(⌊ρ·T·G⌋ = 0)", where="--rho",
                            fix=f"use ρ ≥ {1 / self.n_modules:.3g} or the 'none' search")

    def _full(self) -> np.ndarray:
        return np.ones(self.shape, dtype=bool)

    # ------------------------------------------------------------------ ask / tell
    def ask(self) -> list[Candidate]:
        """This generation's candidates. Asking again before ``tell`` returns the same candidates."""
        if self.done:
            raise RuntimeError(f"search '{self.name}' is done after {self.generation} generations")
        if self._pending is None:
            self._pending = self._ask()
        return [c.copy() for c in self._pending]

    @classmethod
    def validation_folds(cls, options: dict) -> int:
        """How many folds the validation split must be cut into for this strategy (0: it scores whole splits)."""
        return 0

    def final_mask(self, full_fitness: float) -> np.ndarray:
        """The search's answer: the best-ever mask if it beats the full merge (`full_fitness`), else the full
        merge. Strategies that decide otherwise (e.g. on held-out folds) override this."""
        if self.best is not None and self.best_fitness > full_fitness:
            return self.best.mask.copy()
        return self._full()

    def _may_become_best(self, cand: Candidate) -> bool:
        """Whether a candidate's fitness is comparable with the best-ever (all candidates, unless scored on
        part of the data)."""
        return True

    def tell(self, cands: Sequence[Candidate], fitnesses: Sequence[float],
             fold_scores: Sequence[np.ndarray | None] | None = None) -> None:
        """Report fitness (higher is better) for the candidates of the last ``ask``, in the same order.

        ``fold_scores`` (for candidates asked with ``folds``): per candidate a (tasks × folds) array of
        normalized accuracies on those folds, or None for a failed candidate.
        """
        pending = self._pending
        if pending is None:
            raise RuntimeError("tell() without a pending ask()")
        if len(cands) != len(pending) or len(fitnesses) != len(pending):
            raise ValueError(f"expected {len(pending)} candidates and fitnesses, got {len(cands)} and "
                             f"{len(fitnesses)}")
        if any(not np.array_equal(c.mask, p.mask) for c, p in zip(cands, pending)):
            raise ValueError("tell() got candidates that differ from the last ask() (order matters)")
        fits = np.array([float(f) for f in fitnesses], dtype=float)
        fits[~np.isfinite(fits)] = -math.inf
        for cand, fit in zip(pending, fits):
            # strict: ties keep the earlier candidate; failures never win
            if fit > self.best_fitness and self._may_become_best(cand):
                self.best, self.best_fitness = cand.copy(), float(fit)
        self._fold_scores = list(fold_scores) if fold_scores is not None else [None] * len(pending)
        self._tell(pending, fits)
        self._pending = None
        self.generation += 1

    @abstractmethod
    def _ask(self) -> list[Candidate]: ...

    @abstractmethod
    def _tell(self, cands: list[Candidate], fits: np.ndarray) -> None: ...


# ---------------------------------------------------------------------- registry
_REGISTRY: dict[str, type[Strategy]] = {}


def register(name: str):
    def deco(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return deco


def available_strategies() -> list[str]:
    return sorted(_REGISTRY)


def get_strategy(name: str) -> type[Strategy]:
    if name not in _REGISTRY:
        raise EnmpError(f"unknown search strategy '{name}'", where="--strategy / search.strategy",
                        fix=f"choose one of: {', '.join(available_strategies())}")
    return _REGISTRY[name]
