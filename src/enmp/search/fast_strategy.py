"""`fast`: ENMP's CMA-ES with a warm start, racing on validation folds, early stop and a held-out final check.

The paper's search (`cma`) scores every candidate on the whole validation split and keeps the best of
hundreds of noisy scores, whose gain is partly the winner's curse. `fast` keeps the same latent and decode
(pycma over one score per module, prune the ⌊ρ·T·G⌋ largest positive) and changes how candidates are
scored and chosen:

* the validation split is cut into folds; the last `confirm_folds` are held out until the very end;
* optional warm start (`probe: true`): every module is first pruned alone and scored on the first search
  folds; its paired gain over the full merge (in standard errors, t) sets its initial mean σ0·(t − 2), so a
  clearly negative module starts likely pruned and a neutral one as unlikely as under `cma`'s mean of −1
  (off by default: on the development split it did not pay for its T·G probes);
* calibrated start (`start_pruned`): without probes the initial mean is set so that a first-generation
  candidate prunes `start_pruned` modules on average, whatever T·G is (`cma`'s mean of −1 prunes a fixed
  ~2 % of the modules: well under one module at small T·G, so early generations re-score the full merge);
  `start_pruned: null` keeps `cma`'s −1;
* racing: each generation is scored fold block by fold block; a candidate goes on to the next block only
  while its upper confidence bound (paired, per example) over the incumbent is above zero, so most
  candidates cost a fraction of the data; CMA-ES is told each candidate's paired estimate;
* early stop after `patience` generations without a new incumbent;
* final choice: the masks `final` names (`final_choice`: the `contenders` best by the search folds, the
  consensus of the `voters` best, a surrogate's, or all of them) are scored on the held-out folds against
  the full merge; the best of them is returned only if it beats the full merge there by more than
  `confirm_z` standard errors, else the full merge is returned (and the report says so).
"""

from __future__ import annotations

import math
import numbers
from statistics import NormalDist

import numpy as np

from ..errors import EnmpError
from ..masking import decode, keep_from_str, keep_to_str
from .base import Candidate, Strategy, check_int, register
from .cma_strategy import FAILED_PENALTY, evolution_strategy, positive_float
from .final_choice import FINAL_CHOICES, final_contenders
from .racing import FoldScores, paired_margin, pooled_fitness

# stages, race_z, probe, start_pruned and final (with voters) were chosen on a development split of the demo
# tasks' validation data (every third validation example held out; `benchmarks/quality.py --dev`, replayed
# under each final choice by `benchmarks/final_choice.py`), never on their test split.
DEFAULTS = {"sigma0": 0.5, "folds": 8, "confirm_folds": 2, "stages": 2, "race_z": 2.0, "patience": 4,
            "probe": False, "probe_limit": 512, "contenders": 3, "start_pruned": 2.0, "final": "union",
            "voters": 8, "confirm_z": 0.0}


def calibrated_mean0(expected_pruned: float, n_modules: int, sigma0: float) -> float:
    """The latent mean at which each of `n_modules` scores N(mean, σ0²) is positive with probability
    expected_pruned / n_modules, so a candidate prunes `expected_pruned` modules on average."""
    p = min(max(expected_pruned / n_modules, 1e-9), 0.5)
    return sigma0 * float(NormalDist().inv_cdf(p))


def _nonneg_float(value, where: str) -> float:
    if (not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value)
            or value < 0):
        raise EnmpError(f"{where} must be a finite number ≥ 0, got {value!r}", where=where,
                        fix="set it to a number such as 1.0 (standard errors)")
    return float(value)


