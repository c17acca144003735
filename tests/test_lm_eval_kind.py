"""The `lm_eval` task kind (issue 26): lm-evaluation-harness tasks scored by lm-eval itself on the live model.

The acceptance test runs `enmp search` on a tiny random Llama with two multiple-choice lm-eval tasks over local
JSONL files (task YAMLs with `dataset_path: json`, offline) and checks every accuracy and fitness it reports
against `lm_eval.simple_evaluate` on the same merges written to disk (`merge_to_dir`): each expert, the full
merge, the search's answer, and a pruned mask scored through the evaluator. The rest checks the per-example
outcomes strategies read (subsets of documents), cost accounting, the config shape and each refusal.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

pytest.importorskip("lm_eval", reason="the lm-eval extra is not installed (pip install 'enmp[lm-eval]')")

from enmp.config import load_config, parse_config  # noqa: E402
from enmp.engine.outputs.merge_dir import merge_to_dir  # noqa: E402
from enmp.errors import EnmpError  # noqa: E402
from enmp.masking import Mask  # noqa: E402
from enmp.merging import MergeParams  # noqa: E402
from enmp.metrics import fitness  # noqa: E402
from enmp.search import Subset  # noqa: E402
from lm_eval_tasks import lm_eval_accuracies, make_lm_eval_run, write_mc_task  # noqa: E402
from tiny_runs import cli  # noqa: E402

LAM = 0.5
BATCH = 8


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """`enmp search` on two lm_eval tasks; returns the run YAML, the config, the run directory and its report."""
    root = tmp_path_factory.mktemp("lm_eval_run")
    path = make_lm_eval_run(root, n_val=24, n_test=16)
    code, _out, err = cli("search", "--config", path, "--out", root / "run")
    assert code == 0, err
    cfg = load_config(path)
    return {"root": root, "yaml": path, "cfg": cfg, "dir": root / "run",
            "report": json.loads((root / "run" / "report.json").read_text())}


def _task_yaml(cfg, name: str) -> Path:
    return Path(next(t for t in cfg.tasks if t.name == name).kind_options()["task"])


def _merged(cfg, out: Path, mask=None, only=None) -> Path:
    """`enmp merge` of the run's adapters (only one, at λ 1: that expert alone) into a model directory."""
    adapters = {t.name: t.adapter for t in cfg.tasks if only in (None, t.name)}
    params = MergeParams(lam=1.0 if only else LAM)
    merge_to_dir(cfg.base, adapters, out, method="ta", params=params, mask=mask)
    return out


def _reference(cfg, model_dir: Path, split: str, tasks=None) -> dict[str, float]:
    yamls = {t.name: _task_yaml(cfg, t.name) for t in cfg.tasks if tasks is None or t.name in tasks}
    return lm_eval_accuracies(model_dir, yamls, {"val": "validation", "test": "test"}[split], batch_size=BATCH)


# ------------------------------------------------------------------ acceptance
def test_search_scores_equal_simple_evaluate(run, tmp_path):
    cfg, report = run["cfg"], run["report"]
    experts = {t.name: _merged(cfg, tmp_path / f"expert-{t.name}", only=t.name) for t in cfg.tasks}
    full = _merged(cfg, tmp_path / "full")
    for split in ("val", "test"):
        expert = {}
        for name, model_dir in experts.items():  # each expert alone, on its own task
            expert.update(_reference(cfg, model_dir, split, tasks=[name]))
        assert expert == pytest.approx(report["expert"][split], abs=1e-9)
        merged = _reference(cfg, full, split)
        assert merged == pytest.approx(report["base"][split]["raw"], abs=1e-9)
        assert fitness(merged, expert) == pytest.approx(report["base"][split]["mean_normalized"], abs=1e-9)
        chosen = _reference(cfg, run["dir"] / "model", split)  # the search's answer, as the run wrote it
        assert chosen == pytest.approx(report["enmp"][split]["raw"], abs=1e-9)
        assert fitness(chosen, expert) == pytest.approx(report["enmp"][split]["mean_normalized"], abs=1e-9)


