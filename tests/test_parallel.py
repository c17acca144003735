"""Ray-parallel evaluation: same result as the serial run, survives a dying worker, Ray only when asked.

One local Ray cluster (2 CPUs, bound to 127.0.0.1) and one pair of workers serve the whole module: starting
Ray and loading a workspace in each actor is what costs time here, not the evaluations.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from enmp.config import load_config
from enmp.engine.run.search_run import SearchRun
from tiny_runs import make_run

TOKEN_FILE = Path.home() / ".ray" / "auth_token"


def _trace(run: SearchRun) -> dict:
    j = run.journal
    return {"evaluations": [(e["keep"], e["fitness"], e["cached"], e["scores"]) for e in j.evaluations],
            "history": [(h["best_fitness"], h["gen_best"], h["gen_mean"], h["n_pruned"]) for h in j.history],
            "expert": j.expert, "base": j.base}


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("parallel")
    path = make_run(root, "bert", n_tasks=3, n_val=16, n_test=16, generations=3, popsize=6, random_repeats=1)
    cfg = load_config(path)
    cfg.eval.threads = 1  # serial and workers both use one thread: identical float paths
    cfg.output.save_model = cfg.output.save_adapter = False
    return root, path, cfg


@pytest.fixture(scope="module")
def serial(setup):
    root, _, cfg = setup
    run = SearchRun(cfg, root / "serial", show_progress=False)
    report = run.run()
    return report, _trace(run)


@pytest.fixture(scope="module")
def parallel(setup):
    root, _, cfg = setup
    had_token = TOKEN_FILE.exists()
    cfg2 = cfg.model_copy(deep=True)
    cfg2.parallel.workers = 2
    run = SearchRun(cfg2, root / "parallel", show_progress=False)
    try:
        report = run.run()
        yield run, report, cfg2, had_token
    finally:
        run.evaluator.close()


def test_two_workers_match_the_serial_run(serial, parallel):
    from enmp.engine.scoring.parallel import ParallelEvaluator

    s_report, s_trace = serial
    run, p_report, _, _ = parallel
    from enmp.engine.loading.workspace import Workspace

    assert isinstance(run.evaluator, ParallelEvaluator)
    assert not isinstance(run.inputs, Workspace)  # the driver loads no model and no data
    assert _trace(run) == s_trace
    assert p_report.pruned == s_report.pruned
    assert p_report.enmp == s_report.enmp
    assert p_report.random == s_report.random
    assert p_report.forward_evaluations == s_report.forward_evaluations
    info = run.evaluator.workers_info
    assert len({w["pid"] for w in info}) == 2 and {w["threads"] for w in info} == {1}
    assert {w["device"] for w in info} == {"cpu"}


def test_local_cluster_is_loopback_only_with_token_auth(parallel):
    import ray

    _, _, _, had_token = parallel
    nodes = ray.nodes()
    assert nodes and all(n["NodeManagerAddress"] == "127.0.0.1" for n in nodes)
    assert os.environ.get("RAY_AUTH_MODE") == "token" and os.environ.get("RAY_AUTH_TOKEN")
    assert TOKEN_FILE.exists() == had_token  # no token written into the user's home


def test_a_killed_worker_is_restarted_and_the_run_finishes_the_same(setup, serial, parallel):
    root, _, _ = setup
    _, s_trace = serial
    first, _, cfg2, _ = parallel
    pool = first.evaluator
    pool.clear_cache()
    pids = pool.worker_pids()
    pool.crash_worker(0, after=4)  # worker 0 os._exit()s in the middle of its 4th job (one task of a candidate)
    run = SearchRun(cfg2, root / "crash", show_progress=False, evaluator_factory=lambda *a: pool)
    run.run()
    assert pool.restarts == 1
    new_pids = pool.worker_pids()
    assert new_pids[0] != pids[0] and new_pids[1] == pids[1]
    assert _trace(run) == s_trace


def test_duplicates_in_a_batch_run_once_and_come_back_in_order(parallel):
    from enmp.engine.scoring.local import LocalEvaluator
    from enmp.engine.loading.workspace import build_workspace

    run, _, _, _ = parallel
    pool = run.evaluator
    pool.clear_cache()
    shape = pool.shape
    odd = np.zeros(shape, dtype=bool)
    odd[0, 0] = odd[2, 1] = True
    masks = [np.ones(shape, dtype=bool), np.zeros(shape, dtype=bool), odd]
    batch = [masks[0], masks[1], masks[0], masks[2], masks[1]]
    results = pool.evaluate_many(batch, "test")
    assert [r.cached for r in results] == [False, False, True, False, True]
    assert pool.forward_evaluations == 3
    local = LocalEvaluator(build_workspace(run.cfg), run.cfg.merge.method, run.params)  # in-process
    local.compute_expert("test")
    assert [r.fitness for r in results] == [local.evaluate(m, "test").fitness for m in batch]
    assert [r.scores for r in results] == [local.evaluate(m, "test").scores for m in batch]


def test_plan_workers_devices():
    from enmp.engine.scoring.parallel import plan_workers
    from enmp.errors import EnmpError

    cfg = load_config_stub(workers=2, device="cpu")
    assert plan_workers(cfg, cluster_gpus=4, cpu_count=16) == {"options": {"num_cpus": 1}, "threads": 8,
                                                              "device": "cpu"}
    cfg = load_config_stub(workers=2, device="auto")
    plan = plan_workers(cfg, cluster_gpus=2, cpu_count=16)
    assert plan["options"]["num_gpus"] == 1 and plan["device"] == "cuda"
    assert plan_workers(cfg, cluster_gpus=0, cpu_count=2)["device"] == "cpu"
    cfg = load_config_stub(workers=4, device="cuda:1")
    with pytest.raises(EnmpError, match="4 GPUs"):
        plan_workers(cfg, cluster_gpus=2, cpu_count=16)
    cfg = load_config_stub(workers=2, device="cpu", threads=3)
    assert plan_workers(cfg, cluster_gpus=0, cpu_count=2)["threads"] == 3


def load_config_stub(workers: int, device: str, threads=None):
    from enmp.config import RunConfig

    return RunConfig.model_validate({
        "base": "b", "tasks": [{"name": "t", "adapter": "a", "data": {"files": {"val": "v.csv"}}}],
        "parallel": {"workers": workers}, "eval": {"device": device, "threads": threads}})


def test_one_worker_never_imports_ray(setup, tmp_path):
    _, path, _ = setup
    code = textwrap.dedent(f"""
        import sys
        from enmp.config import load_config
        from enmp.engine.run.search_run import SearchRun
        import enmp.cli.main
        cfg = load_config({str(path)!r})
        cfg.search.generations = 1
        cfg.search.random_repeats = 0
        assert cfg.parallel.workers == 1
        SearchRun(cfg, {str(tmp_path / 'one')!r}, show_progress=False).run()
        print("RAY_IMPORTED", "ray" in sys.modules)
    """)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "RAY_IMPORTED False" in out.stdout
