"""Search strategies over task × group keep-masks: the ask/tell contract, best-ever tracking, registry.

A strategy knows nothing of models. It proposes keep-masks (bool, shape (T, G), True = keep), each on some
validation examples (`Candidate.examples`, None = all of them), and is told one `Outcome` per candidate:
per-example right/wrong and the fitness on those examples (higher is better). The runner drives it::

    s.start(ValidationData(sizes, seed, full))   # optional for strategies that need no data facts
    while not s.done:
        cands = s.ask()
        s.tell(cands, [evaluate(c.mask, c.examples) for c in cands])
    decision = s.decide(full_fitness)

`tell` also takes bare fitness values (pycma's `tell(X, f)`) for strategies that only read `fitness`.
Outcomes may come from the runner's cache, so a strategy must never assume fresh evaluations. A failed
candidate (fitness −inf) counts as the worst and never becomes best. A strategy is deterministic given its
seed, its `ValidationData` and the outcomes it is told, so a fresh one told the same outcomes again asks the
same candidates: that replay is how `--resume` restores it (no saved state).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, Optional, Sequence

import numpy as np

from ..errors import EnmpError
from ..masking import prune_budget
from ..options import Option, Options
from .outcome import Outcome, Subset

#: the settings every strategy takes (search.rho, .seed, .popsize, .generations), declared once
COMMON = Options(
    Option("rho", float, 0.2, "at most ⌊ρ·T·G⌋ modules are pruned", low=0, high=1, low_open=True, high_open=True),
    Option("seed", int, 1, "the strategy's own random generator (any integer ≥ 0 is reproducible)", low=0),
    Option("popsize", int, 16, "candidates per generation", low=2),
    Option("generations", int, 60, "generations (an upper bound for strategies that stop early)", low=1),
)


@dataclass(eq=False)
class Candidate:
    """One proposed mask, the examples to score it on, and the optimiser's sample behind it.

    ``z`` is what the optimiser learns from: for ``cma`` the latent that ``masking.decode`` turned into
    ``mask``; for ``cmawm`` its raw margin sample; None for strategies without a latent.
    """

    mask: np.ndarray  # bool (T, G), True = keep
    z: np.ndarray | None = None
    tag: str = ""  # what the candidate is for ("full", "probe", "final", …); "" for population members
    examples: Subset | None = None  # validation examples to score it on (None: the whole split)

    def copy(self) -> "Candidate":
        return Candidate(self.mask.copy(), None if self.z is None else self.z.copy(), self.tag, self.examples)


@dataclass(frozen=True)
class ValidationData:
    """What a strategy may know of the validation split before it asks: examples per task, the seed that drew
    them (strategies that cut folds draw from it too), and the full merge's outcome on all of them."""

    sizes: tuple[int, ...]
    seed: int = 0
    full: Optional[Outcome] = None


@dataclass(frozen=True)
class Estimate:
    """The expected gain on new data (mean normalized accuracy points) with a `level` interval, computed from
    validation examples the decision did not fit; `basis` says which."""

    value: float
    low: float
    high: float
    level: float
    basis: str

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "low": self.low, "high": self.high, "level": self.level, "basis": self.basis}


@dataclass
class Decision:
    """A search's answer: the mask, how it was chosen (reports print it), and the gain to expect from it."""

    mask: np.ndarray
    text: Optional[str] = None
    expected_gain: Optional[Estimate] = None
    details: dict = field(default_factory=dict)  # strategy-specific evidence, saved in report.json


