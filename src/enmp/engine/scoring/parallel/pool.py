"""The Ray back-end of the evaluator (`--workers N`, `--ray-address ADDR`).

Each actor builds its own Workspace from the run config once and then only receives jobs (mask, split,
task) and returns raw accuracies; the driver holds no model and no data. Everything that decides the
search's path (fitness, the result cache, de-duplication, result order) is the shared `Evaluator`'s, so a
run with N workers gives the same masks and fitness history as the serial run with the same seed.

A worker that dies (process killed, OOM, node lost: `RayActorError`) is replaced by a new actor and its job
is re-run; the run goes on. A job that kills `max_retries` fresh workers in a row stops the run with an
EnmpError instead of looping forever.
"""

from __future__ import annotations

import os
from collections import deque
from typing import Optional, Sequence

from ....errors import EnmpError, first_line
from ....merging import MergeParams
from ..accounting import CostModel
from ..evaluator import Evaluator, Job, JobResult
from ...loading.inputs import RunInputs
from .cluster import import_ray, plan_workers, start_ray
from .worker import Worker, job_results


class ParallelEvaluator(Evaluator):
    """`cache_mb` is each worker's merge-cache budget (default: the config's eval.cache_mb)."""

    def __init__(self, inputs: RunInputs, method: str, params: MergeParams, cache_mb: Optional[float] = None, *,
                 max_retries: int = 3, log=None):
        super().__init__(inputs.task_names, len(inputs.groups), method, params)
        self.inputs = inputs
        self.cfg = inputs.cfg
        self.restarts = 0
        self.busy_seconds = 0.0  # time the workers spent evaluating (vs waiting), summed over workers
        self.busy_cpu_seconds = 0.0  # CPU time of those evaluations (less than busy_seconds when cores are short)
        self.max_retries = max_retries
        if log is None:
            from rich.console import Console

            log = Console(stderr=True).log
        self.log = log  # one line per event that changes the pool (a worker restarted)
        self._actors: list = []
        self._ray = import_ray()
        self._owns_ray = start_ray(self.cfg)
        try:
            resources = self._ray.cluster_resources()
            # A local cluster shares this machine's cores; on a joined cluster, the cluster's CPUs.
            cores = int(resources.get("CPU", 0)) if self.cfg.parallel.ray_address else os.cpu_count()
            self.plan = plan_workers(self.cfg, resources.get("GPU", 0.0), cores)
            worker_cfg = self.cfg.model_copy(deep=True)
            worker_cfg.eval.device = self.plan["device"]
            worker_cfg.eval.threads = self.plan["threads"]
            if cache_mb is not None:
                worker_cfg.eval.cache_mb = int(cache_mb)
            self._worker_cfg = worker_cfg
            self._remote = self._ray.remote(**self.plan["options"])(Worker)
            self._actors = [self._spawn() for _ in range(self.cfg.parallel.workers)]
            self.workers_info = [self._check_ready(a) for a in self._actors]
            first = self.workers_info[0]  # every worker loaded the same model (checked by _check_ready)
            self.cost_model = CostModel(*inputs.target_layout(), first["n_layers"], first["prefix"])
            self.val_sizes = tuple(first["val_sizes"])
        except BaseException:
            self.close()
            raise

    # -------------------------------------------------------------- actors
    def _spawn(self):
        return self._remote.remote(self._worker_cfg, self.method, self.params, self.plan["threads"])

    def _check_ready(self, actor) -> dict:
        from ray.exceptions import RayActorError

        try:
            info = self._ray.get(actor.ready.remote())
        except RayActorError as e:
            raise EnmpError(f"a Ray worker failed to start ({first_line(e, 300)})", where="parallel workers",
                            fix="check that every node has enmp installed and can read the run's files") from None
        if "error" in info:
            raise EnmpError(f"a Ray worker could not load the run: {info['error']}", where="parallel workers")
        if tuple(info["shape"]) != self.shape or list(info["tasks"]) != self.task_names:
            raise EnmpError(f"a worker sees a different run (mask shape {tuple(info['shape'])}, driver "
                            f"{self.shape})", where="parallel workers",
                            fix="every node must see the same base, adapters and data files")
        return info

    def _replace(self, slot: int) -> None:
        try:
            self._ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # already gone
            pass
        self._actors[slot] = self._spawn()
        self.restarts += 1
        self.log(f"worker {slot} died; restarted it and re-running its job")

    def close(self) -> None:
        """Stop the workers (and the local Ray cluster if this evaluator started it). Safe to call twice."""
        for a in self._actors:
            try:
                self._ray.kill(a, no_restart=True)
            except Exception:
                pass
        self._actors = []
        if self._owns_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._owns_ray = False

    # -------------------------------------------------------------- dispatch
    def run_jobs(self, jobs: Sequence[Job]) -> list[JobResult]:
        """Jobs on the actors, one in flight per actor; results in job order."""
        from ray.exceptions import RayActorError, RayTaskError

        if not self._actors:
            raise EnmpError("the parallel evaluator is closed")
        results: list[Optional[JobResult]] = [None] * len(jobs)
        queue = deque(range(len(jobs)))
        idle = deque(range(len(self._actors)))
        inflight: dict = {}
        attempts = [0] * len(jobs)
        while queue or inflight:
            while queue and idle:
                slot, j = idle.popleft(), queue.popleft()
                inflight[self._actors[slot].run.remote([jobs[j]])] = (slot, j)
            done, _ = self._ray.wait(list(inflight), num_returns=1)
            for ref in done:
                slot, j = inflight.pop(ref)
                try:
                    out = self._ray.get(ref)
                    results[j] = job_results(out)[0]
                    self.busy_seconds += out["seconds"]
                    self.busy_cpu_seconds += out["cpu_seconds"]
                except RayActorError as e:
                    attempts[j] += 1
                    if attempts[j] > self.max_retries:
                        raise EnmpError(f"a job killed {attempts[j]} workers in a row ({first_line(e, 300)})",
                                        where="parallel workers",
                                        fix="check the workers' memory (a smaller eval.batch_size helps)") from None
                    self._replace(slot)
                    queue.appendleft(j)
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, EnmpError):
                        raise EnmpError(cause.what, where=cause.where, fix=cause.fix) from None
                    raise EnmpError(f"a worker failed ({first_line(cause or e, 300)})",
                                    where="parallel workers") from None
                idle.append(slot)
        return results  # type: ignore[return-value]

    # -------------------------------------------------------------- test hooks
    def crash_worker(self, slot: int = 0, after: int = 1) -> None:
        """Test hook: make worker `slot` exit while running its `after`-th next job."""
        self._ray.get(self._actors[slot].crash_after.remote(after))

    def worker_pids(self) -> list[int]:
        return [self._ray.get(a.ready.remote())["pid"] for a in self._actors]
