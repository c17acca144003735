"""Random-pruning baseline: each candidate prunes exactly ``n_prune`` modules drawn uniformly at random.

Same budget as ENMP (generations × popsize). The default ``n_prune`` is the ρ budget ⌊ρ·T·G⌋; the runner
can set it to the sparsity ENMP actually found, which is how the paper's random baseline is matched.
"""

from __future__ import annotations

import numpy as np

from ..errors import EnmpError
from .base import Candidate, Strategy, check_int, register


@register("random")
class RandomStrategy(Strategy):
    OPTIONS = frozenset({"n_prune"})

    def __init__(self, shape, *, n_prune: int | None = None, **kw):
        super().__init__(shape, n_prune=n_prune, **kw)
        if n_prune is None:
            self._require_budget()
            n_prune = self.budget
        self.n_prune = check_int(n_prune, "n_prune", 0, where="n_prune")
        if self.n_prune > self.n_modules:
            raise EnmpError(f"n_prune = {self.n_prune} exceeds the {self.n_modules} modules", where="n_prune")
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

    def _tell(self, cands, fits) -> None:
        """Nothing to learn: the base class already keeps the best-ever mask."""
