"""`fast`: ENMP's CMA-ES with a calibrated start, racing on validation folds, early stop and a held-out check.

The paper's search (`cma`) scores every candidate on the whole validation split and keeps the best of
hundreds of noisy scores, whose gain is partly the winner's curse. `fast` keeps the same latent and decode
(pycma over one score per module, prune the ⌊ρ·T·G⌋ largest positive) and changes how candidates are
scored and chosen:

* the validation split is cut into folds (`Subset.folds`, seeded by the split's own seed); the last
  `confirm_folds` are held out until the very end;
* optional warm start (`probe: true`): every module is first pruned alone and scored on the first racing
  block; its paired gain over the full merge (in standard errors, t) sets its initial mean σ0·(t − 2);
* calibrated start (`start_pruned`): the initial mean is set so that a first-generation candidate prunes
  `start_pruned` modules on average, whatever T·G is (`start_pruned: null` keeps `cma`'s −1);
* racing: each generation is scored block by block; a candidate goes on to the next block only while its
  upper confidence bound (paired, per example) over the incumbent is above zero; CMA-ES is told each
  candidate's paired estimate;
* early stop after `patience` generations without a new incumbent;
* final choice: the masks `final` names (`final_choice`) are scored on the held-out folds against the full
  merge; the best of them is returned only if it beats the full merge there by more than `confirm_z`
  standard errors, else the full merge. That margin is the best of several contenders on a few examples:
  the report quotes it, but it overstates the gain to expect (see the replicate benchmark).
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from ..errors import EnmpError
from ..masking import decode, keep_from_str, keep_to_str
from ..options import Option, Options
from .base import Candidate, Decision, Estimate, Strategy, ValidationData, register
from .evidence import Evidence
from .final_choice import FINAL_CHOICES, final_contenders
from .greedy import single_prunings
from .outcome import Subset, check_fold_sizes
from .pycma import SIGMA0, calibrated_mean0, evolution_strategy, losses

# stages, race_z, probe, start_pruned and final (with voters) were chosen on a development split of the demo
# tasks' validation data (every third validation example held out; `benchmarks/quality.py --dev`), never on
# their test split.
OPTIONS = Options(
    SIGMA0,
    Option("folds", int, 8, "folds the validation split is cut into", low=3),
    Option("confirm_folds", int, 2, "folds held out for the final check", low=1),
    Option("stages", int, 2, "racing blocks the search folds are grouped into", low=1),
    Option("race_z", float, 2.0, "a candidate races on while mean + race_z·SE over the incumbent > 0", low=0),
    Option("patience", int, 4, "generations without a new incumbent before stopping", low=1),
    Option("probe", bool, False, "warm start from every module pruned alone (T·G probes)"),
    Option("probe_limit", int, 512, "no probes above this many modules", low=0),
    Option("contenders", int, 3, "best masks put to the held-out check", low=1),
    Option("start_pruned", float, 2.0, "modules a first-generation candidate prunes on average (null: cma's "
           "mean −1)", low=0, low_open=True, nullable=True),
    Option("final", str, "union", "which masks go to the held-out check", choices=tuple(FINAL_CHOICES)),
    Option("voters", int, 8, "best masks whose majority makes the consensus mask", low=1),
    Option("confirm_z", float, 0.0, "margin in standard errors a contender must beat the full merge by", low=0),
)
LEVEL = 0.9  # the interval the report quotes around the held-out margin


@register("fast")
class FastStrategy(Strategy):
    summary = "CMA-ES with racing on validation folds, early stop and a held-out check (the earlier default)"
    OPTIONS = OPTIONS

    def __init__(self, shape, **settings):
        super().__init__(shape, **settings)
        self._require_budget()
        o = self.options
        self.sigma0, self.n_folds, self.stages = o["sigma0"], o["folds"], o["stages"]
        self.n_confirm = o["confirm_folds"]
        if self.n_confirm + self.stages > self.n_folds:
            raise EnmpError(f"{self.n_folds} folds cannot hold {self.n_confirm} held-out folds and {self.stages} "
                            "racing stages of at least one fold each", where="search.options",
                            fix="use more folds, fewer stages or fewer confirm_folds")
        self.probe = o["probe"] and self.n_modules <= o["probe_limit"]
        start = o["start_pruned"]
        self.mean_start = -1.0 if start is None else calibrated_mean0(
            min(start, self.budget), self.n_modules, self.sigma0)
        self.phase = "start"  # start (probes) → race (stage by stage, generation by generation) → final → done
        self.es = None
        self.es_generation = self.stage = self.stale = 0
        self.population: list[dict] = []  # this generation: z, mask, fitness, alive
        self.full_fitness: dict[str, float] = {}  # masks scored on every search fold → their fitness there
        self.incumbent: str | None = None
        self._decision = Decision(self._full())
        self._held_out: list[str] = []  # the masks put to the held-out check, chosen once when racing ends

    @property
    def n_generations(self) -> int:
        """An upper bound on ask/tell rounds (for progress bars): probes, every stage of every generation, final."""
        return 2 + self.generations * self.stages

    @property
    def done(self) -> bool:
        return self.phase == "done"

    @property
    def reference_fitness(self):
        return None if self.incumbent is None else self.full_fitness[self._full_key]

    # ------------------------------------------------------------------ start
    def validate(self, data: ValidationData) -> None:
        super().validate(data)
        check_fold_sizes(data.sizes, self.n_folds, self.name)

    def start(self, data: ValidationData) -> None:
        super().start(data)
        if data.full is None or data.full.failed:
            raise EnmpError("the full merge failed (NaN/Inf) on the validation split", where="search 'fast'",
                            fix="check the adapters and merge hyperparameters")
        folds = Subset.folds(data.sizes, self.n_folds, data.seed)
        search = np.arange(self.n_folds - self.n_confirm)
        self.blocks = [Subset.union([folds[i] for i in b], f"racing block {s + 1}/{self.stages}")
                       for s, b in enumerate(np.array_split(search, self.stages))]
        self.seen = [Subset.union(self.blocks[: s + 1], f"racing blocks 1–{s + 1}") for s in range(self.stages)]
        self.search_all, self.confirm = self.seen[-1], Subset.union(folds[len(search):], "held-out folds")
        self.evidence = Evidence(data.sizes)
        self._full_key = keep_to_str(self._full())
        self.evidence.add(self._full_key, Subset.everything(data.sizes), data.full)
        self._set_incumbent(self._full_key)
        if not self.probe:
            self._start_search(np.full(self.n_modules, self.mean_start))

    def _start_search(self, mean0: np.ndarray) -> None:
        self.es = evolution_strategy(mean0, self.sigma0, self.popsize, self.seed)
        self.phase = "race"

    # ------------------------------------------------------------------ ask
    def _ask(self) -> list[Candidate]:
        if self.data is None:
            raise RuntimeError("search 'fast' needs start(ValidationData) before its first ask")
        if self.phase == "start":
            return single_prunings(self.shape, examples=self.blocks[0])
        if self.phase == "race":
            if self.stage == 0:
                self.population = [{"z": np.array(z, dtype=float), "mask": decode(z, self.rho, self.shape),
                                    "alive": True} for z in self.es.ask()]
            return [Candidate(m["mask"], m["z"], examples=self.blocks[self.stage]) for m in self.population
                    if m["alive"]]
        return [Candidate(keep_from_str(k), tag="final", examples=self.confirm) for k in self._held_out]

    # ------------------------------------------------------------------ tell
    def _track_best(self, cands, outcomes) -> None:
        """The incumbent is managed here: only masks scored on every search fold compete."""

    def _tell(self, cands, outcomes) -> None:
        for cand, out in zip(cands, outcomes):
            self.evidence.add(keep_to_str(cand.mask), cand.examples, out)
        getattr(self, f"_tell_{self.phase}")(cands, outcomes)

    def _tell_start(self, cands, outcomes) -> None:
        mean0 = np.full(self.n_modules, self.mean_start)
        for i, (cand, out) in enumerate(zip(cands, outcomes)):
            if not out.failed:
                gain, se = self.evidence.margin(keep_to_str(cand.mask), self._full_key, self.blocks[0])
                t = gain / se if se > 0 else math.copysign(3.0, gain) if gain else 0.0
                mean0[i] = self.sigma0 * float(np.clip(t - 2.0, -3.0, 3.0))
        self._start_search(mean0)

    def _tell_race(self, cands, outcomes) -> None:
        seen = self.seen[self.stage]
        for m in (m for m in self.population if m["alive"]):
            key = keep_to_str(m["mask"])
            if key not in self.evidence or not self.evidence.covers(key, seen):  # failed (NaN/Inf)
                m.update(alive=False, fitness=-math.inf)
                continue
            mean, se = self.evidence.margin(key, self.incumbent, seen)
            m["fitness"] = self.full_fitness[self.incumbent] + mean  # the paired estimate on what it saw
            m["alive"] = key != self.incumbent and mean + self.options["race_z"] * se > 0
            if m["alive"] and self.stage == self.stages - 1:
                m["alive"] = False
                self.full_fitness[key] = self.evidence.fitness(key, self.search_all)
        self.stage += 1
        if self.stage < self.stages and any(m["alive"] for m in self.population):
            return
        self.es.tell([m["z"] for m in self.population], losses(m["fitness"] for m in self.population))
        best = max(self.full_fitness, key=self.full_fitness.get)
        if self.full_fitness[best] > self.full_fitness[self.incumbent]:
            self._set_incumbent(best)
            self.stale = 0
        else:
            self.stale += 1
        self.es_generation += 1
        self.stage = 0
        if self.es_generation >= self.generations or self.stale >= self.options["patience"]:
            o = self.options
            self.phase = "final"
            self._held_out = final_contenders(o["final"], self.full_fitness, self.evidence, self._full_key,
                                              self.blocks[0], o["contenders"], o["voters"])
            if not self._held_out:
                self._finish(None, "no mask beat the full merge on the search folds")

    def _tell_final(self, cands, outcomes) -> None:
        best, best_margin, best_se = None, 0.0, 0.0
        for cand, out in zip(cands, outcomes):
            if not out.failed:
                margin, se = self.evidence.margin(keep_to_str(cand.mask), self._full_key, self.confirm)
                if margin > max(best_margin, self.options["confirm_z"] * se):
                    best, best_margin, best_se = cand.mask, margin, se
        if best is None:
            self._finish(None, "no contender beat the full merge on the held-out folds")
        else:
            z = NormalDist().inv_cdf(0.5 + LEVEL / 2)
            estimate = Estimate(best_margin, best_margin - z * best_se, best_margin + z * best_se, LEVEL,
                                f"the best of {len(cands)} contender(s) on the held-out folds "
                                f"({sum(self.confirm.sizes)} examples)")
            self._finish(best, f"{FINAL_CHOICES[self.options['final']]} beat the full merge on the held-out folds "
                               f"by {best_margin:.2f}", estimate)

    # ------------------------------------------------------------------ helpers
    def _set_incumbent(self, key: str) -> None:
        self.incumbent = key
        self.full_fitness.setdefault(key, self.evidence.fitness(key, self.search_all))
        self.best = Candidate(keep_from_str(key))
        self.best_fitness = self.full_fitness[key]

    def _finish(self, mask: np.ndarray | None, why: str, estimate: Estimate | None = None) -> None:
        text = f"kept the found mask: {why}" if mask is not None else f"returned the full merge: {why}"
        self._decision = Decision(self._full() if mask is None else mask.copy(), text, estimate)
        self.phase = "done"

    def decide(self, full_fitness: float) -> Decision:
        return self._decision
