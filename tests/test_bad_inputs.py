"""Every bad input to `enmp merge`, `search` and `report` is answered the same way (issue 7, item 1):

exit code 2, exactly one `error:` line on stderr that names what is wrong, where, and how to fix it, no
traceback, no partial output left behind, and every pre-existing file (inputs and old outputs) untouched.

Cases run in-process through `enmp.cli.main.main` (what the console script calls); a representative handful
also run as real `enmp` subprocesses, concurrently, to prove the same end to end.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pytest

from bad_input_builders import (Env, broken_adapter, dup_names, existing_out, leftovers, lm_eval_args, mask_file,
                                merge_args, missing_data_file, no_label_column, out_under_file, pickled_base,
                                report_dir, search_args, set_key, snapshot, unwritable_out, with_data)
from tiny_runs import ANSI, cli

TRACE_LINE = re.compile(r"^\s*(Traceback|File \"|\w+(Error|Exception):)")


# --------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def env(tmp_path_factory) -> Env:
    return Env(tmp_path_factory.mktemp("inputs"))


# ------------------------------------------------------------------------------------------------ cases
@dataclass
class Case:
    args: Callable[[Env, Path], list]
    expect: tuple[str, ...]  # substrings of the error line (what / where)
    fix: bool = True  # the line also says how to fix it (after " — ")
    outputs: tuple[str, ...] = field(default=("out", "run_out"))  # must not exist after the failure


CASES: dict[str, Case] = {
    # ---- merge: adapters
    "merge-missing-adapter-dir": Case(
        lambda e, t: merge_args(e, t, adapters={"task0": e.a0, "ghost": t / "nowhere"}),
        ("ghost", "nowhere", "no such directory")),
    "merge-adapter-without-safetensors": Case(
        lambda e, t: merge_args(e, t, adapters={"task0": e.a0, "b": broken_adapter(e, t, "no_safetensors")}),
        ("'b'", "no adapter_model.safetensors", "adapter_no_safetensors")),
    "merge-empty-safetensors": Case(
        lambda e, t: merge_args(e, t, adapters={"task0": e.a0, "b": broken_adapter(e, t, "empty")}),
        ("cannot read adapter weights", "adapter_empty/adapter_model.safetensors")),
    "merge-truncated-safetensors": Case(
        lambda e, t: merge_args(e, t, adapters={"task0": e.a0, "b": broken_adapter(e, t, "truncated")}),
        ("cannot read adapter weights", "adapter_truncated/adapter_model.safetensors")),
    "merge-pickled-adapter-bin-only": Case(
        lambda e, t: merge_args(e, t, adapters={"task0": e.a0, "b": broken_adapter(e, t, "pickled")}),
        ("pickled", "adapter_model.bin", "safe_serialization=True")),
    "merge-base-pytorch-model-bin-only": Case(
        lambda e, t: ["merge", "--base", pickled_base(e, t), "--adapter", f"a={e.a0}", "--out", t / "out"],
        ("base model", "only pickled weights", "base_bin", "save_pretrained")),
    "merge-adapter-of-another-architecture": Case(
        lambda e, t: merge_args(e, t, adapters={"task0": e.a0, "llama": e.llama_adapter}),
        ("'llama'", "self_attn", "base model does not have", "llama_lora")),
    "merge-adapter-of-another-hidden-size": Case(
        lambda e, t: merge_args(e, t, adapters={"task0": e.a0, "wide": e.wide_adapter}),
        ("'wide'", "does not fit base weight", "48", "another model or hidden size")),
    "merge-target-modules-differ": Case(
        lambda e, t: merge_args(e, t, adapters={"task0": e.a0, "qv": e.qv_adapter}),
        ("target different matrices", "'qv' lacks", "same target_modules")),
    "merge-nan-in-factors": Case(
        lambda e, t: merge_args(e, t, adapters={"task0": e.a0, "b": broken_adapter(e, t, "nan")}),
        ("NaN/Inf", "lora_B", "adapter_nan")),
    "merge-inf-in-factors": Case(
        lambda e, t: merge_args(e, t, adapters={"task0": e.a0, "b": broken_adapter(e, t, "inf")}),
        ("NaN/Inf", "lora_A", "adapter_inf")),
    "merge-duplicate-adapter-names": Case(
        lambda e, t: merge_args(e, t, adapters={"task0": e.a0}) + ["--adapter", f"task0={e.a1}"],
        ("--adapter", "'task0'", "twice", "unique")),
    "merge-adapter-without-equals": Case(
        lambda e, t: ["merge", "--base", e.base, "--adapter", str(e.a0), "--out", t / "out"],
        ("--adapter", "no '='", "NAME=PATH")),
    "merge-missing-base": Case(
        lambda e, t: ["merge", "--base", t / "no_base", "--adapter", f"a={e.a0}", "--out", t / "out"],
        ("base model", "no_base", "no such directory")),
    # ---- merge: method and hyperparameters
    "merge-unknown-method": Case(lambda e, t: merge_args(e, t, "--method", "avg"),
                                 ("--method", "'avg'", "ties", "core_space")),
    "merge-unknown-inner": Case(lambda e, t: merge_args(e, t, "--method", "core_space", "--inner", "dare"),
                                ("--inner", "'dare'", "tsv", "iso_c")),
    "merge-inner-on-flat-method": Case(lambda e, t: merge_args(e, t, "--method", "tsv", "--inner", "ta"),
                                       ("--inner", "'tsv' takes no inner", "knots or core_space")),
    "merge-lam-nan": Case(lambda e, t: merge_args(e, t, "--lam", "nan"), ("--lam", "finite", "nan")),
    "merge-top-k-0": Case(lambda e, t: merge_args(e, t, "--method", "ties", "--top-k", "0"),
                          ("--top-k", "(0, 100]", "0.0")),
    "merge-top-k-150": Case(lambda e, t: merge_args(e, t, "--method", "ties", "--top-k", "150"),
                            ("--top-k", "(0, 100]", "150")),
    "merge-drop-rate-1": Case(lambda e, t: merge_args(e, t, "--method", "dare", "--drop-rate", "1.0"),
                              ("--drop-rate", "[0, 1)", "1.0")),
    "merge-adapter-rank-0": Case(lambda e, t: merge_args(e, t, "--save-adapter", "--adapter-rank", "0"),
                                 ("--adapter-rank", "greater than or equal to 1", "enmp merge --help")),
    "merge-unknown-dtype": Case(lambda e, t: merge_args(e, t, "--dtype", "int8"),
                                ("--dtype", "'int8'", "bfloat16")),
    # ---- merge: masks
    "merge-mask-malformed-json": Case(
        lambda e, t: merge_args(e, t, "--mask", mask_file(t, '{"tasks": ["task0", "task1"], "keep": [[1, ')),
        ("mask.json", "not valid JSON")),
    "merge-mask-missing-keys": Case(
        lambda e, t: merge_args(e, t, "--mask", mask_file(t, {"tasks": ["task0", "task1"], "keep": [[1, 1]]})),
        ("mask.json", "keys tasks, layers, keep")),
    "merge-mask-wrong-size": Case(
        lambda e, t: merge_args(e, t, "--mask", mask_file(t, {"tasks": ["task0", "task1"], "layers": [0, 1, 2],
                                                                "keep": [[1, 1, 1], [1, 0, 1]]})),
        ("--mask", "[0, 1, 2]", "[0, 1]")),
    "merge-mask-wrong-task-names": Case(
        lambda e, t: merge_args(e, t, "--mask", mask_file(t, {"tasks": ["task0", "sst2"], "layers": [0, 1],
                                                                "keep": [[1, 1], [1, 0]]})),
        ("--mask", "'sst2'", "task1")),
    "merge-mask-ragged-rows": Case(
        lambda e, t: merge_args(e, t, "--mask", mask_file(t, {"tasks": ["task0", "task1"], "layers": [0, 1],
                                                                "keep": [[1, 1], [1]]})),
        ("mask.json", "2 rows of 2 values")),
    # ---- merge: output location
    "merge-out-exists-without-overwrite": Case(
        lambda e, t: merge_args(e, t, "--out", existing_out(t)), ("--out", "already exists", "--overwrite"),
        outputs=()),
    "merge-out-is-a-file": Case(
        lambda e, t: merge_args(e, t, "--out", out_under_file(t).parent), ("--out", "plain.txt", "is a file")),
    "merge-out-under-a-file": Case(
        lambda e, t: merge_args(e, t, "--out", out_under_file(t)), ("--out", "plain.txt", "not a directory")),
    "merge-out-unwritable": Case(
        lambda e, t: merge_args(e, t, "--out", unwritable_out(t)), ("--out", "cannot write", "writable location")),
    # ---- search: config
    "search-unknown-key": Case(lambda e, t: search_args(e, t, set_key("search", "populaton", 8)),
                               ("run.yaml", "search.populaton", "unknown key")),
    "search-wrong-type": Case(lambda e, t: search_args(e, t, set_key("search", "generations", "many")),
                              ("run.yaml", "search.generations", "integer")),
    "search-invalid-yaml": Case(lambda e, t: (search_args(e, t), _yaml_typo(t))[1],
                                ("run.yaml", "not valid YAML", "line")),
    "search-zero-tasks": Case(lambda e, t: search_args(e, t, set_key(None, "tasks", [])),
                              ("run.yaml", "tasks", "at least 1")),
    "search-duplicate-task-names": Case(lambda e, t: search_args(e, t, dup_names),
                                        ("run.yaml", "duplicate task names", "task0")),
    "search-rho-1": Case(lambda e, t: search_args(e, t, set_key("search", "rho", 1.0)),
                         ("run.yaml", "search.rho", "rho must be a number in (0, 1)")),
    "search-rho-0-on-command-line": Case(lambda e, t: search_args(e, t, None, "--rho", "0"),
                                         ("command line", "search.rho", "rho must be a number in (0, 1)")),
    "search-popsize-1": Case(lambda e, t: search_args(e, t, set_key("search", "popsize", 1)),
                             ("run.yaml", "search.popsize", "integer ≥ 2")),
    "search-generations-0": Case(lambda e, t: search_args(e, t, set_key("search", "generations", 0)),
                                 ("run.yaml", "search.generations", "integer ≥ 1")),
    "search-unknown-strategy": Case(lambda e, t: search_args(e, t, set_key("search", "strategy", "genetic")),
                                    ("'genetic'", "cma", "random")),
    "search-fast-unknown-option": Case(
        lambda e, t: search_args(e, t, lambda c: c["search"].update(strategy="fast", options={"speed": 2})),
        ("search 'fast' has no option(s) speed", "accepted:", "race_z")),
    "search-fast-too-few-folds": Case(
        lambda e, t: search_args(e, t, lambda c: c["search"].update(strategy="fast", options={"folds": 2})),
        ("search.options.folds", "folds must be an integer ≥ 3")),
    "search-fast-more-folds-than-examples": Case(
        lambda e, t: search_args(e, t, lambda c: c["search"].update(strategy="fast", options={"folds": 9})),
        ("8 validation examples cannot fill the 9 folds", "search.options.folds")),
    "search-unknown-task-kind": Case(lambda e, t: search_args(e, t, lambda c: c["tasks"][0].update(kind="regression")),
                                     ("run.yaml", "task 'task0'.kind", "unknown task kind 'regression'", "causal_lm")),
    "search-prompt-on-classification-task": Case(
        lambda e, t: search_args(e, t, lambda c: c["tasks"][0].update(prompt="{text} ?")),
        ("run.yaml", "task 'task0'.prompt", "classification tasks take no prompt", "for causal_lm tasks")),
    "search-causal-lm-task-without-label-words": Case(
        lambda e, t: search_args(e, t, lambda c: c["tasks"][1].update(kind="causal_lm", prompt="{text} ?")),
        ("run.yaml", "task 'task1'.label_words", "causal_lm tasks need label_words", "e.g. label_words:")),
    "search-unknown-method": Case(lambda e, t: search_args(e, t, set_key("merge", "method", "slerp")),
                                  ("'slerp'", "ties")),
    "search-missing-config": Case(lambda e, t: ["search", "--config", t / "nope.yaml", "--out", t / "run_out"],
                                  ("--config", "nope.yaml", "not found")),
    "search-out-exists-without-overwrite": Case(lambda e, t: search_args(e, t, None, "--out", existing_out(t)),
                                                ("--out", "already exists", "--overwrite"), outputs=("run_out",)),
    "search-resume-not-a-run-dir": Case(lambda e, t: ["search", "--resume", t], ("--resume", "not a run directory")),
    # ---- search: data
    "search-dataset-without-label-column": Case(lambda e, t: search_args(e, t, no_label_column),
                                                ("task 'task0'", "no label column 'sentiment'", "data.label")),
    "search-labels-outside-head-classes": Case(
        lambda e, t: search_args(e, t, with_data(t, "text,label\nthe movie,c1\na good film,c7\n")),
        ("task 'task0'", "'c7'", "head's classes")),
    "search-label-index-outside-head-classes": Case(
        lambda e, t: search_args(e, t, with_data(t, "text,label\nthe movie,0\na good film,3\n", task=1)),
        ("task 'task1'", "label 3", "3 classes")),
    "search-empty-validation-split": Case(lambda e, t: search_args(e, t, with_data(t, "text,label\n")),
                                          ("task 'task0'", "val split is empty")),
    "search-fewer-examples-than-val-samples": Case(
        lambda e, t: search_args(e, t, set_key("eval", "val_samples", 50)),
        ("task 'task0'", "8 examples", "50 requested", "eval.val_samples")),
    "search-missing-adapter-dir": Case(
        lambda e, t: search_args(e, t, lambda c: c["tasks"][1].update(adapter="lora_sst2")),
        ("task1", "lora_sst2", "work/lora_sst2", "no such directory")),
    "search-missing-data-file": Case(lambda e, t: search_args(e, t, missing_data_file),
                                     ("task 'task1'", "/nonexistent/enmp/test.csv", "not found")),
    # ---- search: lm-eval tasks (the lm_eval kind)
    "search-lm-eval-unknown-task": Case(lambda e, t: lm_eval_args(e, t, task="arc_easyy"),
                                        ("task 'pick'.task", "lm-eval has no task 'arc_easyy'", "arc_easy")),
    "search-lm-eval-dataset-missing-offline": Case(
        lambda e, t: lm_eval_args(e, t, dataset_path="enmp-tests/no-such-dataset"),
        ("task 'pick'.task", "cannot load lm-eval task", "no-such-dataset", "local datasets cache")),
    "search-lm-eval-unknown-metric": Case(lambda e, t: lm_eval_args(e, t, metric="accuracy"),
                                          ("task 'pick'.metric", "no metric 'accuracy'", "acc, acc_norm")),
    # ---- report
    "report-dir-without-report-json": Case(lambda e, t: ["report", report_dir(t, None)],
                                           ("report.json", "not found", "enmp search")),
    "report-corrupt-report-json": Case(lambda e, t: ["report", report_dir(t, '{"tasks": ["a"], "exp')],
                                       ("run_dir/report.json", "not valid JSON")),
    "report-json-without-results": Case(lambda e, t: ["report", report_dir(t, '["not", "a", "report"]')],
                                        ("run_dir/report.json", "not an enmp run report")),
    "report-missing-dir": Case(lambda e, t: ["report", t / "no_run"], ("no_run", "not found")),
}


def _yaml_typo(tmp: Path) -> list:
    (tmp / "run.yaml").write_text((tmp / "run.yaml").read_text().replace("tasks:", "tasks: [", 1))
    return ["search", "--config", tmp / "run.yaml", "--out", tmp / "run_out"]


def assert_clean_failure(code: int, out: str, err: str, case: Case, label: str) -> str:
    """Exit 2, one error line (the last thing on stderr) with the expected content, no traceback."""
    assert code == 2, f"{label}: exit code {code}\n{err}"
    assert "Traceback" not in err + out, f"{label}: traceback\n{err}"
    assert not [ln for ln in err.splitlines() if TRACE_LINE.match(ln)], f"{label}: exception text\n{err}"
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1, f"{label}: expected one error line\n{err}"
    assert err.strip().splitlines()[-1] == errors[0], f"{label}: the error line must come last\n{err}"
    line = errors[0]
    for s in case.expect:
        assert s in line, f"{label}: {s!r} missing from: {line}"
    if case.fix:
        assert " — " in line, f"{label}: no 'how to fix' part in: {line}"
    return line


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input_is_one_clear_line(env, tmp_path, name):
    case = CASES[name]
    work = tmp_path / "work"
    work.mkdir()
    args = case.args(env, work)
    before = snapshot(env.root, work)
    try:
        code, out, err = cli(*args)
    finally:
        if (work / "locked").exists():
            (work / "locked").chmod(0o700)
    assert_clean_failure(code, out, err, case, name)
    for o in case.outputs:
        assert not (work / o).exists(), f"{name}: partial output {o} left behind"
    assert not leftovers(work), f"{name}: temp files left: {leftovers(work)}"
    assert snapshot(env.root, work) == before, f"{name}: pre-existing files changed"


def test_there_are_enough_distinct_cases():
    assert len(CASES) >= 20
    per_command = {cmd: sum(n.startswith(cmd + "-") for n in CASES) for cmd in ("merge", "search", "report")}
    assert per_command["merge"] >= 10 and per_command["search"] >= 10 and per_command["report"] >= 2


@pytest.mark.parametrize("target", ["existing-with-overwrite", "new-nested"])
def test_failed_write_leaves_previous_output_intact(env, tmp_path, monkeypatch, target):
    """Disk full while writing: one line, exit 2, the old --out intact, no temp or new parent dirs left."""
    import errno

    import enmp.engine.outputs.merge_dir as merge_api

    real_write_model = merge_api.write_model

    def write_then_fail(out, *args, **kwargs):
        real_write_model(out, *args, **kwargs)  # a partial output exists in the temp dir at this point
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(merge_api, "write_model", write_then_fail)
    work = tmp_path / "work"
    work.mkdir()
    if target == "existing-with-overwrite":
        out, extra = existing_out(work), ("--overwrite",)
    else:
        out, extra = work / "new" / "deeper" / "out", ()
    before = snapshot(env.root, work)
    code, stdout, err = cli(*merge_args(env, work, "--out", out, *extra))
    case = Case(lambda e, t: [], ("--out", "cannot write", str(out), "No space left on device"))
    assert_clean_failure(code, stdout, err, case, target)
    assert snapshot(env.root, work) == before
    assert not leftovers(work)
    assert sorted(p.name for p in work.iterdir()) == (["out"] if target.startswith("existing") else [])


# ----------------------------------------------------------------------------------- real subprocesses
SUBPROCESS_CASES = ("merge-truncated-safetensors", "merge-unknown-method", "merge-adapter-rank-0",
                    "search-unknown-key", "report-corrupt-report-json")


@pytest.fixture(scope="module")
def subprocess_results(env, tmp_path_factory):
    """Run the representative cases as real `enmp` processes, all at once (imports dominate their cost)."""
    script = Path(sys.executable).with_name("enmp")
    cmd = [str(script)] if script.is_file() else [sys.executable, "-c", "from enmp.cli.main import main; main()"]
    proc_env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "TERM": "dumb"}
    proc_env.pop("FORCE_COLOR", None)
    runs = {}
    for name in SUBPROCESS_CASES:
        work = tmp_path_factory.mktemp(name) / "work"
        work.mkdir()
        args = [str(a) for a in CASES[name].args(env, work)]
        before = snapshot(work)
        proc = subprocess.Popen([*cmd, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=proc_env)
        runs[name] = (proc, work, before)
    results = {}
    for name, (proc, work, before) in runs.items():
        out, err = proc.communicate(timeout=300)
        results[name] = (proc.returncode, out, err, work, before)
    return results


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_in_a_real_process(subprocess_results, name):
    code, out, err, work, before = subprocess_results[name]
    line = assert_clean_failure(code, ANSI.sub("", out), ANSI.sub("", err), CASES[name], name)
    assert "\x1b[" not in line
    for o in CASES[name].outputs:
        assert not (work / o).exists()
    assert not leftovers(work)
    assert snapshot(work) == before



@pytest.mark.parametrize("exc,kwargs,expected", [
    (ValueError("bad value\nsecond line"), {}, "bad value"),
    (ValueError("\n  \n  after blanks  \nmore"), {}, "after blanks"),
    (KeyError(""), {}, "''"),  # str(KeyError('')) is "''": not empty
    (RuntimeError(), {}, "RuntimeError"),  # empty message: the type name, no IndexError
    (RuntimeError("   \n"), {"with_type": True}, "RuntimeError"),
    (OSError("disk full"), {"with_type": True}, "OSError: disk full"),
    (ValueError("x" * 50), {"limit": 10}, "x" * 10),
])
def test_first_line_quotes_any_exception_in_one_line(exc, kwargs, expected):
    from enmp.errors import first_line

    assert first_line(exc, **kwargs) == expected
