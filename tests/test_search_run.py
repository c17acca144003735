"""`enmp search` end to end on tiny models: every output file, replay, report, resume after kill -9."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from safetensors.torch import load_file

from enmp.cli.main import main
from enmp.config import load_config
from enmp.engine.scoring.local import LocalEvaluator
from enmp.engine.run import journal as journal_module
from enmp.engine.run.journal import Journal
from enmp.engine.run.run_report import RunReport
from enmp.api import run_search
from enmp.engine.loading.workspace import build_workspace
from enmp.masking import prune_budget
from enmp.merging import MergeParams
from tiny_runs import make_run

RUN_FILES = ["config.yaml", "mask.json", "history.jsonl", "report.json", "expert.json", "evaluations.jsonl",
             "plots/convergence.png", "plots/mask.png", "model/config.json", "model/model.safetensors",
             "adapter/adapter_config.json", "adapter/adapter_model.safetensors", "state/journal.json"]


def _cli(args, capsys=None):
    try:
        main(args)
    except SystemExit as e:
        return e.code
    return 0


def _check_run_dir(run: Path, n_tasks: int, generations: int):
    for f in RUN_FILES:
        assert (run / f).is_file(), f
    report = RunReport.load(run)
    assert set(json.loads((run / "report.json").read_text())) >= {
        "tasks", "method", "strategy", "pruned", "evaluations", "seconds", "expert", "base", "enmp", "random"}
    for block in ("base", "enmp", "random"):
        for split in ("val", "test"):
            s = getattr(getattr(report, block), split)
            assert set(s.raw) == set(report.tasks) and len(s.normalized) == n_tasks
            assert np.isfinite(s.mean_normalized)
    assert report.random.test.std is not None
    assert report.enmp.val.mean_normalized >= report.base.val.mean_normalized
    history = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines()]
    assert [h["generation"] for h in history] == list(range(1, generations + 1))
    assert all(b >= a for a, b in zip([h["best_fitness"] for h in history], [h["best_fitness"] for h in history][1:]))
    mask = json.loads((run / "mask.json").read_text())
    assert len(mask["keep"]) == n_tasks and [[t, l] for t, l in report.pruned] == [
        [mask["tasks"][i], mask["layers"][j]] for i, row in enumerate(mask["keep"]) for j, v in enumerate(row) if not v]
    assert (run / "plots/convergence.png").read_bytes()[:4] == b"\x89PNG"
    return report


@pytest.mark.parametrize("family", ["bert", "llama", "clip"])
def test_search_end_to_end_each_family(tmp_path, family, capsys):
    cfg_path = make_run(tmp_path, family, n_tasks=3, n_val=12, n_test=12)
    run = tmp_path / "run"
    assert _cli(["search", "--config", str(cfg_path), "--out", str(run), "--generations", "2"]) == 0
    report = _check_run_dir(run, 3, 2)
    assert report.method == "ta" and report.strategy == "cma"
    out = capsys.readouterr().out
    assert "+ ENMP" in out and "base merge" in out and "expert" in out
    # the report command prints the same table again
    assert _cli(["report", str(run)]) == 0
    assert "+ ENMP" in capsys.readouterr().out
    # the merged model loads as the base's class
    import transformers

    arch = json.loads((run / "model/config.json").read_text())["architectures"][0]
    getattr(transformers, arch).from_pretrained(str(run / "model"))


def test_replay_from_saved_config_gives_the_same_run(tmp_path):
    cfg_path = make_run(tmp_path, "bert", n_val=12, n_test=12)
    first = run_search(load_config(cfg_path), tmp_path / "a", show_progress=False, print_table=False)
    saved = tmp_path / "a" / "config.yaml"
    second = run_search(load_config(saved), tmp_path / "b", show_progress=False, print_table=False)
    assert first.pruned == second.pruned and first.enmp == second.enmp
    assert (tmp_path / "a/model/model.safetensors").read_bytes() == (tmp_path / "b/model/model.safetensors").read_bytes()


def test_flags_override_yaml_and_are_saved(tmp_path):
    cfg_path = make_run(tmp_path, "bert", n_val=8, n_test=8)
    run = tmp_path / "run"
    assert _cli(["search", "--config", str(cfg_path), "--out", str(run), "--method", "ties", "--strategy", "random",
                 "--generations", "1", "--popsize", "3", "--rho", "0.5", "--seed", "7"]) == 0
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["merge"]["method"] == "ties" and saved["search"]["strategy"] == "random"
    assert saved["search"]["popsize"] == 3 and saved["search"]["rho"] == 0.5 and saved["search"]["seed"] == 7
    assert json.loads((run / "report.json").read_text())["evaluations"] == 3


def test_greedy_baseline_and_none_strategy(tmp_path):
    cfg_path = make_run(tmp_path, "bert", n_val=8, n_test=8, greedy_baseline=True, strategy="none")
    report = run_search(load_config(cfg_path), tmp_path / "run", show_progress=False, print_table=False)
    assert report.pruned == [] and report.enmp.val == report.base.val
    assert report.greedy is not None
    assert 0 <= report.greedy.n_pruned <= prune_budget(0.34, len(report.tasks) * len(report.layers))
    assert np.isfinite(report.greedy.test.mean_normalized)


def test_numerical_failure_is_recorded_and_search_goes_on(tmp_path):
    from safetensors.torch import save_file

    cfg_path = make_run(tmp_path, "bert", n_val=8, n_test=8)
    adapter = tmp_path / "task2" / "adapter_model.safetensors"
    tensors = load_file(str(adapter))
    for k in tensors:  # finite factors whose product overflows float32 in layer 1 only
        if ".layer.1." in k:
            tensors[k] = tensors[k] * 1e25
    save_file(tensors, str(adapter))
    cfg = load_config(cfg_path)
    ws = build_workspace(cfg)
    ev = LocalEvaluator(ws, "ta", MergeParams(lam=0.5))
    ev.expert["val"] = {t: 50.0 for t in ws.task_names}
    full = np.ones(ev.shape, bool)
    bad = ev.evaluate(full)
    assert bad.fitness == float("-inf") and "NaN/Inf" in bad.error
    ok = full.copy()
    ok[2, 1] = False
    assert np.isfinite(ev.evaluate(ok).fitness)


def _journal_generation(run: Path) -> int:
    try:
        return json.loads((run / "state/journal.json").read_text())["generation"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return 0


def _strip(history):
    return [{k: v for k, v in h.items() if k != "elapsed"} for h in history]  # measured, not decided


#: `enmp search` whose generations take at least 0.2 s each: the tiny run's whole search is under a second, so
#: without pacing a signal sent at generation 3 could land after the run had finished (seen on a loaded machine).
#: It also restores Python's own SIGINT handler: a test suite started in the background (`cmd &` in a script)
#: passes SIGINT on as ignored, and Python then never raises KeyboardInterrupt (the run finished with exit 0).
PACED_CLI = """import signal, sys, time
signal.signal(signal.SIGINT, signal.default_int_handler)
from enmp.engine.run.journal import Journal
append = Journal.append
def paced(self, *args, **kwargs):
    append(self, *args, **kwargs)
    time.sleep(0.2)
