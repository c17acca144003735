"""The body of one Ray actor: a Workspace + LocalEvaluator built once, then many jobs."""

from __future__ import annotations

import os
import time
from typing import Optional, Sequence

from ....config import RunConfig
from ....errors import EnmpError, first_line
from ....merging import MergeParams
from ..evaluator import Job, JobResult


class Worker:
    """Loads the run (base, adapters, heads, data) from the config once; `run` scores a batch of jobs."""

    def __init__(self, cfg: RunConfig, method: str, params: MergeParams, threads: int):
        import torch

        self.error: Optional[str] = None
        self.crash_in: Optional[int] = None
        self.pid = os.getpid()
        torch.set_num_threads(threads)
        try:
            from ..local import LocalEvaluator
            from ...loading.workspace import build_workspace

            self.ev = LocalEvaluator(build_workspace(cfg), method, params)
        except Exception as e:  # reported by ready(); an actor whose __init__ raises is hard to explain
            self.error = e.line() if isinstance(e, EnmpError) else first_line(e, with_type=True)

    def ready(self) -> dict:
        if self.error is not None:
            return {"error": self.error}
        import torch

        model = self.ev.cost_model
        return {"shape": self.ev.shape, "tasks": self.ev.task_names, "pid": self.pid,
                "device": str(self.ev.ws.device), "threads": torch.get_num_threads(),
                "n_layers": model.n_layers, "prefix": model.prefix, "val_sizes": self.ev.val_sizes}

    def run(self, jobs: Sequence[Job]) -> dict:
        """Results of `jobs` plus the wall and CPU seconds spent (the pool's utilisation accounting)."""
        if self.crash_in is not None:
            self.crash_in -= 1
            if self.crash_in <= 0:
                os._exit(1)  # test hook: the process dies in the middle of a job
        if self.error is not None:
            raise EnmpError(self.error)
        started, cpu = time.perf_counter(), time.process_time()
        results = self.ev.run_jobs(jobs)
        return {"results": [tuple(r) for r in results], "seconds": time.perf_counter() - started,
                "cpu_seconds": time.process_time() - cpu}

    def crash_after(self, n: int) -> None:
        """Test hook: exit the worker process (os._exit) while it runs its n-th next job."""
        self.crash_in = int(n)


def job_results(out: dict) -> list[JobResult]:
    return [JobResult(*r) for r in out["results"]]
