"""Greedy-pruning baseline (reproduced faithfully, including its weakness).

Round 0 scores every module alone: the full mask plus each single-module pruning. A module's gain is
F(pruned alone) − F(full). Round 1 prunes every module with positive gain, largest first, at most
⌊ρ·T·G⌋ of them. The paper shows this collapses: modules interact, so individually harmful modules are
not jointly harmful. Round 0 has T·G + 1 candidates whatever ``popsize`` says.

Option `min_t` (default 0: the paper's rule) prunes only modules whose gain is above `min_t` paired
standard errors (per-example differences against the full merge): fewer modules, each with more evidence.
Option `stability` (default 0: off) prunes only modules that the rule selects in at least that share of
bootstrap resamples of the examples (stability selection): the luckiest singles of one split drop out.
"""

from __future__ import annotations

import numpy as np

from ..options import Option, Options
from .base import Candidate, Decision, Strategy, register
from .effects import selection_frequency, single_effects


def single_prunings(shape: tuple[int, int], examples=None) -> list[Candidate]:
    """One candidate per module: the full merge with only that module pruned (task-major order)."""
    n = shape[0] * shape[1]
    out = []
    for i in range(n):
        keep = np.ones(n, dtype=bool)
        keep[i] = False
        out.append(Candidate(keep.reshape(shape), tag="probe", examples=examples))
    return out


@register("greedy")
class GreedyStrategy(Strategy):
    summary = "the paper's greedy baseline: prune every module that helps when pruned alone (up to the ρ budget)"
    OPTIONS = Options(
        Option("min_t", float, 0.0, "prune only modules whose gain alone is above this many paired standard errors "
               "(0: any positive gain, the paper's rule)", low=0),
        Option("stability", float, 0.0, "prune only modules selected in at least this share of bootstrap "
               "resamples of the examples (0: off)", low=0, high=1),
        Option("max_pruned", int, None, "prune at most this many modules (null: the ρ budget)", low=1,
               nullable=True),
    )
    DRAWS = 200  # bootstrap resamples for `stability` (the share moves by ~0.03 between seeds of the resampler)

    def __init__(self, shape, **settings):
        super().__init__(shape, **settings)
        self._require_budget()
        self.cap = self.budget if self.options["max_pruned"] is None else min(self.budget, self.options["max_pruned"])
        self.gains: np.ndarray | None = None  # (T, G) after round 0; -inf where unknown
        self.final: np.ndarray | None = None  # the rule's mask, asked in round 1

    @property
    def n_generations(self) -> int:
        return 2

    def _ask(self) -> list[Candidate]:
        if self.generation == 0:
            return [Candidate(self._full(), tag="full")] + single_prunings(self.shape)
        keep = np.ones(self.n_modules, dtype=bool)
        gains = self.gains.ravel()
        order = np.argsort(-gains, kind="stable")[: self.cap]
        keep[order[gains[order] > 0]] = False
        self.final = keep.reshape(self.shape)
        return [Candidate(self.final.copy(), tag="final")]

    def _tell(self, cands, outcomes) -> None:
        if self.generation == 0:
            # a failed probe (or a failed full merge) gives no usable gain (−inf): that module is never pruned
            effects = single_effects(outcomes[0], outcomes[1:])
            gains = effects.gain.copy()
            if self.options["min_t"] > 0:
                gains[gains <= self.options["min_t"] * effects.se] = -np.inf
            if self.options["stability"] > 0:
                share = selection_frequency(outcomes[0], outcomes[1:], self.cap, self.DRAWS,
                                            np.random.default_rng(self.seed))
                gains[share < self.options["stability"]] = -np.inf
            self.gains = gains.reshape(self.shape)

    def decide(self, full_fitness: float) -> Decision:
        """The rule's mask (every module that helped alone, up to the budget), as the paper defines greedy
        pruning — not the best single pruning, whose score is the luckiest of T·G."""
        return Decision(self._full() if self.final is None else self.final.copy())