def test_pruned_mask_subsets_and_cost(run, tmp_path):
    from enmp.engine.loading.workspace import build_workspace
    from enmp.engine.scoring.local import LocalEvaluator

    cfg = run["cfg"]
    ws = build_workspace(cfg)
    ev = LocalEvaluator(ws, "ta", MergeParams(lam=LAM))
    keep = np.ones(ev.shape, dtype=bool)
    keep[0, 1] = keep[1, 0] = False
    out = ev.evaluate(keep, "val")
    mask = Mask([t.name for t in cfg.tasks], list(ws.groups), keep)
    reference = _reference(cfg, _merged(cfg, tmp_path / "pruned", mask=mask), "val")
    assert out.scores == pytest.approx(reference, abs=1e-9)
    assert out.fitness == pytest.approx(fitness(reference, ev.expert["val"]), abs=1e-9)
    # a strategy asking for some documents only (run first: known documents are never re-run) gets the
    # per-document outcomes of the whole split
    other = keep.copy()
    other[1, 1] = False
    some = Subset("some", [range(0, 24, 2), range(1, 24, 3)])
    part = ev.evaluate(other, "val", some)
    whole = ev.evaluate(other, "val")
    assert not part.cached and not whole.cached
    for bits, all_bits, ix in zip(part.correct, whole.correct, some.index):
        assert len(bits) == len(ix) and np.array_equal(bits, all_bits[ix])
    # cost: the examples and the log-likelihood requests lm-eval ran, every layer (no prefix reuse)
    assert ev.cost_model.prefix is False
    assert ev.live.prefix is None or ev.live.prefix.layers_run == 0
    requests = sum(len(reqs) for reqs in ws.prepared("val", 0, None).batches[0].source.requests)
    n_choices = sum(len(doc["choices"]) for doc in ws.prepared("val", 0, None).batches[0].source.docs)
    assert requests == n_choices and ws.prepared("val", 0, None).rows == n_choices


def test_fast_strategy_reads_per_document_outcomes(run, tmp_path):
    data = yaml.safe_load(run["yaml"].read_text())
    data["search"] = {"strategy": "fast", "generations": 2, "popsize": 4, "rho": 0.34, "seed": 1,
                      "random_repeats": 0, "track_test": False, "options": {"folds": 4, "confirm_folds": 1}}
    data["output"] = {"save_model": False}
    path = run["root"] / "fast.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    code, _out, err = cli("search", "--config", path, "--out", tmp_path / "fast")
    assert code == 0, err
    report = json.loads((tmp_path / "fast" / "report.json").read_text())
    assert report["cost"]["examples"] > 0 and report["base"]["val"]["raw"] == run["report"]["base"]["val"]["raw"]


def test_ray_workers_give_the_serial_run(run, tmp_path):
    """Each Ray worker rebuilds the workspace from the config (its own lm-eval tasks and wrapper)."""
    import importlib.util

    if importlib.util.find_spec("ray") is None:  # not importorskip: Ray reads its environment at import
        pytest.skip("ray not installed")
    code, _out, err = cli("search", "--config", run["yaml"], "--out", tmp_path / "ray", "--workers", 2)
    assert code == 0, err
    report = json.loads((tmp_path / "ray" / "report.json").read_text())
    for key in ("expert", "base", "enmp", "pruned", "cost"):
        assert report[key] == run["report"][key], key


# ------------------------------------------------------------------ config
def _parse(tmp_path, **task):
    entry = {"name": "a", "adapter": "a", "kind": "lm_eval", "task": "arc_easy", **task}
    return parse_config({"base": "base", "tasks": [entry]}, where="run.yaml", root=tmp_path)


