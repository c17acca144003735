"""Forward stepwise pruning: greedy, but every step is scored jointly, so interacting modules are caught.

Round 0 scores the full merge and every module pruned alone (as `greedy` does). The search then starts
from the best single pruning (when it beats the full merge) and, round after round, tries adding each of
the `width` modules with the largest single gains not yet pruned; it keeps the best of them if it beats
the current mask, and stops when none does or the ρ budget is reached. `greedy` prunes all individually
helpful modules at once and collapses when they interact (the paper's point); here each addition must
help together with what is already pruned. Cost: T·G + 1 masks, then at most `width` per step.
"""

from __future__ import annotations

import numpy as np

from ..options import Option, Options
from .base import Candidate, Strategy, register
from .greedy import single_prunings


@register("stepwise")
class StepwiseStrategy(Strategy):
    summary = "forward stepwise pruning: start from the single prunings, add one module at a time, jointly scored"
    OPTIONS = Options(Option("width", int, 6, "modules tried at each step (those with the largest single gains)",
                             low=1))

    def __init__(self, shape, **settings):
        super().__init__(shape, **settings)
        self._require_budget()
        self.width = self.options["width"]
        self.order: list[int] = []  # modules with a positive single gain, largest first
        self.current = np.ones(self.n_modules, dtype=bool)
        self.current_fitness = -np.inf
        self.finished = False

    @property
    def n_generations(self) -> int:
        return 1 + self.budget

    @property
    def done(self) -> bool:
        return self.finished or self.generation >= self.n_generations

    def _tried(self) -> list[int]:
        """This step's additions: the best remaining modules by single gain."""
        return [i for i in self.order if self.current[i]][: self.width]

    def _ask(self) -> list[Candidate]:
        if self.generation == 0:
            return [Candidate(self._full(), tag="full")] + single_prunings(self.shape)
        out = []
        for i in self._tried():
            keep = self.current.copy()
            keep[i] = False
            out.append(Candidate(keep.reshape(self.shape), tag="step"))
        return out

    def _tell(self, cands, outcomes) -> None:
        fits = np.array([o.fitness for o in outcomes])
        if self.generation == 0:
            with np.errstate(invalid="ignore"):
                gains = fits[1:] - fits[0]
            gains[~np.isfinite(gains)] = -np.inf  # a failed probe (or full merge) is never pruned
            self.order = [int(i) for i in np.argsort(-gains, kind="stable") if gains[i] > 0]
            if not self.order:
                self.finished = True
                return
            self.current[self.order[0]] = False
            self.current_fitness = float(fits[1 + self.order[0]])
        else:
            best = int(np.argmax(fits))  # the first of equals: deterministic
            if not fits[best] > self.current_fitness:
                self.finished = True
                return
            self.current = cands[best].mask.ravel().copy()
            self.current_fitness = float(fits[best])
        self.finished = int((~self.current).sum()) >= self.budget or not self._tried()