class Strategy(ABC):
    """Base class: options, pending-candidate bookkeeping and best-ever tracking.

    Subclasses declare `OPTIONS` (typed, with defaults: validation, YAML, `--help` and the docs read them),
    implement ``_ask`` (new candidates for this round) and ``_tell`` (update from outcomes, failures already
    at −inf), and may override ``n_generations``, ``start`` and ``decide``. Every strategy seeds its own
    generator from ``seed`` (never the clock, never numpy's global state).
    """

    name: ClassVar[str] = ""
    summary: ClassVar[str] = ""  # one line for `--help` and the docs
    OPTIONS: ClassVar[Options] = Options()  # the strategy's own options (search.options)
    DEFAULTS: ClassVar[dict[str, Any]] = {}  # the strategy's own defaults of COMMON settings (e.g. a population)

    @classmethod
    def resolve_settings(cls, common: dict[str, Any], options: dict[str, Any]) -> tuple[dict, dict]:
        """Every common setting and option of this strategy: given values checked, the rest its defaults."""
        declared = Options(*(o.with_default(cls.DEFAULTS.get(name, o.default)) for name, o in COMMON.items()))
        return (declared.resolve(common, where="search"),
                cls.OPTIONS.resolve(options, where="search.options", owner=f"search '{cls.name}'"))

    def __init__(self, shape: tuple[int, int], **settings: Any):
        if (not isinstance(shape, (tuple, list)) or len(shape) != 2
                or any(not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < 1 for n in shape)):
            raise EnmpError(f"mask shape must be (tasks ≥ 1, groups ≥ 1), got {shape!r}", where="search")
        common, self.options = self.resolve_settings({k: settings.pop(k) for k in COMMON if k in settings}, settings)
        self.shape = (int(shape[0]), int(shape[1]))
        self.rho, self.seed = common["rho"], common["seed"]
        self.popsize, self.generations = common["popsize"], common["generations"]
        self.generation = 0
        self.data: Optional[ValidationData] = None
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
        """Total rounds this strategy will run (an upper bound, for progress displays)."""
        return self.generations

    @property
    def done(self) -> bool:
        return self.generation >= self.n_generations

    @property
    def reference_fitness(self) -> Optional[float]:
        """The full merge's fitness on the examples `best_fitness` was measured on (None: unknown): a gain
        over the full merge is best_fitness − reference_fitness."""
        return None if self.data is None or self.data.full is None else self.data.full.fitness

    def _require_budget(self) -> None:
        """Searches that prune by the ρ budget are pointless when it allows no module at all."""
        if self.budget < 1:
            raise EnmpError(f"ρ = {self.rho} allows no pruned module among {self.n_modules} "
                            f"(⌊ρ·T·G⌋ = 0)", where="--rho",
                            fix=f"use ρ ≥ {1 / self.n_modules:.3g} or the 'none' search")

    def _full(self) -> np.ndarray:
        return np.ones(self.shape, dtype=bool)

    # ------------------------------------------------------------------ the contract
    def validate(self, data: ValidationData) -> None:
        """Raise an EnmpError when this strategy cannot run on such a validation split (e.g. too few examples
        for its folds). Runners call it before writing anything; `start` calls it too."""
        if len(data.sizes) != self.shape[0]:
            raise ValueError(f"{len(data.sizes)} task sizes for a {self.shape[0]}-task search")

    def start(self, data: ValidationData) -> None:
        """Learn the validation split's facts before the first ask. The full merge's outcome, when given, is
        the best so far: a mask must beat it to become best."""
        self.validate(data)
        self.data = data
        if data.full is not None and not data.full.failed and self.best is None:
            self.best, self.best_fitness = Candidate(self._full(), tag="full"), data.full.fitness

    def ask(self) -> list[Candidate]:
        """This round's candidates. Asking again before ``tell`` returns the same candidates."""
        if self.done:
            raise RuntimeError(f"search '{self.name}' is done after {self.generation} rounds")
        if self._pending is None:
            self._pending = self._ask()
        return [c.copy() for c in self._pending]

    def tell(self, cands: Sequence[Candidate], results: Sequence[Outcome | float]) -> None:
        """Report the outcomes of the last ``ask``'s candidates, in the same order (Outcomes, or bare fitness
        values for strategies that read only fitness)."""
        pending = self._pending
        if pending is None:
            raise RuntimeError("tell() without a pending ask()")
        if len(cands) != len(pending) or len(results) != len(pending):
            raise ValueError(f"expected {len(pending)} candidates and outcomes, got {len(cands)} and {len(results)}")
        if any(not np.array_equal(c.mask, p.mask) for c, p in zip(cands, pending)):
            raise ValueError("tell() got candidates that differ from the last ask() (order matters)")
        outcomes = [Outcome.of(r) for r in results]
        for o in outcomes:
            if o.failed:
                o.fitness = -math.inf
        self._track_best(pending, outcomes)
        self._tell(pending, outcomes)
        self._pending = None
        self.generation += 1

    def _track_best(self, cands: Sequence[Candidate], outcomes: Sequence[Outcome]) -> None:
        """Best-ever among candidates scored on the whole split (strict: ties keep the earlier one; failures
        never win). Strategies that score on parts of the split track their own incumbent instead."""
        for cand, out in zip(cands, outcomes):
            if cand.examples is None and out.fitness > self.best_fitness:
                self.best, self.best_fitness = cand.copy(), float(out.fitness)

    def decide(self, full_fitness: float) -> Decision:
        """The search's answer: the best-ever mask if it beats the full merge's fitness, else the full merge."""
        if self.best is not None and self.best_fitness > full_fitness:
            return Decision(self.best.mask.copy())
        return Decision(self._full())

    @abstractmethod
    def _ask(self) -> list[Candidate]: ...

    @abstractmethod
    def _tell(self, cands: list[Candidate], outcomes: list[Outcome]) -> None: ...


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
