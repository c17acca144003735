"""The in-process evaluator back-end: jobs run one after another on this process's live model.

The model is patched to a job's mask only when it differs from what the weights already hold (so the
tasks of one candidate share one patch), and layers shared with an earlier candidate come from the
prefix cache on the validation split.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch

from ...errors import NumericalError
from ...evaluation import correct
from ...metrics import accuracy
from ...merging import MergeParams
from .accounting import CostModel
from .evaluator import Evaluator, Job, JobResult
from .live import live_model
from ..loading.workspace import Workspace


class LocalEvaluator(Evaluator):
    """`cache_mb` sets the budget of the workspace's merge cache (default: the config's eval.cache_mb);
    every evaluator on one workspace shares its one patcher and cache, as they share its live model."""

    def __init__(self, ws: Workspace, method: str, params: MergeParams, cache_mb: Optional[float] = None):
        super().__init__(ws.task_names, len(ws.groups), method, params)
        self.ws, self.live = ws, live_model(ws)
        self.patcher = self.live.patcher
        self.cache = self.patcher.cache
        self.cache.set_budget(ws.cfg.eval.cache_mb if cache_mb is None else cache_mb)
        # layers shared with an earlier candidate are reused (and charged once) only for kinds the prefix cache serves
        reuse = self.live.prefix is not None and all(t.layer_prefix_cache for t in ws.tasks)
        self.cost_model = CostModel(*ws.target_layout(), self.live.n_layers, reuse)
        self.val_sizes = tuple(len(ex) for ex in ws.examples.get("val", []))

    def run_jobs(self, jobs: Sequence[Job]) -> list[JobResult]:
        # the forward passes back to back, the bookkeeping after: code run right after a forward pass finds the
        # CPU caches full of the model's, and pays for it on every job instead of once
        ran = [self._run_one(job) for job in jobs]
        return [r if isinstance(r, JobResult) else _scored(*r) for r in ran]

    def _run_one(self, job: Job) -> JobResult | tuple[str, int, int, torch.Tensor]:
        """The job's error, or (task, examples, rows, right/wrong per example) for `run_jobs` to score."""
        task = self.ws.tasks[job.task]
        try:
            self.patcher.apply(np.asarray(job.keep, dtype=bool), job.method or self.method,
                               job.params or self.params)
            data = self.ws.prepared(job.split, job.task, job.subset)
            prefix = self.live.prefix if job.split == "val" and task.layer_prefix_cache else None
            if prefix is None:
                right = correct(task, self.ws.model, data)
            else:
                prefix.begin(job.view, job.task, self.patcher.layer_signature(len(prefix.layers)))
                try:
                    right = correct(task, self.ws.model, data, prefix.set_batch)
                except BaseException:
                    prefix.abort()
                    raise
                prefix.commit()
            return task.name, data.n, data.rows, right
        except NumericalError as e:
            return JobResult({}, e.line())


def _scored(task_name: str, examples: int, rows: int, right: torch.Tensor) -> JobResult:
    bits = right.numpy()
    return JobResult({task_name: accuracy(bits)}, None, examples, rows, bits)