def test_config_shape(tmp_path):
    tc = _parse(tmp_path, task="tasks/mine.yaml", limit=50, val_split="train").tasks[0]
    assert tc.data is None and tc.kind_options() == {
        "task": str(tmp_path / "tasks" / "mine.yaml"), "num_fewshot": 0, "metric": None, "limit": 50,
        "val_split": "train", "test_split": None}
    assert _parse(tmp_path).tasks[0].kind_options()["task"] == "arc_easy"  # a registered name stays a name
    with pytest.raises(EnmpError, match=re.escape("task 'a'.data: lm_eval tasks take no data — the task brings "
                                                  "its own documents")):
        _parse(tmp_path, data={"files": {"val": "v.csv"}})
    with pytest.raises(EnmpError, match=re.escape("task 'a'.task: lm_eval tasks need task — e.g. task: arc_easy")):
        parse_config({"base": "b", "tasks": [{"name": "a", "adapter": "a", "kind": "lm_eval"}]}, where="run.yaml",
                     root=tmp_path)
    with pytest.raises(EnmpError, match=re.escape("task 'a'.labels: lm_eval tasks take no labels")):
        _parse(tmp_path, labels=["x", "y"])
    with pytest.raises(EnmpError, match=re.escape("task 'a'.data: classification tasks need data — e.g. data:")):
        parse_config({"base": "b", "tasks": [{"name": "a", "adapter": "a"}]}, where="run.yaml", root=tmp_path)
    with pytest.raises(EnmpError, match="num_fewshot must be an integer ≥ 0"):
        _parse(tmp_path, num_fewshot=-1)


@pytest.mark.parametrize("change,options,expect", [
    ({"output_type": "generate_until"}, {},
     "is a generate_until task — enmp scores multiple_choice and loglikelihood"),
    ({"metric_list": [{"metric": "f1", "aggregation": "f1", "higher_is_better": True}]}, {"metric": "f1"},
     "task 'a'.metric: metric 'f1' of lm-eval task 'pick' is aggregated over the corpus (f1)"),
    ({"metric_list": [{"metric": "f1", "aggregation": "f1", "higher_is_better": True}]}, {},
     "task 'a'.metric: lm-eval task 'pick' has no accuracy-type metric (its metrics: f1)"),
    ({"test_split": None}, {}, "task 'a'.test_split: lm-eval task 'pick' names no test split — set test_split: to "
                               "one of its splits (test, validation)"),
    ({}, {"val_split": "train"}, "task 'a'.val_split: lm-eval task 'pick' has no split 'train' (its splits: "
                                 "test, validation)"),
])
def test_tasks_enmp_cannot_score_are_one_line(tmp_path, change, options, expect):
    from enmp.evaluation.kinds import LmEvalTask

    path = write_mc_task(tmp_path, "pick", {"validation": 3, "test": 3})
    task = {**yaml.safe_load(path.read_text()), **change}
    if change.get("output_type") == "generate_until":
        task.pop("doc_to_choice")
    path.write_text(yaml.safe_dump(task))
    tc = _parse(tmp_path, task=str(path), **options).tasks[0]
    with pytest.raises(EnmpError, match=re.escape(expect)):
        LmEvalTask.from_config(tc, tmp_path, {})


def test_a_missing_extra_is_one_line(tmp_path, monkeypatch):
    from enmp.evaluation.kinds import LmEvalTask

    monkeypatch.setitem(sys.modules, "lm_eval.tasks", None)  # as if lm-eval were not installed
    with pytest.raises(EnmpError, match=re.escape("task 'a'.kind: lm_eval tasks need the lm-eval package — pip "
                                                  "install 'enmp[lm-eval]'")):
        LmEvalTask.from_config(_parse(tmp_path).tasks[0], tmp_path, {})


def test_lm_eval_is_imported_only_by_its_tasks():
    code = "import enmp.api, enmp.evaluation, sys; assert 'lm_eval' not in sys.modules"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_dry_run_refuses_lm_eval_tasks_in_one_line(run, tmp_path):
    """Its examples come from lm-eval, which a tiny offline stand-in cannot imitate: one line, nothing written."""
    code, _out, err = cli("search", "--config", run["yaml"], "--out", tmp_path / "dry", "--dry-run")
    assert code == 2 and "reads its examples from its own source" in err and "Traceback" not in err
    assert not (tmp_path / "dry").exists()
