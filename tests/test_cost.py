"""Cost accounting: examples and example × layer forwards actually computed, search only, cumulative."""

from __future__ import annotations

import json

import yaml

from enmp.api import run_search
from enmp.config import load_config
from tiny_runs import make_run

N_VAL, N_TASKS, N_LAYERS = 10, 3, 2  # tiny_runs' BERT has 2 layers


def _run(tmp_path, name, prefix_cache_mb):
    cfg_path = make_run(tmp_path / name, "bert", n_tasks=N_TASKS, n_val=N_VAL, n_test=6, generations=3,
                        popsize=4, random_repeats=1, track_test=True)
    cfg = load_config(cfg_path)
    cfg.eval.prefix_cache_mb = prefix_cache_mb
    report = run_search(cfg, tmp_path / name / "run", show_progress=False, print_table=False)
    history = [json.loads(l) for l in (tmp_path / name / "run/history.jsonl").read_text().splitlines()]
    return report, history


def test_cost_counts_forwarded_examples_and_layers(tmp_path):
    report, history = _run(tmp_path, "plain", 0)
    costs = [h["cost"] for h in history]
    assert all(b["examples"] >= a["examples"] for a, b in zip(costs, costs[1:]))
    assert report.cost == costs[-1]
    # only candidates that ran the model cost anything: cached masks, expert/base scoring, the test-split
    # tracking of new bests and the random baseline are not search work
    assert report.cost["examples"] == report.forward_evaluations * N_TASKS * N_VAL
    assert report.cost["layer_examples"] == report.cost["examples"] * N_LAYERS  # no prefix cache: every layer


def test_prefix_cache_hits_are_not_counted(tmp_path):
    plain, _ = _run(tmp_path, "plain", 0)
    cached, _ = _run(tmp_path, "cached", 512)
    assert cached.pruned == plain.pruned and cached.enmp == plain.enmp  # the same search
    assert cached.cost["examples"] == plain.cost["examples"]
    assert cached.cost["layer_examples"] < plain.cost["layer_examples"]  # shared layers were skipped
    saved = yaml.safe_load((tmp_path / "cached/run/report.json").read_text())
    assert saved["cost"] == cached.cost


def test_examples_already_scored_answer_a_subset_without_running_or_cost(tmp_path):
    """A mask scored on the whole split serves any of its folds from memory (not charged, marked cached), with
    exactly the fitness a direct evaluation of that fold gives; a fresh evaluator runs it and is charged."""
    import numpy as np

    from enmp import LocalEvaluator, MergeParams, Subset, build_workspace

    cfg = load_config(make_run(tmp_path, "bert", n_tasks=N_TASKS, n_val=N_VAL, n_test=6))
    ws = build_workspace(cfg)
    keep = np.ones((N_TASKS, 2), bool)
    keep[1, 0] = False
    fold = Subset.folds([N_VAL] * N_TASKS, 3, seed=0)[1]
    ev = LocalEvaluator(ws, "ta", MergeParams(lam=0.5))
    ev.evaluate(keep)
    before = ev.search_cost.to_json()
    sliced = ev.evaluate(keep, subset=fold)
    assert sliced.cached and ev.search_cost.to_json() == before
    direct = LocalEvaluator(ws, "ta", MergeParams(lam=0.5)).evaluate(keep, subset=fold)
    assert not direct.cached and direct.fitness == sliced.fitness and direct.scores == sliced.scores
    assert all((a == b).all() for a, b in zip(direct.correct, sliced.correct))
