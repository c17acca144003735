"""Parallel candidate evaluation on Ray actors (`--workers N`, `--ray-address ADDR`).

Each worker is a Ray actor that builds its own Workspace + Evaluator from the run config once (base model,
adapters, heads, preprocessed data) and then only receives keep-masks and returns per-task raw accuracies.
The driver keeps everything that decides the search's path:

* the fitness cache and the expert scores (fitness is computed on the driver from the workers' raw scores,
  with the same function the serial Evaluator uses),
* de-duplication of masks within a generation (a repeated mask is evaluated once; its later copies are
  reported as cached, exactly like the serial run),
* the order of results (always the input order), so CMA-ES is told in a fixed order and a run with N
  workers gives the same masks and fitness history as the serial run with the same seed.

A worker that dies (process killed, OOM, node lost: `ray.exceptions.RayActorError`) is replaced by a new
actor and its candidate is re-run; the run goes on. A candidate that kills `max_retries` fresh workers in a
row stops the run with an EnmpError instead of looping forever.

Importing this module imports Ray; `SearchRun` imports it only when `parallel.workers > 1` or
`parallel.ray_address` is set, so serial runs never load Ray.

Local clusters are bound to the loopback interface (Ray 2.60 otherwise binds the machine's external
address) and keep Ray's token authentication on, with a random per-process token passed through the
environment instead of being written to ~/.ray/auth_token.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from collections import deque
from typing import Optional, Sequence

import numpy as np

from ..config import RunConfig
from ..errors import EnmpError, NumericalError
from ..evaluation import fitness
from ..merging import MergeParams
from .evaluator import CandidateResult, mask_key
from .workspace import Workspace

# Must be in the environment before `ray` is imported (ray_constants reads it at import time) and is
# inherited by the GCS / raylet / worker processes of a local cluster: bind everything to 127.0.0.1.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

import ray  # noqa: E402
from ray.exceptions import RayActorError, RayTaskError  # noqa: E402

LOOPBACK = "127.0.0.1"
_TOKEN = secrets.token_hex(32)  # one token per driver process: Ray caches the token it loaded first


# ------------------------------------------------------------------------------------------ the actor
class _Worker:
    """Body of one Ray actor: a Workspace + Evaluator built once, then many mask evaluations."""

    def __init__(self, cfg: RunConfig, method: str, params: MergeParams, threads: int):
        import torch

        self.error: Optional[str] = None
        self.crash_in: Optional[int] = None
        self.pid = os.getpid()
        torch.set_num_threads(threads)
        try:
            from .evaluator import Evaluator
            from .workspace import build_workspace

            ws = build_workspace(cfg)
            self.ev = Evaluator(ws, method, params, cfg.eval.cache_mb)
        except Exception as e:  # reported by ready(); an actor whose __init__ raises is hard to explain
            self.error = e.line() if isinstance(e, EnmpError) else f"{type(e).__name__}: {e}"

    def ready(self) -> dict:
        if self.error is not None:
            return {"error": self.error}
        import torch

        return {"shape": self.ev.shape, "tasks": self.ev.ws.task_names, "pid": self.pid,
                "device": str(self.ev.ws.device), "threads": torch.get_num_threads()}

    def scores(self, keep: np.ndarray, split: str, tasks: Optional[list[int]], method: Optional[str],
               params: Optional[MergeParams]) -> dict:
        if self.crash_in is not None:
            self.crash_in -= 1
            if self.crash_in <= 0:
                os._exit(1)  # test hook: the process dies in the middle of a candidate
        if self.error is not None:
            raise EnmpError(self.error)
        started, cpu = time.perf_counter(), time.process_time()
        try:
            out = {"scores": self.ev.scores(keep, split, tasks, method, params)}
        except NumericalError as e:
            out = {"error": e.line()}
        out["seconds"], out["cpu_seconds"] = time.perf_counter() - started, time.process_time() - cpu
        return out

    def crash_after(self, n: int) -> None:
        """Test hook: exit the worker process (os._exit) while it runs its n-th next job (a candidate × task)."""
        self.crash_in = int(n)


def _combine(outs: Sequence[dict]) -> tuple[dict[str, float], Optional[str]]:
    """Per-task job results of one candidate → (scores in job order, first error or None): the first
    failing task in order, which is where the serial evaluator would have stopped."""
    error = next((o["error"] for o in outs if "error" in o), None)
    return ({} if error is not None else {n: v for o in outs for n, v in o["scores"].items()}), error


# ------------------------------------------------------------------------------------------ Ray setup
def start_ray(cfg: RunConfig) -> bool:
    """Connect to `parallel.ray_address` or start a quiet local cluster; True if this call started Ray."""
    if ray.is_initialized():
        return False
    common = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
    address = cfg.parallel.ray_address
    try:
        if address:
            ray.init(address=address, **common)
        else:
            # Token auth stays on (Ray's default), but with a token held in the environment of this process
            # and the cluster it starts, so nothing is written to the user's home directory.
            if "RAY_AUTH_TOKEN" not in os.environ and "RAY_AUTH_TOKEN_PATH" not in os.environ:
                os.environ.setdefault("RAY_AUTH_MODE", "token")
                os.environ["RAY_AUTH_TOKEN"] = _TOKEN
                _reload_ray_auth()
            ray.init(num_cpus=cfg.parallel.workers, include_dashboard=False, _node_ip_address=LOOPBACK,
                     object_store_memory=128 * 1024 ** 2, **common)
    except Exception as e:
        detail = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}" if str(e).strip() else type(e).__name__
        if address:
            raise EnmpError(f"cannot connect to Ray ({detail})", where=f"--ray-address {address}",
                            fix="check the address (HOST:6379 or ray://HOST:10001), the cluster's auth token "
                                "(RAY_AUTH_TOKEN or ~/.ray/auth_token) and that it runs the same Ray and Python "
                                "versions") from None
        raise EnmpError(f"cannot start a local Ray cluster ({detail})", where="--workers",
                        fix="check free memory and /tmp space, or run with --workers 1") from None
    return True


def _reload_ray_auth() -> None:
    """Make this process see the auth settings just put in the environment (Ray read them at import)."""
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")  # what Ray itself does when it turns token auth on for a new local cluster
        AuthenticationTokenLoader.instance().reset_cache()
    except Exception:  # another Ray version: it reads the environment when ray.init starts the cluster
        pass


def _wants_gpu(device: str) -> Optional[bool]:
    if device == "cpu":
        return False
    if device.startswith("cuda"):
        return True
    if device == "auto":
        return None  # decided from the cluster's resources
    raise EnmpError(f"unknown device '{device}'", where="--device", fix="use auto, cpu, cuda or cuda:N")


def plan_workers(cfg: RunConfig, cluster_gpus: float, cpu_count: Optional[int]) -> dict:
    """Actor options: one GPU per actor on CUDA, else one CPU slot; threads so N workers fit the cores."""
    n = cfg.parallel.workers
    gpu = _wants_gpu(cfg.eval.device)
    if gpu is None:
        gpu = cluster_gpus >= 1
    if gpu and cluster_gpus < n:
        raise EnmpError(f"{n} workers need {n} GPUs (one actor per GPU) but the Ray cluster has "
                        f"{int(cluster_gpus)}", where="--workers",
                        fix=f"use --workers {max(1, int(cluster_gpus))} or --device cpu")
    threads = cfg.eval.threads or max(1, (cpu_count or 1) // n)
    # Inside a GPU actor Ray sets CUDA_VISIBLE_DEVICES to its one GPU, so "cuda" (= cuda:0) is that GPU.
    device = "cuda" if gpu else "cpu"
    options = {"num_gpus": 1, "num_cpus": 1} if gpu else {"num_cpus": 1}
    return {"options": options, "threads": threads, "device": device}


# ------------------------------------------------------------------------------------------ the pool
class ParallelEvaluator:
    """Same interface as `Evaluator`, with the forward passes spread over Ray actors."""

    def __init__(self, ws: Workspace, method: str, params: MergeParams, cache_mb: float = 1024, *,
                 max_retries: int = 3, log=None):
        self.ws, self.method, self.params = ws, method, params
        self.cfg: RunConfig = ws.cfg
        self.expert: dict[str, dict[str, float]] = {}
        self._results: dict[tuple[str, bytes], CandidateResult] = {}
        self.forward_evaluations = 0
        self.restarts = 0
        self.busy_seconds = 0.0  # time the workers spent evaluating (vs waiting), summed over workers
        self.busy_cpu_seconds = 0.0  # CPU time of those evaluations (less than busy_seconds when cores are short)
        self.max_retries = max_retries
        if log is None:
            from rich.console import Console

            log = Console(stderr=True).log
        self.log = log  # one line per event that changes the pool (a worker restarted)
        self._actors: list = []
        self._owns_ray = start_ray(self.cfg)
        try:
            resources = ray.cluster_resources()
            # A local cluster shares this machine's cores; on a joined cluster, the cluster's CPUs.
            cores = int(resources.get("CPU", 0)) if self.cfg.parallel.ray_address else os.cpu_count()
            self.plan = plan_workers(self.cfg, resources.get("GPU", 0.0), cores)
            worker_cfg = self.cfg.model_copy(deep=True)
            worker_cfg.eval.device = self.plan["device"]
            worker_cfg.eval.threads = self.plan["threads"]
            self._worker_cfg = worker_cfg
            self._remote = ray.remote(**self.plan["options"])(_Worker)
            self._actors = [self._spawn() for _ in range(self.cfg.parallel.workers)]
            self.workers_info = [self._check_ready(a) for a in self._actors]
        except BaseException:
            self.close()
            raise

    # -------------------------------------------------------------- actors
    def _spawn(self):
        return self._remote.remote(self._worker_cfg, self.method, self.params, self.plan["threads"])

    def _check_ready(self, actor) -> dict:
        try:
            info = ray.get(actor.ready.remote())
        except RayActorError as e:
            raise EnmpError(f"a Ray worker failed to start ({_first_line(e)})", where="parallel workers",
                            fix="check that every node has enmp installed and can read the run's files") from None
        if "error" in info:
            raise EnmpError(f"a Ray worker could not load the run: {info['error']}", where="parallel workers")
        if tuple(info["shape"]) != self.shape or list(info["tasks"]) != self.ws.task_names:
            raise EnmpError(f"a worker sees a different run (mask shape {tuple(info['shape'])}, driver "
                            f"{self.shape})", where="parallel workers",
                            fix="every node must see the same base, adapters and data files")
        return info

    def _replace(self, slot: int) -> None:
        try:
            ray.kill(self._actors[slot], no_restart=True)
        except Exception:  # already gone
            pass
        self._actors[slot] = self._spawn()
        self.restarts += 1
        self.log(f"worker {slot} died; restarted it and re-running its candidate")

    def close(self) -> None:
        """Stop the workers (and the local Ray cluster if this evaluator started it). Safe to call twice."""
        for a in self._actors:
            try:
                ray.kill(a, no_restart=True)
            except Exception:
                pass
        self._actors = []
        if self._owns_ray and ray.is_initialized():
            ray.shutdown()
        self._owns_ray = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -------------------------------------------------------------- dispatch
    def _run(self, jobs: Sequence[tuple]) -> list[dict]:
        """Run `scores` jobs on the actors (one in flight per actor); results in job order."""
        if not self._actors:
            raise EnmpError("the parallel evaluator is closed")
        results: list[Optional[dict]] = [None] * len(jobs)
        queue = deque(range(len(jobs)))
        idle = deque(range(len(self._actors)))
        inflight: dict = {}
        attempts = [0] * len(jobs)
        while queue or inflight:
            while queue and idle:
                slot, j = idle.popleft(), queue.popleft()
                inflight[self._actors[slot].scores.remote(*jobs[j])] = (slot, j)
            done, _ = ray.wait(list(inflight), num_returns=1)
            for ref in done:
                slot, j = inflight.pop(ref)
                try:
                    results[j] = ray.get(ref)
                    self.busy_seconds += results[j].get("seconds", 0.0)
                    self.busy_cpu_seconds += results[j].get("cpu_seconds", 0.0)
                except RayActorError as e:
                    attempts[j] += 1
                    if attempts[j] > self.max_retries:
                        raise EnmpError(f"a candidate killed {attempts[j]} workers in a row ({_first_line(e)})",
                                        where="parallel workers",
                                        fix="check the workers' memory (a smaller eval.batch_size helps)") from None
                    self._replace(slot)
                    queue.appendleft(j)
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, EnmpError):
                        raise EnmpError(cause.what, where=cause.where, fix=cause.fix) from None
                    raise EnmpError(f"a worker failed ({_first_line(cause or e)})", where="parallel workers") from None
                idle.append(slot)
        return results  # type: ignore[return-value]

    # -------------------------------------------------------------- Evaluator interface
    @property
    def shape(self) -> tuple[int, int]:
        return (len(self.ws.tasks), len(self.ws.groups))

    def scores(self, keep: np.ndarray, split: str = "val", tasks: Optional[Sequence[int]] = None,
               method: Optional[str] = None, params: Optional[MergeParams] = None) -> dict[str, float]:
        """Raw accuracy per task for the merge of `keep`, one job per task (raises NumericalError on NaN/Inf)."""
        keep = np.asarray(keep, dtype=bool)
        idx = range(len(self.ws.tasks)) if tasks is None else tasks
        scores, error = _combine(self._run([(keep, split, [t], method, params) for t in idx]))
        if error is not None:
            raise NumericalError(error)
        return scores

    def compute_expert(self, split: str) -> dict[str, float]:
        """Each expert alone on its own task; the T experts run in parallel."""
        T, G = self.shape
        jobs = []
        for t in range(T):
            keep = np.zeros((T, G), dtype=bool)
            keep[t] = True
            jobs.append((keep, split, [t], "ta", MergeParams(lam=1.0)))
        out, error = _combine(self._run(jobs))
        if error is not None:
            raise NumericalError(error)
        self.expert[split] = {name: out[name] for name in self.ws.task_names}
        return self.expert[split]

    def evaluate_many(self, keeps: Sequence[np.ndarray], split: str = "val") -> list[CandidateResult]:
        """Results in input order; cached masks are not re-run, repeats within the batch run once."""
        keys = [(split, mask_key(k)) for k in keeps]
        todo: dict[tuple, np.ndarray] = {}
        for key, keep in zip(keys, keeps):
            if key not in self._results and key not in todo:
                todo[key] = np.asarray(keep, dtype=bool)
        if todo and split not in self.expert:
            self.compute_expert(split)
        fresh = set()
        if todo:
            # One job per (candidate, task): with whole candidates as jobs, a generation whose fresh
            # candidates do not divide evenly over the workers leaves some of them idle at its end (the
            # generation barrier). Jobs go out candidate by candidate, so a worker's re-patching stays small.
            n_tasks = len(self.ws.tasks)
            outs = self._run([(keep, split, [t], None, None) for keep in todo.values() for t in range(n_tasks)])
            for c, key in enumerate(todo):
                scores, error = _combine(outs[c * n_tasks:(c + 1) * n_tasks])
                if error is not None:
                    res = CandidateResult({}, float("-inf"), error)
                else:
                    res = CandidateResult(scores, fitness(scores, self.expert[split]))
                self._results[key] = res
                self.forward_evaluations += 1
                fresh.add(key)
        results = []
        for key in keys:
            hit = self._results[key]
            first = key in fresh
            fresh.discard(key)  # later copies of the same mask in this batch are cache hits, as in serial
            results.append(CandidateResult(hit.scores, hit.fitness, hit.error, cached=not first))
        return results

    def evaluate(self, keep: np.ndarray, split: str = "val") -> CandidateResult:
        return self.evaluate_many([keep], split)[0]

    def remember(self, keep: np.ndarray, split: str, result: CandidateResult) -> None:
        self._results[(split, mask_key(keep))] = result

    def clear_cache(self) -> None:
        """Forget every result and expert score (the workers and their merge caches stay)."""
        self._results.clear()
        self.expert.clear()
        self.forward_evaluations = 0

    # -------------------------------------------------------------- test hooks
    def crash_worker(self, slot: int = 0, after: int = 1) -> None:
        """Test hook: make worker `slot` exit while running its `after`-th next job."""
        ray.get(self._actors[slot].crash_after.remote(after))

    def worker_pids(self) -> list[int]:
        return [ray.get(a.ready.remote())["pid"] for a in self._actors]


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return (lines[0] if lines else type(e).__name__)[:300]