@register("fast")
class FastStrategy(Strategy):
    """Options (search.options): the keys of `DEFAULTS`; `generations` bounds the CMA-ES generations."""

    OPTIONS = frozenset(DEFAULTS)

    def __init__(self, shape, **kw):
        options = {k: kw.pop(k) for k in DEFAULTS if k in kw}
        super().__init__(shape, **options, **kw)
        self._require_budget()
        o = {**DEFAULTS, **options}
        self.sigma0 = positive_float(o["sigma0"], "sigma0")
        self.n_folds = check_int(o["folds"], "folds", 3, where="search.options.folds")
        self.stages = check_int(o["stages"], "stages", 1, where="search.options.stages")
        confirm = check_int(o["confirm_folds"], "confirm_folds", 1, where="search.options.confirm_folds")
        if confirm + self.stages > self.n_folds:
            raise EnmpError(f"{self.n_folds} folds cannot hold {confirm} held-out folds and {self.stages} racing "
                            "stages of at least one fold each", where="search.options",
                            fix="use more folds, fewer stages or fewer confirm_folds")
        self.race_z = _nonneg_float(o["race_z"], "search.options.race_z")
        self.patience = check_int(o["patience"], "patience", 1, where="search.options.patience")
        self.contenders = check_int(o["contenders"], "contenders", 1, where="search.options.contenders")
        if not isinstance(o["final"], str) or o["final"] not in FINAL_CHOICES:
            raise EnmpError(f"final must be one of {', '.join(FINAL_CHOICES)}, got {o['final']!r}",
                            where="search.options.final", fix="write final: " + " or final: ".join(FINAL_CHOICES))
        self.final_rule = o["final"]
        self.voters = check_int(o["voters"], "voters", 1, where="search.options.voters")
        self.confirm_z = _nonneg_float(o["confirm_z"], "search.options.confirm_z")
        probe_limit = check_int(o["probe_limit"], "probe_limit", 0, where="search.options.probe_limit")
        if not isinstance(o["probe"], bool):
            raise EnmpError(f"probe must be true or false, got {o['probe']!r}", where="search.options.probe",
                            fix="write probe: true or probe: false")
        self.probe = o["probe"] and self.n_modules <= probe_limit
        start = o["start_pruned"]
        self.mean_start = -1.0 if start is None else calibrated_mean0(
            min(positive_float(start, "search.options.start_pruned"), self.budget), self.n_modules, self.sigma0)
        search = np.arange(self.n_folds - confirm)
        self.blocks = [tuple(int(f) for f in b) for b in np.array_split(search, self.stages)]
        self.search_folds = tuple(int(f) for f in search)
        self.confirm_folds = tuple(range(self.n_folds - confirm, self.n_folds))
        self.phase = "start"  # start → race (stage by stage, generation by generation) → final → done
        self.es = None
        self.es_generation = self.stage = self.stale = 0
        self.population: list[dict] = []  # this generation: z, mask, per-fold scores, alive
        self.scores: dict[str, FoldScores] = {}  # mask → fold → per-task normalized per-example scores
        self.full_fitness: dict[str, float] = {}  # masks scored on every search fold → their fitness there
        self.incumbent: str | None = None
        self.decision = ""
        self._final: np.ndarray | None = None
        self._held_out: list[str] = []  # the masks put to the held-out check, chosen once when racing ends

    @classmethod
    def validation_folds(cls, options: dict) -> int:
        return int(options.get("folds", DEFAULTS["folds"]))

    @property
    def n_generations(self) -> int:
        """An upper bound on ask/tell rounds (for progress bars): start, every stage of every generation, final."""
        return 2 + self.generations * self.stages

    @property
    def done(self) -> bool:
        return self.phase == "done"

    def _may_become_best(self, cand: Candidate) -> bool:
        return False  # the incumbent is managed here: only masks scored on every search fold compete

    def final_mask(self, full_fitness: float) -> np.ndarray:
        return self._full() if self._final is None else self._final.copy()

    # ------------------------------------------------------------------ ask
    def _ask(self) -> list[Candidate]:
        if self.phase == "start":
            cands = [Candidate(self._full(), tag="full", folds=self.search_folds)]
            if self.probe:
                for i in range(self.n_modules):
                    keep = np.ones(self.n_modules, dtype=bool)
                    keep[i] = False
                    cands.append(Candidate(keep.reshape(self.shape), tag="probe", folds=self.blocks[0]))
            return cands
        if self.phase == "race":
            if self.stage == 0:
                self.population = [{"z": np.array(z, dtype=float), "mask": decode(z, self.rho, self.shape),
                                    "alive": True} for z in self.es.ask()]
            return [Candidate(m["mask"], m["z"], folds=self.blocks[self.stage]) for m in self.population
                    if m["alive"]]
        return [Candidate(self._full(), tag="full", folds=self.confirm_folds)] + [
            Candidate(keep_from_str(k), tag="final", folds=self.confirm_folds) for k in self._held_out]

    # ------------------------------------------------------------------ tell
    def _tell(self, cands: list[Candidate], fits: np.ndarray) -> None:
        for cand, fit, scores in zip(cands, fits, self._fold_scores):
            if scores is not None and np.isfinite(fit):
                self.scores.setdefault(keep_to_str(cand.mask), {}).update(scores)
        getattr(self, f"_tell_{self.phase}")(cands, fits)

    def _tell_start(self, cands, fits) -> None:
        full = keep_to_str(self._full())
        if not np.isfinite(fits[0]):
            raise EnmpError("the full merge failed (NaN/Inf) on the validation folds", where="search 'fast'",
                            fix="check the adapters and merge hyperparameters")
        self._set_incumbent(full)
        mean0 = np.full(self.n_modules, self.mean_start)
        if self.probe:
            for i, (cand, fit) in enumerate(zip(cands[1:], fits[1:])):
                if np.isfinite(fit):
                    gain, se = paired_margin(self.scores[keep_to_str(cand.mask)], self.scores[full], self.blocks[0])
                    t = gain / se if se > 0 else math.copysign(3.0, gain) if gain else 0.0
                    mean0[i] = self.sigma0 * float(np.clip(t - 2.0, -3.0, 3.0))
        self.es = evolution_strategy(mean0, self.sigma0, self.popsize, self.seed)
        self.phase = "race"

    def _tell_race(self, cands, fits) -> None:
        inc = self.scores[self.incumbent]
        seen = [f for block in self.blocks[: self.stage + 1] for f in block]
        for m in (m for m in self.population if m["alive"]):
            key = keep_to_str(m["mask"])
            scores = self.scores.get(key)
            if scores is None or not all(f in scores for f in seen):  # failed (NaN/Inf)
                m.update(alive=False, fitness=-math.inf)
                continue
            mean, se = paired_margin(scores, inc, seen)
            m["fitness"] = self.full_fitness[self.incumbent] + mean  # the paired estimate on what it saw
            m["alive"] = key != self.incumbent and mean + self.race_z * se > 0
            if m["alive"] and self.stage == self.stages - 1:
                m["alive"] = False
                self.full_fitness[key] = pooled_fitness(scores, self.search_folds)
        self.stage += 1
        if self.stage < self.stages and any(m["alive"] for m in self.population):
            return
        losses = [FAILED_PENALTY if m["fitness"] == -math.inf else -m["fitness"] for m in self.population]
        self.es.tell([m["z"] for m in self.population], losses)
        best = max(self.full_fitness, key=self.full_fitness.get)
        if self.full_fitness[best] > self.full_fitness[self.incumbent]:
            self._set_incumbent(best)
            self.stale = 0
        else:
            self.stale += 1
        self.es_generation += 1
        self.stage = 0
        if self.es_generation >= self.generations or self.stale >= self.patience:
            self.phase = "final"
            self._held_out = final_contenders(self.final_rule, self.full_fitness, self.scores,
                                              keep_to_str(self._full()), self.blocks[0], self.contenders, self.voters)
            if not self._held_out:
                self._finish(None, "no mask beat the full merge on the search folds")

    def _tell_final(self, cands, fits) -> None:
        full = self.scores[keep_to_str(self._full())]
        best, best_margin = None, 0.0
        for cand, fit in zip(cands[1:], fits[1:]):
            if np.isfinite(fit):
                margin, se = paired_margin(self.scores[keep_to_str(cand.mask)], full, self.confirm_folds)
                if margin > max(best_margin, self.confirm_z * se):
                    best, best_margin = cand.mask, margin
        if best is None:
            self._finish(None, "no contender beat the full merge on the held-out folds")
        else:
            self._finish(best, f"{FINAL_CHOICES[self.final_rule]} beat the full merge on the held-out folds by "
                               f"{best_margin:.2f}")

    # ------------------------------------------------------------------ helpers
    def _set_incumbent(self, key: str) -> None:
        self.incumbent = key
        self.full_fitness.setdefault(key, pooled_fitness(self.scores[key], self.search_folds))
        self.best = Candidate(keep_from_str(key))
        self.best_fitness = self.full_fitness[key]

    def _finish(self, mask: np.ndarray | None, why: str) -> None:
        self._final = None if mask is None else mask.copy()
        self.decision = (f"kept the found mask: {why}" if mask is not None else f"returned the full merge: {why}")
        self.phase = "done"
