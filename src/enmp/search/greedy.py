"""Greedy-pruning baseline (reproduced faithfully, including its weakness).

Generation 0 scores every module alone: the full mask plus each single-module pruning. A module's gain is
F(pruned alone) − F(full). Generation 1 prunes every module with positive gain, largest first, at most
⌊ρ·T·G⌋ of them. The paper shows this collapses: modules interact, so individually harmful modules are
not jointly harmful. Generation 0 has T·G + 1 candidates whatever ``popsize`` says.
"""

from __future__ import annotations

import numpy as np

from .base import Candidate, Strategy, register


@register("greedy")
class GreedyStrategy(Strategy):
    def __init__(self, shape, **kw):
        super().__init__(shape, **kw)
        self._require_budget()
        self.gains: np.ndarray | None = None  # (T, G) after generation 0; -inf where unknown

    @property
    def n_generations(self) -> int:
        return 2

    def _ask(self) -> list[Candidate]:
        if self.generation == 0:
            cands = [Candidate(self._full(), tag="full")]
            for i in range(self.n_modules):
                keep = np.ones(self.n_modules, dtype=bool)
                keep[i] = False
                cands.append(Candidate(keep.reshape(self.shape), tag="probe"))
            return cands
        keep = np.ones(self.n_modules, dtype=bool)
        gains = self.gains.ravel()
        order = np.argsort(-gains, kind="stable")[: self.budget]
        keep[order[gains[order] > 0]] = False
        return [Candidate(keep.reshape(self.shape), tag="final")]

    def _tell(self, cands, fits) -> None:
        if self.generation == 0:
            # A failed probe (or a failed full merge) gives no usable gain: that module is never pruned.
            with np.errstate(invalid="ignore"):
                gains = fits[1:] - fits[0]
            gains[~np.isfinite(gains)] = -np.inf
            self.gains = gains.reshape(self.shape)
