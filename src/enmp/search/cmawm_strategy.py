"""Sample-efficient option (never the default): CMA-ES with Margin (``cmaes.CMAwM``) on binary variables.

Each module gets a binary variable x_i ∈ {0, 1} (1 = prune); the margin keeps every bit from freezing, which
plain CMA-ES on the latent decode cannot guarantee. The mean starts at 0 (keep everything). When a sample
turns on more than ⌊ρ·T·G⌋ bits, the mask prunes only the budget's worth with the largest raw values,
through ``masking.decode`` as for ENMP; the optimiser still learns from its raw sample.
Needs the optional ``cmaes`` package (``pip install enmp[fast]``). ``cmaes.CMAwM`` keeps a full covariance
and eigendecomposes it every generation (measured, population 8: 1.4 s per generation at 1,000 modules,
11 s and 0.7 GB at 2,000) and has no linear-memory variant, so above `FULL_COVARIANCE_MAX` modules it is
refused, pointing to `cma`/`fast`, which switch to diagonal CMA-ES there.
"""

from __future__ import annotations

import numpy as np

from ..errors import EnmpError
from ..masking import decode
from ..options import Option, Options
from .base import Candidate, Strategy, register
from .pycma import FULL_COVARIANCE_MAX, SIGMA0, latent_mean0, losses


@register("cmawm")
class CmaWmStrategy(Strategy):
    summary = "CMA-ES with Margin (cmaes.CMAwM) on one binary variable per module"
    OPTIONS = Options(
        SIGMA0.with_default(0.3),
        Option("mean0", float, 0.0, "initial mean of every bit in [0, 1] (0: keep everything)", low=0, high=1,
               sequence=True),
    )

    def __init__(self, shape, **settings):
        super().__init__(shape, **settings)
        self._require_budget()
        if self.n_modules > FULL_COVARIANCE_MAX:
            raise EnmpError(f"search 'cmawm' keeps a full {self.n_modules}×{self.n_modules} covariance and "
                            f"eigendecomposes it every generation; it is limited to {FULL_COVARIANCE_MAX} modules",
                            where="--strategy / search.strategy",
                            fix="use search 'cma' or 'fast' (diagonal CMA-ES at this size) or layer grouping")
        try:
            from cmaes import CMAwM
        except ImportError:
            raise EnmpError("search 'cmawm' needs the 'cmaes' package", where="--search",
                            fix="pip install 'enmp[fast]' or use --search cma") from None
        self.sigma0 = self.options["sigma0"]
        self.mean0 = latent_mean0(self.options["mean0"], self.n_modules)
        n = self.n_modules
        self.opt = CMAwM(mean=self.mean0.copy(), sigma=self.sigma0, bounds=np.tile([0.0, 1.0], (n, 1)),
                         steps=np.ones(n), seed=self.seed, population_size=self.popsize)

    def _ask(self) -> list[Candidate]:
        cands = []
        for _ in range(self.popsize):
            bits, raw = self.opt.ask()
            on = bits > 0.5
            # Positive scores only for switched-on bits, ordered by the raw sample (decode keeps the top k).
            score = np.where(on, raw - (raw[on].min() if on.any() else 0.0) + 1.0, -1.0)
            cands.append(Candidate(decode(score, self.rho, self.shape), raw.copy()))
        return cands

    def _tell(self, cands, outcomes) -> None:
        self.opt.tell(list(zip((c.z for c in cands), losses(o.fitness for o in outcomes))))