Journal.append = paced
from enmp.cli.main import main
main(sys.argv[1:])
"""


@pytest.mark.parametrize("sig, strategy", [(signal.SIGKILL, "cma"), (signal.SIGINT, "cma"), (signal.SIGKILL, "fast"),
                                           (signal.SIGKILL, "crossfit")])
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, sig, strategy):
    """History, report and model of a killed and resumed run equal the uninterrupted run's, cost included: cost
    is a property of the search (what it asked), not of the process (what its caches held)."""
    cfg_path = make_run(tmp_path, "bert", n_val=60, n_test=12, generations=14, popsize=6, strategy=strategy)
    ref = run_search(load_config(cfg_path), tmp_path / "ref", show_progress=False, print_table=False)
    run = tmp_path / "run"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen([sys.executable, "-c", PACED_CLI, "search", "--config", str(cfg_path),
                             "--out", str(run)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while _journal_generation(run) < 3 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "run finished before it could be interrupted"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    if sig == signal.SIGINT:
        assert proc.returncode == 130 and b"--resume" in err and b"Traceback" not in err
    else:
        assert proc.returncode == -signal.SIGKILL
    assert not (run / "report.json").exists()
    assert _cli(["search", "--resume", str(run)]) == 0
    got = RunReport.load(run)
    assert got.pruned == ref.pruned and got.enmp == ref.enmp and got.random == ref.random
    assert got.cost == ref.cost and got.evaluations == ref.evaluations and got.decision == ref.decision
    history = [json.loads(l) for l in (run / "history.jsonl").read_text().splitlines()]
    ref_history = [json.loads(l) for l in (tmp_path / "ref/history.jsonl").read_text().splitlines()]
    assert _strip(history) == _strip(ref_history)
    a, b = load_file(str(run / "model/model.safetensors")), load_file(str(tmp_path / "ref/model/model.safetensors"))
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)


class _Killed(BaseException):
    """Stands in for kill -9 after a generation was appended to the logs but before its commit."""


def _commit_hook(monkeypatch, hook):
    real = Journal.commit

    def commit(self):
        hook(self)
        real(self)

    monkeypatch.setattr(Journal, "commit", commit)


def _lines(path: Path) -> list[dict]:
    return [json.loads(l) for l in path.read_text().splitlines()]


@pytest.mark.parametrize("strategy", ["cma", "cmawm", "fast", "random", "greedy", "none"])
def test_resume_after_kill_between_append_and_commit(tmp_path, monkeypatch, strategy):
    monkeypatch.setattr(journal_module, "COMMIT_EVERY_S", 0.0)  # every round committed on its own
    cfg_path = make_run(tmp_path, "bert", n_val=12, n_test=12, generations=4, popsize=4, strategy=strategy)
    seen = []  # (inode, bytes) of evaluations.jsonl and size of journal.json as each commit begins

    def record(j):
        log, state = tmp_path / "ref/evaluations.jsonl", j.state_dir / "journal.json"
        seen.append((log.stat().st_ino if log.exists() else None, log.read_bytes() if log.exists() else b"",
                     state.stat().st_size if state.exists() else None))

    with monkeypatch.context() as m:
        _commit_hook(m, record)
        ref = run_search(load_config(cfg_path), tmp_path / "ref", show_progress=False, print_table=False)
    # the logs are appended to, never rewritten, and the commit record stays small
    assert len({ino for ino, _, _ in seen[1:]}) == 1
    assert all(b.startswith(a) for (_, a, _), (_, b, _) in zip(seen, seen[1:]))
    sizes = [size for _, _, size in seen[2:]]  # the record (as committed before) stays small as the log grows
    assert strategy == "none" or (max(sizes) - min(sizes) < 64 < len(seen[-1][1]) - len(seen[1][1]))

    kill_at = min(2, len(ref_history := _lines(tmp_path / "ref/history.jsonl")))
    run = tmp_path / "run"

    def kill(j):
        if j.generation == kill_at:
            raise _Killed

    with monkeypatch.context() as m, pytest.raises(_Killed):
        _commit_hook(m, kill)
        run_search(load_config(cfg_path), run, show_progress=False, print_table=False)
    assert len(_lines(run / "history.jsonl")) == kill_at  # appended, not committed
    with open(run / "evaluations.jsonl", "ab") as fh:  # and a line cut in half by the kill
        fh.write(b'{"generation": 9, "keep": "01')
    assert _cli(["search", "--resume", str(run)]) == 0
    assert (run / "evaluations.jsonl").read_bytes() == (tmp_path / "ref/evaluations.jsonl").read_bytes()
    assert _strip(_lines(run / "history.jsonl")) == _strip(ref_history)
    assert (run / "mask.json").read_bytes() == (tmp_path / "ref/mask.json").read_bytes()
    got = RunReport.load(run)
    assert all(getattr(got, k) == getattr(ref, k)
               for k in ("pruned", "enmp", "random", "evaluations", "forward_evaluations"))
    assert (run / "model/model.safetensors").read_bytes() == (tmp_path / "ref/model/model.safetensors").read_bytes()
    assert not list((run / "state").glob("*.pkl"))


def test_fast_rounds_share_commits_and_a_kill_redoes_the_uncommitted_ones(tmp_path, monkeypatch):
    """Rounds faster than COMMIT_EVERY_S are committed together; a kill before their commit loses them (the logs'
    tail is cut), and the resumed run does them again with the very same results."""
    cfg_path = make_run(tmp_path, "bert", n_val=12, n_test=12, generations=5, popsize=4)
    monkeypatch.setattr(journal_module, "COMMIT_EVERY_S", 3600.0)
    commits = []
    with monkeypatch.context() as m:
        _commit_hook(m, lambda j: commits.append(j.generation))
        ref = run_search(load_config(cfg_path), tmp_path / "ref", show_progress=False, print_table=False)
    assert commits == [0, 5]  # the start, then one commit for the five rounds when the search ended
    assert Journal.load(tmp_path / "ref").generation == 5

    run = tmp_path / "run"
    append = Journal.append

    def append_then_die(self, *args):
        append(self, *args)
        if self.generation == 3:
            raise _Killed

    def commit_dies(j):  # a kill gives no chance to commit: only the start's commit lands
        if j.generation:
            raise _Killed

    with monkeypatch.context() as m, pytest.raises(_Killed):
        m.setattr(Journal, "append", append_then_die)
        _commit_hook(m, commit_dies)
        run_search(load_config(cfg_path), run, show_progress=False, print_table=False)
    assert len(_lines(run / "history.jsonl")) == 3 and Journal.load(run).generation == 0  # appended, cut at load
    assert _cli(["search", "--resume", str(run)]) == 0
    assert (run / "evaluations.jsonl").read_bytes() == (tmp_path / "ref/evaluations.jsonl").read_bytes()
    assert (run / "mask.json").read_bytes() == (tmp_path / "ref/mask.json").read_bytes()
    got = RunReport.load(run)
    assert all(getattr(got, k) == getattr(ref, k) for k in ("pruned", "enmp", "cost", "evaluations"))


def _tamper(path: Path, generation: int, pattern: str, change) -> None:
    """Edit one value of one logged line of `generation` in place, keeping the file's length."""
    lines = path.read_text().splitlines(keepends=True)
    i = next(i for i, l in enumerate(lines) if json.loads(l)["generation"] == generation and re.search(pattern, l))
    lines[i] = re.sub(pattern, lambda mo: change(mo.group(0)), lines[i], count=1)
    path.write_text("".join(lines))


def test_tampered_journal_is_a_clear_error(tmp_path, capsys):
    cfg_path = make_run(tmp_path, "bert", n_val=12, n_test=12, generations=3, popsize=4)
    cfg = load_config(cfg_path)
    cfg.output.save_model = cfg.output.save_adapter = False
    run_search(cfg, tmp_path / "ref", show_progress=False, print_table=False)
    flip = {"0": "1", "1": "0"}
    edits = {"mask": (r'"keep": "[01]', lambda t: t[:-1] + flip[t[-1]]),
             "fitness": (r'"fitness": \d+\.\d', lambda t: t[:-1] + str((int(t[-1]) + 1) % 10))}
    for name, (pattern, change) in edits.items():
        run = tmp_path / name
        shutil.copytree(tmp_path / "ref", run)
        _tamper(run / "evaluations.jsonl", 2, pattern, change)
        capsys.readouterr()
        assert _cli(["search", "--resume", str(run)]) == 2
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]  # after the progress log: one line, what — where — fix
        assert "disagrees with a replay of the search at generation 2" in last and "start the run again" in last
        assert f"--resume {run}" in last and "Traceback" not in err
