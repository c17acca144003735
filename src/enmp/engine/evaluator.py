"""Score candidate masks on the live model: patch only what changed, reuse merges and results."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from ..errors import NumericalError
from ..evaluation import accuracy, fitness
from ..merging import MergeParams
from .workspace import Workspace


@dataclass
class CandidateResult:
    scores: dict[str, float]  # per-task raw accuracy (%) on the split
    fitness: float  # mean normalized accuracy; -inf for a failed candidate
    error: Optional[str] = None
    cached: bool = field(default=False, compare=False)

    def to_json(self) -> dict:
        return {"scores": self.scores, "fitness": self.fitness, "error": self.error}


def mask_key(keep: np.ndarray) -> bytes:
    keep = np.asarray(keep, dtype=bool)
    return keep.shape[0].to_bytes(2, "little") + np.packbits(keep.ravel()).tobytes()


class Evaluator:
    """Evaluates keep-masks (T × G bools) with one merge method on a Workspace's live model."""

    def __init__(self, ws: Workspace, method: str, params: MergeParams, cache_mb: float = 1024):
        self.ws, self.method, self.params = ws, method, params
        self.patcher = ws.patcher(cache_mb)
        self.cache = self.patcher.cache
        self.expert: dict[str, dict[str, float]] = {}
        self._results: dict[tuple[str, bytes], CandidateResult] = {}
        self.forward_evaluations = 0  # candidates that really ran the model (cache misses)

    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.ws.tasks), len(self.ws.groups))

    def scores(self, keep: np.ndarray, split: str = "val", tasks: Optional[Sequence[int]] = None,
               method: Optional[str] = None, params: Optional[MergeParams] = None) -> dict[str, float]:
        """Raw accuracy per task for the merge of `keep`; raises NumericalError on NaN/Inf."""
        self.patcher.apply(np.asarray(keep, dtype=bool), method or self.method, params or self.params)
        idx = range(len(self.ws.tasks)) if tasks is None else tasks
        data = self.ws.splits[split]
        prefix = self.ws.prefix_cache() if split == "val" else None
        if prefix is None:
            return {self.ws.tasks[i].name: accuracy(self.ws.tasks[i], self.ws.model, data[i]) for i in idx}
        signature = self.patcher.layer_signature(len(prefix.layers))
        out = {}
        for i in idx:
            prefix.begin(split, i, signature)
            try:
                out[self.ws.tasks[i].name] = accuracy(self.ws.tasks[i], self.ws.model, data[i], prefix.set_batch)
            except BaseException:
                prefix.abort()
                raise
            prefix.commit()
        return out

    def compute_expert(self, split: str) -> dict[str, float]:
        """Each expert alone (its LoRA at scale 1 in every layer) on its own task."""
        T, G = self.shape
        out = {}
        for t in range(T):
            keep = np.zeros((T, G), dtype=bool)
            keep[t] = True
            out.update(self.scores(keep, split, tasks=[t], method="ta", params=MergeParams(lam=1.0)))
        self.expert[split] = out
        return out

    def evaluate(self, keep: np.ndarray, split: str = "val") -> CandidateResult:
        """Fitness of one mask (cached by mask); a NaN/Inf candidate is a failed result, not a crash."""
        key = (split, mask_key(keep))
        hit = self._results.get(key)
        if hit is not None:
            return CandidateResult(hit.scores, hit.fitness, hit.error, cached=True)
        if split not in self.expert:
            self.compute_expert(split)
        try:
            scores = self.scores(keep, split)
            result = CandidateResult(scores, fitness(scores, self.expert[split]))
        except NumericalError as e:
            result = CandidateResult({}, float("-inf"), e.line())
        self.forward_evaluations += 1
        self._results[key] = result
        return result

    def evaluate_many(self, keeps: Sequence[np.ndarray], split: str = "val") -> list[CandidateResult]:
        return [self.evaluate(k, split) for k in keeps]

    def remember(self, keep: np.ndarray, split: str, result: CandidateResult) -> None:
        """Seed the result cache (resume, or results computed by parallel workers)."""
        self._results[(split, mask_key(keep))] = result
