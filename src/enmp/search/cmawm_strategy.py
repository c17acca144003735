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

import math

import numpy as np

from ..errors import EnmpError
from ..masking import decode
from .base import Candidate, Strategy, register
from .cma_strategy import FAILED_PENALTY, FULL_COVARIANCE_MAX, latent_mean0, positive_float


@register("cmawm")
class CmaWmStrategy(Strategy):
    """Options: ``sigma0`` (default 0.3), ``mean0`` in [0, 1] (default 0 = full merge)."""

    OPTIONS = frozenset({"sigma0", "mean0"})

    def __init__(self, shape, *, sigma0: float = 0.3, mean0=0.0, **kw):
        super().__init__(shape, sigma0=sigma0, mean0=mean0, **kw)
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
        self.sigma0 = positive_float(sigma0, "sigma0")
        self.mean0 = latent_mean0(mean0, self.n_modules)
        if ((self.mean0 < 0) | (self.mean0 > 1)).any():
            raise EnmpError("mean0 must lie in [0, 1] for cmawm (0 = keep, 1 = prune)", where="mean0")
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

    def _tell(self, cands, fits) -> None:
        self.opt.tell([(c.z, FAILED_PENALTY if f == -math.inf else -float(f)) for c, f in zip(cands, fits)])
