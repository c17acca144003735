"""Strategies that score parts of the validation split give, with Ray workers, the run the serial evaluator
gives: every round, per-example outcome, the mask, the decision and the cost."""

from __future__ import annotations

import json

import pytest

from enmp.api import run_search
from enmp.config import load_config
from tiny_runs import make_run


def _trace(run_dir):
    rows = [json.loads(l) for l in (run_dir / "evaluations.jsonl").read_text().splitlines()]
    return [(r["keep"], r["examples"], r["fitness"], r["cached"], r.get("correct")) for r in rows]


@pytest.mark.parametrize("strategy, options", [("fast", {}), ("crossfit", {"inner": "greedy", "folds": 3})])
def test_two_workers_match_the_serial_run(tmp_path, strategy, options):
    cfg_path = make_run(tmp_path, "bert", n_tasks=3, n_val=16, n_test=8, strategy=strategy, generations=3,
                        popsize=4, random_repeats=0, track_test=False, options=options)
    cfg = load_config(cfg_path)
    cfg.output.save_model = cfg.output.save_adapter = False
    serial = run_search(cfg, tmp_path / "serial", show_progress=False, print_table=False)
    cfg2 = cfg.model_copy(deep=True)
    cfg2.parallel.workers = 2
    parallel = run_search(cfg2, tmp_path / "parallel", show_progress=False, print_table=False)
    assert _trace(tmp_path / "parallel") == _trace(tmp_path / "serial")
    assert any(t[1] for t in _trace(tmp_path / "serial"))  # the rounds really were scored on parts of the split
    assert parallel.pruned == serial.pruned and parallel.enmp == serial.enmp
    assert parallel.decision == serial.decision and parallel.cost == serial.cost
    assert parallel.expected_gain == serial.expected_gain
