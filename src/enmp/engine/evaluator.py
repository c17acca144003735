"""The one evaluator interface: keep-masks in, per-task scores and fitness out, with a result cache.

Everything that decides a search's path lives here, once: the fitness of a candidate (from raw scores
and the expert scores), the result cache by mask, de-duplication within a batch, and the order of results
(always the input order, so a strategy is told in a fixed order whatever the back-end). A back-end only
runs *jobs* — one (mask, split, task) each — and returns their raw accuracies: `LocalEvaluator` on this
process's live model, `ParallelEvaluator` on Ray actors. Optuna's samplers/_base.py is the model.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import NamedTuple, Optional, Sequence

import numpy as np

from ..errors import NumericalError
from ..evaluation import fitness
from ..masking import keep_to_str
from ..merging import MergeParams, resolved


def fold_split(fold: int) -> str:
    """The name of one validation fold as a split ("val@3"); strategies that race on folds use these."""
    return f"val@{fold}"


def parent_split(split: str) -> str:
    """The split a fold belongs to (its expert scores normalize it): "val@3" → "val"."""
    return split.split("@")[0]


@dataclass
class CandidateResult:
    scores: dict[str, float]  # per-task raw accuracy (%) on the split
    fitness: float  # mean normalized accuracy; -inf for a failed candidate
    error: Optional[str] = None
    cached: bool = field(default=False, compare=False)
    correct: Optional[dict[str, str]] = None  # fold splits: per task, "1"/"0" per example (racing statistics)

    def to_json(self) -> dict:
        out = {"scores": self.scores, "fitness": self.fitness, "error": self.error}
        return out if self.correct is None else {**out, "correct": self.correct}


class Job(NamedTuple):
    """Score one task on one split under the merge of `keep` (method/params None: the evaluator's)."""

    keep: np.ndarray
    split: str
    task: int
    method: Optional[str] = None
    params: Optional[MergeParams] = None


class JobResult(NamedTuple):
    scores: dict[str, float]  # {task name: raw accuracy}; empty when `error` is set
    error: Optional[str] = None
    examples: int = 0  # labelled examples scored
    layer_examples: int = 0  # rows × transformer layers actually computed (prefix-cache hits excluded)
    correct: Optional[str] = None  # fold splits only: "1"/"0" per example, in the split's fixed order


@dataclass
class Cost:
    """Work done, per split: what strategies are compared by (not candidates, which may be cache hits)."""

    examples: int = 0
    layer_examples: int = 0

    def add(self, work: "JobResult | Cost") -> None:
        self.examples += work.examples
        self.layer_examples += work.layer_examples

    def to_json(self) -> dict[str, int]:
        return {"examples": self.examples, "layer_examples": self.layer_examples}


def combine(outs: Sequence[JobResult]) -> tuple[dict[str, float], Optional[str]]:
    """One candidate's per-task results → (scores in job order, first error or None)."""
    error = next((o.error for o in outs if o.error is not None), None)
    return ({} if error is not None else {n: v for o in outs for n, v in o.scores.items()}), error


def _correct(outs: Sequence[JobResult]) -> Optional[dict[str, str]]:
    if any(o.correct is None or o.error is not None for o in outs):
        return None
    return {n: o.correct for o in outs for n in o.scores}


class Evaluator(ABC):
    """Scores keep-masks (T × G bools) with one merge method; subclasses implement `run_jobs` only."""

    def __init__(self, task_names: Sequence[str], n_groups: int, method: str, params: MergeParams):
        self.task_names = list(task_names)
        self.method, self.params = method, resolved(method, params)
        self._shape = (len(self.task_names), n_groups)
        self.expert: dict[str, dict[str, float]] = {}  # split → task → each expert alone
        self._results: dict[tuple[str, str], CandidateResult] = {}
        self.forward_evaluations = 0  # candidates that really ran the model (cache misses)
        self.cost: dict[str, Cost] = {}  # split → work done so far

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @abstractmethod
    def run_jobs(self, jobs: Sequence[Job]) -> list[JobResult]:
        """Raw accuracies of every job, in job order; a NaN/Inf merge or logits is a JobResult error."""

    def spent(self, split: str = "val") -> Cost:
        """Work done so far on `split` and its folds."""
        total = Cost()
        for name, cost in self.cost.items():
            if parent_split(name) == split:
                total.add(cost)
        return total

    def _run(self, jobs: Sequence[Job]) -> list[JobResult]:
        results = self.run_jobs(jobs)
        for job, result in zip(jobs, results):
            self.cost.setdefault(job.split, Cost()).add(result)
        return results

    def close(self) -> None:
        """Release workers or other resources (nothing to do in-process). Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ scores
    def scores(self, keep: np.ndarray, split: str = "val", tasks: Optional[Sequence[int]] = None,
               method: Optional[str] = None, params: Optional[MergeParams] = None) -> dict[str, float]:
        """Raw accuracy per task for the merge of `keep`; raises NumericalError on NaN/Inf."""
        keep = np.asarray(keep, dtype=bool)
        idx = range(self.shape[0]) if tasks is None else tasks
        scores, error = combine(self._run([Job(keep, split, t, method, params) for t in idx]))
        if error is not None:
            raise NumericalError(error)
        return scores

    def compute_expert(self, split: str) -> dict[str, float]:
        """Each expert alone (its LoRA at scale 1 in every layer) on its own task."""
        T, G = self.shape
        jobs = []
        for t in range(T):
            keep = np.zeros((T, G), dtype=bool)
            keep[t] = True
            jobs.append(Job(keep, split, t, "ta", MergeParams(lam=1.0)))
        out, error = combine(self._run(jobs))
        if error is not None:
            raise NumericalError(error)
        self.expert[split] = {name: out[name] for name in self.task_names}
        return self.expert[split]

    # ------------------------------------------------------------------ candidates
    def evaluate_many(self, keeps: Sequence[np.ndarray], split: str = "val") -> list[CandidateResult]:
        """Results in input order; known masks are not re-run, repeats within the batch run once (their
        later copies come back as cached, as when evaluated one by one)."""
        keys = [(split, keep_to_str(k)) for k in keeps]
        todo: dict[tuple[str, str], np.ndarray] = {}
        for key, keep in zip(keys, keeps):
            if key not in self._results and key not in todo:
                todo[key] = np.asarray(keep, dtype=bool)
        expert_split = parent_split(split)
        if todo and expert_split not in self.expert:
            self.compute_expert(expert_split)
        n_tasks = self.shape[0]
        # One job per (candidate, task): a back-end with several workers never idles at a generation's end.
        outs = self._run([Job(keep, split, t) for keep in todo.values() for t in range(n_tasks)]) if todo else []
        for c, key in enumerate(todo):
            mine = outs[c * n_tasks:(c + 1) * n_tasks]
            scores, error = combine(mine)
            self._results[key] = (CandidateResult({}, float("-inf"), error) if error is not None
                                  else CandidateResult(scores, fitness(scores, self.expert[expert_split]),
                                                       correct=_correct(mine)))
            self.forward_evaluations += 1
        results, fresh = [], set(todo)
        for key in keys:
            hit = self._results[key]
            results.append(CandidateResult(hit.scores, hit.fitness, hit.error, cached=key not in fresh,
                                           correct=hit.correct))
            fresh.discard(key)
        return results

    def evaluate(self, keep: np.ndarray, split: str = "val") -> CandidateResult:
        """Fitness of one mask (cached by mask); a NaN/Inf candidate is a failed result, not a crash."""
        return self.evaluate_many([keep], split)[0]

    def remember(self, keep: np.ndarray, split: str, result: CandidateResult) -> None:
        """Seed the result cache (resume)."""
        self._results[(split, keep_to_str(keep))] = result

    def clear_cache(self) -> None:
        """Forget every result and expert score (models and merge caches stay)."""
        self._results.clear()
        self.expert.clear()
        self.forward_evaluations = 0
