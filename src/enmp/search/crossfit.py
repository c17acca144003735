"""`crossfit`: a search whose answer is decided, and its gain estimated, on examples the search did not fit.

A search that keeps the best of many noisy validation scores reports its mask's luck along with its
merit, and one fixed validation split cannot average that luck out (see the statistics notes). `crossfit`
cuts the validation split into K folds (per task, seeded) and, for each fold k, runs an inner search
(`inner`: by default `greedy`, whose single prunings are scored once for all folds, with stability
selection; or the paper's CMA-ES or any other registered value-only strategy) on the other folds only.
Its mask M_k (the full merge when nothing beat it there) is then scored on fold k, which it never saw.
Every validation example is thus scored once by a mask chosen without it, and the paired per-example
differences against the full merge, pooled over the folds, estimate the gain the search delivers on new
data (ĝ) with its standard error — cross-fitting: every example used, none twice for one decision.

The decision is a one-sided test fixed before the held-out folds are read: if ĝ − z·se > 0 (z of the
one-sided `level`), the answer is `final` — `refit`: the inner search once more on all validation
examples (the usual choice after cross-validation), or `consensus`: the modules a majority of the M_k
prune (no further search) — else the full merge, and the report says why. The expected gain reported is
ĝ corrected for having passed that test (the hybrid median-unbiased estimate of
`effects.selected_estimate`) with its 90 % interval; when the full merge is returned it is exactly 0.
"""

from __future__ import annotations

import dataclasses
import math
from statistics import NormalDist
from typing import Optional

import numpy as np

from ..errors import EnmpError
from ..masking import keep_to_str
from ..options import Option, Options
from .base import Candidate, Decision, Estimate, Strategy, ValidationData, get_strategy, register
from .evidence import Evidence, paired_difference
from .effects import selected_estimate
from .greedy import GreedyStrategy, single_prunings
from .outcome import Outcome, Subset, check_fold_sizes
from .pycma import calibrated_mean0

#: inner searches that only read fitness values (they are told outcomes on the training folds)
INNER = ("cma", "stepwise", "greedy", "cmawm", "random")
#: inner searches that start from every single pruning: those are scored once on all validation examples,
#: and each fold's search reads its part (the engine serves a subset of examples it has already scored)
FROM_SINGLES = ("greedy", "stepwise")
LEVEL = 0.9  # the two-sided level of the reported interval
#: greedy's own options that crossfit passes on to an inner greedy search, with crossfit's defaults where they
#: differ (declared once, by greedy: types, ranges and help come from there)
INNER_GREEDY = {"min_t": 0.0, "stability": 0.8, "max_pruned": None}


def _inner_greedy_option(name: str) -> Option:
    own = GreedyStrategy.OPTIONS[name]
    return dataclasses.replace(own, default=INNER_GREEDY[name], help=f"inner greedy only: {own.help}")


OPTIONS = Options(
    Option("folds", int, 5, "cross-fitting folds: each inner search sees all but one", low=2),
    Option("inner", str, "greedy", "the search run on each fold's training part", choices=INNER),
    Option("patience", int, 5, "an inner search stops after this many rounds without a new best", low=1),
    Option("level", float, 0.95, "one-sided confidence that the search's held-out gain is positive, needed to "
           "prune anything", low=0.5, high=1, high_open=True),
    Option("final", str, "refit", "the mask kept when the evidence is there: refit (the inner search on all "
           "examples) or consensus (modules most fold masks prune)", choices=("refit", "consensus")),
    Option("sigma0", float, None, "σ0 of an inner CMA-ES (null: the inner strategy's own)", low=0, low_open=True,
           nullable=True),
    *(_inner_greedy_option(name) for name in INNER_GREEDY),
    Option("start_pruned", float, 2.0, "inner cma only: it starts where a candidate prunes this many modules on "
           "average (null: the paper's mean −1)", low=0, low_open=True, nullable=True),
)


def _restrict(full: Outcome, subset: Subset) -> Outcome:
    """The full merge's outcome on some of its examples (`full` covers the whole split, in index order)."""
    return Outcome.from_correct(tuple(c[ix] for c, ix in zip(full.correct, subset.index)), full.expert)


