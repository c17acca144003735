"""ENMP's search (the paper's method): CMA-ES (pycma) over one negativity score per module.

The latent z ∈ R^{T·G} decodes to a mask with ``masking.decode`` (prune the ⌊ρ·T·G⌋ largest positive
scores). The mean starts at −1, so the first generation is (mostly) the full merge. Every candidate is
scored on the whole validation split and the best-ever mask is the answer, exactly as in the paper.
"""

from __future__ import annotations

import numpy as np

from ..masking import decode
from ..options import Option, Options
from .base import Candidate, Strategy, register
from .pycma import DIAGONAL, SIGMA0, covariance_note, evolution_strategy, latent_mean0, losses


@register("cma")
class CmaStrategy(Strategy):
    """Paper defaults: mean −1, σ0 = 0.5, population 16, 60 generations."""

    summary = "the paper's ENMP: CMA-ES over one score per module, every candidate on the whole validation split"
    OPTIONS = Options(
        SIGMA0,
        Option("mean0", float, -1.0, "initial mean of every latent score (−1: start from the full merge)",
               sequence=True),
        DIAGONAL,
    )

    def __init__(self, shape, **settings):
        super().__init__(shape, **settings)
        self._require_budget()
        o = self.options
        self.sigma0 = o["sigma0"]
        self.mean0 = latent_mean0(o["mean0"], self.n_modules)
        self.es_note = covariance_note(self.n_modules, o["diagonal"])
        self.es = evolution_strategy(self.mean0, self.sigma0, self.popsize, self.seed, o["diagonal"])

    def _ask(self) -> list[Candidate]:
        return [Candidate(decode(z, self.rho, self.shape), np.array(z, dtype=float)) for z in self.es.ask()]

    def _tell(self, cands, outcomes) -> None:
        self.es.tell([c.z for c in cands], losses(o.fitness for o in outcomes))
