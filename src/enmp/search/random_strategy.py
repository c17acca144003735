"""Random-pruning baseline: each candidate prunes exactly ``n_prune`` modules drawn uniformly at random.

Same budget as ENMP (generations × popsize). The default ``n_prune`` is the ρ budget ⌊ρ·T·G⌋; the runner
can set it to the sparsity ENMP actually found, which is how the paper's random baseline is matched.
"""

from __future__ import annotations

import numpy as np

from ..errors import EnmpError
from ..options import Option, Options
from .base import Candidate, Strategy, register


@register("random")
class RandomStrategy(Strategy):
    summary = "random masks pruning a fixed number of modules (the paper's random baseline, as a search)"
    OPTIONS = Options(Option("n_prune", int, None, "modules each mask prunes (null: the ρ budget)", low=0,
                             nullable=True))

    def __init__(self, shape, **settings):
        super().__init__(shape, **settings)
        n_prune = self.options["n_prune"]
        if n_prune is None:
            self._require_budget()
            n_prune = self.budget
        if n_prune > self.n_modules:
            raise EnmpError(f"n_prune = {n_prune} exceeds the {self.n_modules} modules", where="search.options.n_prune")
        self.n_prune = n_prune
        self.rng = np.random.default_rng(self.seed)

    def sample(self, count: int) -> list[np.ndarray]:
        """The next `count` random masks (also the runner's random-pruning baseline)."""
        masks = []
        for _ in range(count):
            keep = np.ones(self.n_modules, dtype=bool)
            keep[self.rng.choice(self.n_modules, size=self.n_prune, replace=False)] = False
            masks.append(keep.reshape(self.shape))
        return masks

    def _ask(self) -> list[Candidate]:
        return [Candidate(keep) for keep in self.sample(self.popsize)]

    def _tell(self, cands, outcomes) -> None:
        """Nothing to learn: the base class already keeps the best-ever mask."""