@register("crossfit")
class CrossFitStrategy(Strategy):
    summary = ("cross-fitted search: masks found on part of the validation data must beat the full merge on the "
               "part they did not see; reports the gain to expect with an interval")
    OPTIONS = OPTIONS
    DEFAULTS = {"popsize": 8, "generations": 20}  # each inner search; it also stops after `patience` stale rounds

    def __init__(self, shape, **settings):
        self._given = set(settings)  # an inner-greedy option given for another inner search is an error
        super().__init__(shape, **settings)
        self._require_budget()
        self.k = self.options["folds"]
        self.inner_cls = get_strategy(self.options["inner"])
        self._inner_options = self._inner_settings()
        self.z = NormalDist().inv_cdf(self.options["level"])
        self.phase = "singles" if self.options["inner"] in FROM_SINGLES else "inner"
        # singles (once, all examples) → inner (fold by fold) → check → refit (when kept) → done
        self.fold = 0
        self.inner: Optional[Strategy] = None
        self.fold_masks: list[np.ndarray] = []
        self._decision: Optional[Decision] = None

    def _inner_settings(self) -> dict:
        """The options an inner search is built with: σ0 and the calibrated start, for an inner CMA-ES."""
        o, declared = self.options, self.inner_cls.OPTIONS
        if o["sigma0"] is not None and "sigma0" not in declared:
            raise EnmpError(f"inner search '{o['inner']}' takes no sigma0", where="search.options.sigma0",
                            fix="leave sigma0 unset (null) for this inner search")
        out = {} if o["sigma0"] is None else {"sigma0": o["sigma0"]}
        for name in INNER_GREEDY:
            if o[name] and (name in declared or name in self._given):
                if name not in declared:
                    raise EnmpError(f"inner search '{o['inner']}' takes no {name}", where=f"search.options.{name}",
                                    fix=f"use {name} with inner: greedy")
                out[name] = o[name]
        if o["inner"] == "cma" and o["start_pruned"] is not None:
            sigma0 = out.get("sigma0", declared["sigma0"].default)
            out["mean0"] = calibrated_mean0(min(o["start_pruned"], self.budget), self.n_modules, sigma0)
        return out

    @property
    def n_generations(self) -> int:
        """An upper bound on rounds: every inner search, the held-out check, a refit."""
        inner = self.inner_cls(self.shape, rho=self.rho, seed=self.seed, popsize=self.popsize,
                               generations=self.generations, **self._inner_options).n_generations
        return (self.k + 1) * inner + 2

    @property
    def done(self) -> bool:
        return self.phase == "done"

    @property
    def reference_fitness(self) -> Optional[float]:
        """The full merge on the examples the current inner search scores (its best is measured there)."""
        return None if self.inner is None else self._inner_reference

    # ------------------------------------------------------------------ start
    def validate(self, data: ValidationData) -> None:
        super().validate(data)
        check_fold_sizes(data.sizes, self.k, self.name)

    def start(self, data: ValidationData) -> None:
        super().start(data)
        if data.full is None or data.full.failed or data.full.correct is None:
            raise EnmpError("the full merge failed (NaN/Inf) on the validation split", where="search 'crossfit'",
                            fix="check the adapters and merge hyperparameters")
        # folds differ between search seeds too: several seeds are several cross-fits, not one repeated
        self.folds = Subset.folds(data.sizes, self.k, seed=data.seed * 1_000_003 + self.seed, name="fold")
        self.everything = Subset.everything(data.sizes)
        self.train = [self.everything.without(f, f"all but {f.name}") for f in self.folds]
        self.evidence = Evidence(data.sizes)
        self._full_key = keep_to_str(self._full())
        self.evidence.add(self._full_key, self.everything, data.full)
        if self.phase == "inner":
            self._begin_inner(self.train[0])

    def _begin_inner(self, examples: Optional[Subset]) -> None:
        """A fresh inner search on `examples` (None: all of them), seeded per fold so folds differ."""
        self.inner_examples = examples
        self.inner = self.inner_cls(self.shape, rho=self.rho, seed=self.seed + 7919 * len(self.fold_masks),
                                    popsize=self.popsize, generations=self.generations, **self._inner_options)
        full = self.data.full if examples is None else _restrict(self.data.full, examples)
        self.inner.start(ValidationData(full.sizes, self.data.seed, full))
        self._inner_reference = full.fitness
        self.best, self.best_fitness = self.inner.best, self.inner.best_fitness
        self.stale = 0

    # ------------------------------------------------------------------ ask
    def _ask(self) -> list[Candidate]:
        if self.phase == "singles":
            return single_prunings(self.shape)
        if self.phase in ("inner", "refit"):
            return [Candidate(c.mask, c.z, c.tag, self.inner_examples) for c in self.inner.ask()]
        return [Candidate(m, tag="check", examples=f) for m, f in zip(self.fold_masks, self.folds) if not m.all()]

    # ------------------------------------------------------------------ tell
    def _track_best(self, cands, outcomes) -> None:
        """Best is the current inner search's (on its own examples); `reference_fitness` is the full merge there."""

    def _tell(self, cands, outcomes) -> None:
        if self.phase == "singles":
            self.phase = "inner"
            return self._begin_inner(self.train[0])
        if self.phase == "check":
            for cand, out in zip(cands, outcomes):
                self.evidence.add(keep_to_str(cand.mask), cand.examples, out)
            return self._decide()
        before = self.inner.best_fitness
        self.inner.tell([Candidate(c.mask, c.z, c.tag) for c in cands], outcomes)
        self.best, self.best_fitness = self.inner.best, self.inner.best_fitness
        self.stale = 0 if self.inner.best_fitness > before else self.stale + 1
        if not (self.inner.done or self.stale >= self.options["patience"]):
            return
        mask = self.inner.decide(self._inner_reference).mask
        if self.phase == "refit":
            return self._finish(mask, self._kept_text("a search on all validation examples"))
        self.fold_masks.append(mask)
        if len(self.fold_masks) < self.k:
            return self._begin_inner(self.train[len(self.fold_masks)])
        self.phase = "check"
        if all(m.all() for m in self.fold_masks):  # nothing to check: no inner search beat the full merge
            self._decide()

    # ------------------------------------------------------------------ the decision
    def held_out_gain(self) -> tuple[float, float]:
        """(ĝ, se): each example's paired difference between the mask chosen without it and the full merge,
        pooled over the folds; se is floored at one differing example per task (a normal approximation on a
        handful of differing examples would otherwise claim certainty)."""
        diffs = [np.zeros(n) for n in self.data.sizes]
        for mask, fold in zip(self.fold_masks, self.folds):
            if mask.all():
                continue
            key = keep_to_str(mask)
            for t, (a, b) in enumerate(zip(self.evidence.scores(key, fold), self.evidence.scores(self._full_key, fold))):
                diffs[t][fold.index[t]] = a - b
        gain, se = paired_difference(diffs)
        floor = math.sqrt(sum((s / n) ** 2 for s, n in zip(self.data.full.normalizers, self.data.sizes))) / len(diffs)
        return gain, max(se, floor)

    def _decide(self) -> None:
        gain, se = self.held_out_gain()
        self.evidence_summary = {"held_out_gain": gain, "se": se, "z": self.z, "folds": self.k,
                                 "fold_masks_pruned": [int((~m).sum()) for m in self.fold_masks]}
        if gain - self.z * se <= 0:
            why = (f"masks found on {self.k - 1}/{self.k} of the validation examples changed the held-out "
                   f"{1}/{self.k} by {gain:+.2f} ± {se:.2f}: not enough evidence of a gain (needs more than "
                   f"{self.z:.2f} standard errors)")
            return self._finish(None, f"returned the full merge: {why}")
        if self.options["final"] == "consensus":
            votes = np.mean([~m for m in self.fold_masks], axis=0)
            return self._finish(votes <= 0.5, self._kept_text(f"the modules most of the {self.k} fold masks prune"))
        self.phase = "refit"
        self._begin_inner(None)

    def _kept_text(self, what: str) -> str:
        e = self.evidence_summary
        return (f"kept {what}: masks found on {self.k - 1}/{self.k} of the validation examples beat the full merge "
                f"on the held-out {1}/{self.k} by {e['held_out_gain']:+.2f} ± {e['se']:.2f}")

    def _finish(self, mask: Optional[np.ndarray], text: str) -> None:
        if mask is None or mask.all():
            mask = self._full()
            if not text.startswith("returned"):
                text = "returned the full merge: the final search found no mask better than it"
            estimate = Estimate(0.0, 0.0, 0.0, LEVEL, "the full merge is returned: no change")
        else:
            gain, se = self.evidence_summary["held_out_gain"], self.evidence_summary["se"]
            value, low, high = selected_estimate(gain, se, self.z * se, LEVEL)
            estimate = Estimate(value, low, high, LEVEL,
                                f"cross-fitted: each of the {sum(self.data.sizes)} validation examples scored once "
                                f"by a mask chosen without it ({self.k} folds), corrected for keeping the mask only "
                                "when that gain passed the test")
        self._decision = Decision(mask, text, estimate, dict(self.evidence_summary, pruned=int((~mask).sum())))
        self.phase = "done"

    def decide(self, full_fitness: float) -> Decision:
        return self._decision
