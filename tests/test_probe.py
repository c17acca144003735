"""`enmp probe`: single-module effects equal the fitness differences of single-module prunings, the
interaction check measures joint prunings, and outputs are one atomic directory."""

from __future__ import annotations

import json

import numpy as np
import pytest

from enmp import LocalEvaluator, load_config, run_probe
from enmp.search import get_strategy
from tiny_runs import cli, make_run


@pytest.fixture(scope="module")
def probed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("probe")
    cfg = load_config(make_run(tmp, "bert", n_tasks=3, n_val=24, n_test=8))
    data = run_probe(cfg, tmp / "out", top=3, print_table=False)
    return cfg, data, tmp


def test_effects_are_the_fitness_differences_of_single_prunings_and_greedys_gains(probed):
    from enmp import build_workspace

    cfg, data, _ = probed
    ws = build_workspace(cfg)
    ev = LocalEvaluator(ws, cfg.merge.method, cfg.merge.params())
    shape = (len(data["tasks"]), len(data["layers"]))
    full = ev.evaluate(np.ones(shape, bool)).fitness
    greedy = get_strategy("greedy")(shape, rho=0.34)
    cands = greedy.ask()
    greedy.tell(cands, ev.evaluate_many([c.mask for c in cands]))
    for i in range(shape[0] * shape[1]):
        keep = np.ones(shape[0] * shape[1], bool)
        keep[i] = False
        expected = ev.evaluate(keep.reshape(shape)).fitness - full
        got = data["gain"][i // shape[1]][i % shape[1]]
        assert got == pytest.approx(expected, abs=1e-9)
        assert greedy.gains.ravel()[i] == pytest.approx(expected, abs=1e-9)  # one computation, two uses
    for task in data["tasks"]:  # per-task effects average to the fitness effect
        assert np.isfinite(np.array(data["task_gain"][task], dtype=float)).all()
    mean_task = np.mean([np.array(data["task_gain"][t], dtype=float) for t in data["tasks"]], axis=0)
    assert np.allclose(mean_task, np.array(data["gain"], dtype=float))


def test_joint_checks_are_measured_and_outputs_written(probed):
    cfg, data, tmp = probed
    for j in data["joints"]:
        assert len(j["modules"]) >= 2 and np.isfinite(j["measured_gain"])
        assert j["sum_of_single_gains"] == pytest.approx(sum(data["ranked"][k]["gain"] for k in range(len(j["modules"]))))
    saved = json.loads((tmp / "out" / "probe.json").read_text())
    assert saved["gain"] == data["gain"] and (tmp / "out" / "probe.png").is_file()
    assert not list(tmp.glob(".out.*"))  # no temp dir left behind


def test_cli_refuses_an_existing_output_and_a_run_without_mask(probed, tmp_path):
    _, _, tmp = probed
    config = tmp / "run.yaml"
    code, _, err = cli("probe", "--config", config, "--out", tmp / "out")
    assert code == 2 and "--overwrite" in err
    code, _, err = cli("probe", "--config", config, "--out", tmp_path / "p", "--run", tmp_path)
    assert code == 2 and "has no mask.json" in err and not (tmp_path / "p").exists()
