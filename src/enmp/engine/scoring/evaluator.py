"""The evaluator contract shared by every back-end (Optuna's samplers/_base.py is the model).

Everything that decides a search's path lives here, once: per-example outcomes and the fitness (from raw
scores and the expert scores), the result cache by (split, examples, mask), de-duplication within a batch,
the order of results (always the input order, so a strategy is told in a fixed order whatever the
back-end), and the cost of what ran (`accounting.CostModel`). A back-end only runs *jobs* — one (mask,
split, task, examples) each — and returns, per job, whether each example was predicted right:
`LocalEvaluator` on this process's live model, `ParallelEvaluator` on Ray actors.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple, Optional, Sequence

import numpy as np

from ...errors import NumericalError
from ...metrics import accuracy, fitness
from ...masking import keep_to_str
from ...merging import MergeParams, resolved
from ...search import Outcome, Subset
from .accounting import Cost, CostModel


class Job(NamedTuple):
    """Score one task on one split (or a subset of its examples) under the merge of `keep` (method/params
    None: the evaluator's own)."""

    keep: np.ndarray
    split: str
    task: int
    method: Optional[str] = None
    params: Optional[MergeParams] = None
    subset: Optional[Subset] = None

    @property
    def view(self) -> str:
        """The examples this job runs, as a name (caches of prepared inputs and layer outputs key by it)."""
        return view_name(self.split, None if self.subset is None else self.subset.key)


def view_name(split: str, subset_key: Optional[str]) -> str:
    return split if subset_key is None else f"{split}/{subset_key}"


class JobResult(NamedTuple):
    scores: dict[str, float]  # {task name: raw accuracy (%)}; empty when `error` is set
    error: Optional[str] = None
    examples: int = 0  # labelled examples scored
    rows: int = 0  # sequences (or images) the model ran: examples, or examples × classes for label words
    correct: Optional[np.ndarray] = None  # bool per example, in the examples' order


def combine(outs: Sequence[JobResult]) -> tuple[dict[str, float], Optional[str]]:
    """One candidate's per-task results → (scores in job order, first error or None)."""
    error = next((o.error for o in outs if o.error is not None), None)
    return ({} if error is not None else {n: v for o in outs for n, v in o.scores.items()}), error


class Evaluator(ABC):
    """Scores keep-masks (T × G bools) with one merge method; subclasses implement `run_jobs` and set
    `cost_model` (the back-end knows the model's layers)."""

    def __init__(self, task_names: Sequence[str], n_groups: int, method: str, params: MergeParams):
        self.task_names = list(task_names)
        self.method, self.params = method, resolved(method, params)
        self._shape = (len(self.task_names), n_groups)
        self.expert: dict[str, dict[str, float]] = {}  # split → task → each expert alone
        self._results: dict[tuple[str, str], Outcome] = {}  # (job view, keep-string) → outcome
        # (split, keep-string) → per task (known, right) over the split's examples: a mask scored on some examples
        # answers later requests for any of them without running again (e.g. folds of a split already scored)
        self._per_example: dict[tuple[str, str], tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self.forward_evaluations = 0  # candidates that really ran the model (cache misses)
        self.cost_model: Optional[CostModel] = None
        self.val_sizes: tuple[int, ...] = ()  # validation examples per task (set by the back-end)

    @property
    def shape(self) -> tuple[int, int]:
        return self._shape

    @property
    def spec(self) -> tuple:
        """The merge every candidate of this evaluator uses (part of what a layer holds)."""
        return (self.method, self.params.cache_key())

    @abstractmethod
    def run_jobs(self, jobs: Sequence[Job]) -> list[JobResult]:
        """Results of every job, in job order; a NaN/Inf merge or logits is a JobResult error."""

    def close(self) -> None:
        """Release workers or other resources (nothing to do in-process). Safe to call twice."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ------------------------------------------------------------------ cost
    @property
    def search_cost(self) -> Cost:
        """Validation work charged since the cost model was last reset (see `accounting`)."""
        return self.cost_model.total if self.cost_model is not None else Cost()

    def _charge(self, jobs: Sequence[Job], results: Sequence[JobResult]) -> None:
        if self.cost_model is None:
            return
        for job, result in zip(jobs, results):
            if job.split == "val" and result.error is None:
                spec = ((job.method or self.method), (job.params or self.params).cache_key())
                self.cost_model.charge(job.view, job.task, job.keep, spec, result.examples, result.rows)

    def see(self, keep: np.ndarray, subset: Optional[Subset] = None) -> None:
        """Tell the cost model that `keep` was computed on these validation examples (a resumed journal)."""
        if self.cost_model is not None:
            for t in range(self.shape[0]):
                self.cost_model.see(view_name("val", None if subset is None else subset.key), t, keep, self.spec)

    # ------------------------------------------------------------------ per-example results
    def _record(self, keep: str, split: str, subset: Optional[Subset], out: Outcome) -> None:
        if split != "val" or out.failed or out.correct is None or not self.val_sizes:
            return
        known, right = self._per_example.setdefault(
            (split, keep), ([np.zeros(n, bool) for n in self.val_sizes], [np.zeros(n, bool) for n in self.val_sizes]))
        for t, bits in enumerate(out.correct):
            where = slice(None) if subset is None else subset.index[t]
            known[t][where], right[t][where] = True, bits

    def _slice(self, keep: str, split: str, subset: Optional[Subset]) -> Optional[Outcome]:
        """The outcome on `subset` from per-example results already known, or None."""
        got = self._per_example.get((split, keep))
        index = [slice(None)] * len(self.task_names) if subset is None else subset.index
        if got is None or not all(k[ix].all() for k, ix in zip(got[0], index)):
            return None
        bits = [r[ix] for r, ix in zip(got[1], index)]
        scores = {name: accuracy(b) for name, b in zip(self.task_names, bits)}
        expert = self.expert[split]
        return Outcome(fitness(scores, expert), tuple(bits), tuple(expert[t] for t in self.task_names), scores)

    # ------------------------------------------------------------------ scores
    def scores(self, keep: np.ndarray, split: str = "val", tasks: Optional[Sequence[int]] = None,
               method: Optional[str] = None, params: Optional[MergeParams] = None) -> dict[str, float]:
        """Raw accuracy per task for the merge of `keep`; raises NumericalError on NaN/Inf. Not cached and
        not charged: for reference scores (λ tuning, experts), not for search candidates."""
        keep = np.asarray(keep, dtype=bool)
        idx = range(self.shape[0]) if tasks is None else tasks
        scores, error = combine(self.run_jobs([Job(keep, split, t, method, params) for t in idx]))
        if error is not None:
            raise NumericalError(error)
        return scores

    def compute_expert(self, split: str) -> dict[str, float]:
        """Each expert alone (its LoRA at scale 1 in every layer) on its own task."""
        T, G = self.shape
        keeps = [np.zeros((T, G), dtype=bool) for _ in range(T)]
        for t, keep in enumerate(keeps):
            keep[t] = True
        out, error = combine(self.run_jobs([Job(k, split, t, "ta", MergeParams(lam=1.0)) for t, k in enumerate(keeps)]))
        if error is not None:
            raise NumericalError(error)
        self.expert[split] = {name: out[name] for name in self.task_names}
        return self.expert[split]

    def outcome(self, results: Sequence[JobResult], split: str, cached: bool = False) -> Outcome:
        """One candidate's outcome from its per-task job results (the fitness exactly as ENMP defines it)."""
        scores, error = combine(results)
        expert = self.expert[split]
        if error is not None:
            return Outcome(float("-inf"), error=error, cached=cached)
        correct = None if any(r.correct is None for r in results) else tuple(np.asarray(r.correct, bool)
                                                                            for r in results)
        return Outcome(fitness(scores, expert), correct, tuple(expert[t] for t in self.task_names), scores,
                       cached=cached)

    # ------------------------------------------------------------------ candidates
    def evaluate_many(self, keeps: Sequence[np.ndarray], split: str = "val",
                      subsets: Optional[Sequence[Optional[Subset]]] = None) -> list[Outcome]:
        """Outcomes in input order (each mask on its subset of `split`'s examples, None: all of them); known
        (mask, examples) are not re-run, repeats within the batch run once (their later copies come back as
        cached, as when evaluated one by one)."""
        subsets = list(subsets) if subsets is not None else [None] * len(keeps)
        keys = [(view_name(split, None if s is None else s.key), keep_to_str(k)) for k, s in zip(keeps, subsets)]
        todo: dict[tuple[str, str], tuple[np.ndarray, Optional[Subset]]] = {}
        for key, keep, subset in zip(keys, keeps, subsets):
            if key not in self._results and key not in todo:
                known = self._slice(key[1], split, subset)
                if known is not None:
                    self._results[key] = known
                else:
                    todo[key] = (np.asarray(keep, dtype=bool), subset)
        if todo and split not in self.expert:
            self.compute_expert(split)
        n_tasks = self.shape[0]
        # One job per (candidate, task): a back-end with several workers never idles at a generation's end.
        jobs = [Job(keep, split, t, subset=subset) for keep, subset in todo.values() for t in range(n_tasks)]
        outs = self.run_jobs(jobs) if jobs else []
        self._charge(jobs, outs)
        for c, (key, (_, subset)) in enumerate(todo.items()):
            self._results[key] = self.outcome(outs[c * n_tasks:(c + 1) * n_tasks], split)
            self._record(key[1], split, subset, self._results[key])
            self.forward_evaluations += 1
        results, fresh = [], set(todo)
        for key in keys:
            hit = self._results[key]
            results.append(Outcome(hit.fitness, hit.correct, hit.expert, hit.scores, hit.error,
                                   cached=key not in fresh))
            fresh.discard(key)
        return results

    def evaluate(self, keep: np.ndarray, split: str = "val", subset: Optional[Subset] = None) -> Outcome:
        """Outcome of one mask (cached by mask and examples); a NaN/Inf candidate is a failed result, not a crash."""
        return self.evaluate_many([keep], split, [subset])[0]

    def remember(self, keep: np.ndarray, split: str, subset: Optional[Subset], outcome: Outcome) -> None:
        """Seed the result cache with an outcome known from elsewhere (a resumed journal)."""
        key = keep_to_str(keep)
        self._results[(view_name(split, None if subset is None else subset.key), key)] = outcome
        self._record(key, split, subset, outcome)

    def clear_cache(self) -> None:
        """Forget every result and expert score (models and merge caches stay)."""
        self._results.clear()
        self._per_example.clear()
        self.expert.clear()
        self.forward_evaluations = 0
