"""EleutherAI's lm-evaluation-harness for the `lm_eval` task kind: loading a task, building its requests once
per split, and scoring some of its documents on a live model with lm-eval's own model wrapper (`HFLM`),
filters and metrics — so a document scores in enmp exactly as `lm_eval.simple_evaluate` scores it.

lm-eval is imported here only when a task of that kind is loaded (the optional `lm-eval` extra).
"""

from __future__ import annotations

import contextlib
import difflib
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..errors import EnmpError, NumericalError, first_line

#: lm-eval output types scored by log-likelihoods (generation tasks would need a decoding loop per candidate)
SCORED_OUTPUTS = ("multiple_choice", "loglikelihood")
#: metrics that are 1 or 0 per document, in the order a task's default is chosen among those it reports
ACCURACY_METRICS = ("acc", "acc_norm", "exact_match", "acc_mutual_info")
YAML_SUFFIXES = (".yaml", ".yml")
INSTALL = "pip install 'enmp[lm-eval]'"


@contextlib.contextmanager
def quiet():
    """lm-eval's warnings and progress bars (on stderr) off while it works for enmp, which reports itself."""
    logger = logging.getLogger("lm_eval")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


@dataclass
class HarnessTask:
    """One loaded lm-eval task (`task`, a `lm_eval.api.task.Task`), the metric enmp reads per document, and
    where the task is configured (for error lines)."""

    task: Any
    name: str
    metric: str
    where: str


@dataclass
class SplitRequests:
    """One split of an lm-eval task with its requests built once by lm-eval (`build_all_requests`): the
    documents in lm-eval's order and each one's requests (`Instance`s). `encoded` holds each request
    tokenised by the model wrapper, made on first scoring (tokenising needs the wrapper, which needs the
    model) and reused by every candidate."""

    name: str
    docs: list
    requests: list[list]
    encoded: Optional[list[list[tuple]]] = None

    def __len__(self) -> int:
        return len(self.docs)


def _manager(from_file: bool, where: str):
    try:
        from lm_eval.tasks import TaskManager
    except ImportError:
        raise EnmpError("lm_eval tasks need the lm-eval package", where=f"{where}.kind", fix=INSTALL) from None
    with quiet():  # a task YAML of the user's needs no index of lm-eval's thousands of registered tasks
        return TaskManager(include_defaults=not from_file)


def _load(spec: str, where: str) -> Any:
    """The one lm-eval Task that `spec` (a registered name or a task YAML) names, its dataset loaded."""
    from_file = spec.endswith(YAML_SUFFIXES)
    if from_file and not Path(spec).is_file():
        raise EnmpError(f"task YAML {spec} not found", where=f"{where}.task",
                        fix="check the path (relative paths are resolved against the config file's directory)")
    manager = _manager(from_file, where)
    if not from_file and spec not in manager.all_tasks:
        near = difflib.get_close_matches(spec, manager.all_subtasks, n=3)
        hint = f"did you mean {', '.join(near)}? " if near else ""
        raise EnmpError(f"lm-eval has no task '{spec}'", where=f"{where}.task",
                        fix=f"{hint}`lm-eval ls tasks` lists its tasks; or give the path of a task YAML")
    try:
        with quiet():
            tasks = manager.load([spec])["tasks"]
    except Exception as e:  # the dataset (download, cache, files) or the YAML; lm-eval raises many types
        raise EnmpError(f"cannot load lm-eval task '{spec}' ({first_line(e, 240, with_type=True)})",
                        where=f"{where}.task",
                        fix="its dataset must be readable here: in the local datasets cache when offline "
                            "(HF_DATASETS_OFFLINE), or local files (a task YAML with dataset_path: json and "
                            "dataset_kwargs.data_files)") from None
    if len(tasks) != 1:
        raise EnmpError(f"'{spec}' is a group of {len(tasks)} lm-eval tasks", where=f"{where}.task",
                        fix=f"give one lm-eval task per enmp task, e.g. task: {sorted(tasks)[0]}")
    return next(iter(tasks.values()))


def _metric(task: Any, name: str, metric: Optional[str], where: str) -> str:
    """The metric read per document: the one asked for, or the task's first accuracy-type metric."""
    aggregations = task.aggregation()
    known = ", ".join(aggregations) or "none"
    if metric is None:
        metric = next((m for m in aggregations if m in ACCURACY_METRICS), None)
        if metric is None:
            raise EnmpError(f"lm-eval task '{name}' has no accuracy-type metric (its metrics: {known})",
                            where=f"{where}.metric",
                            fix="set metric: to one of its metrics that is 1 or 0 per document")
    elif metric not in aggregations:
        raise EnmpError(f"lm-eval task '{name}' has no metric '{metric}' (its metrics: {known})",
                        where=f"{where}.metric",
                        fix="set metric: to one of them, or leave it out (the task's first accuracy-type metric)")
    from lm_eval.api.registry import AGGREGATION_REGISTRY

    registered = {fn: name for name, fn in AGGREGATION_REGISTRY.items()}
    how = registered.get(aggregations[metric], getattr(aggregations[metric], "__name__", "?"))
    if how != "mean":  # f1, mcc, bleu, perplexity: a number for the whole corpus, no right/wrong per document
        raise EnmpError(f"metric '{metric}' of lm-eval task '{name}' is aggregated over the corpus ({how}), not "
                        "averaged over documents", where=f"{where}.metric",
                        fix="choose a metric that is 1 or 0 per document, e.g. acc")
    return metric


def open_task(spec: str, *, num_fewshot: int, metric: Optional[str], where: str) -> HarnessTask:
    """Load an lm-eval task and check that enmp can score it: a log-likelihood output type and a metric that
    is right/wrong per document. Every refusal is one EnmpError line."""
    task = _load(spec, where)
    name = task.task_name
    if task.OUTPUT_TYPE not in SCORED_OUTPUTS:
        raise EnmpError(f"lm-eval task '{name}' is a {task.OUTPUT_TYPE} task", where=f"{where}.task",
                        fix="enmp scores multiple_choice and loglikelihood tasks: choose such a variant of it")
    checked = _metric(task, name, metric, where)
    task.set_config("num_fewshot", num_fewshot)
    return HarnessTask(task, name, checked, where)


def split_names(ht: HarnessTask, val: Optional[str], test: Optional[str]) -> dict[str, str]:
    """enmp's split → the lm-eval task's split: the ones given, else the task's own validation and test."""
    config, dataset = ht.task.config, getattr(ht.task, "dataset", None)
    available = sorted(dataset.keys()) if hasattr(dataset, "keys") else []
    chosen = {"val": val or config.validation_split, "test": test or config.test_split}
    for ours, theirs in chosen.items():
        key, word = f"{ours}_split", "validation" if ours == "val" else "test"
        if theirs is None:
            raise EnmpError(f"lm-eval task '{ht.name}' names no {word} split", where=f"{ht.where}.{key}",
                            fix=f"set {key}: to one of its splits ({', '.join(available) or '?'})")
        if available and theirs not in available:
            raise EnmpError(f"lm-eval task '{ht.name}' has no split '{theirs}' (its splits: {', '.join(available)})",
                            where=f"{ht.where}.{key}", fix=f"set {key}: to one of them")
    return chosen


def build_split(ht: HarnessTask, split: str, limit: Optional[int], where: str) -> SplitRequests:
    """The requests of the first `limit` documents (all: None) of one split, built once by lm-eval with
    `simple_evaluate`'s few-shot seed, so the prompts are the ones it would build."""
    from lm_eval.defaults import DEFAULT_OTHER_SEED

    task = ht.task
    task.set_config("test_split", split)  # lm-eval scores a task's test split (its "eval docs")
    task.set_fewshot_seed(DEFAULT_OTHER_SEED)
    if len(task.eval_docs) == 0:
        raise EnmpError(f"split '{split}' of lm-eval task '{ht.name}' is empty", where=where,
                        fix="choose a split with documents")
    try:
        with quiet():
            task.build_all_requests(limit=limit)
    except Exception as e:
        raise EnmpError(f"lm-eval cannot build the requests of split '{split}' ({first_line(e, with_type=True)})",
                        where=where, fix="check the task's prompts and num_fewshot (few-shot examples "
                                         "need a split to draw them from)") from None
    docs = [doc for _, doc in task.doc_iterator(limit=limit)]
    requests: list[list] = [[] for _ in docs]
    for inst in task.instances:
        requests[inst.doc_id].append(inst)
    for reqs in requests:
        reqs.sort(key=lambda inst: inst.idx)  # the order process_results reads them in (as lm-eval's evaluator)
    return SplitRequests(split, docs, requests)


def wrap_model(model: Any, tokenizer: Any, batch_size: int) -> Any:
    """lm-eval's Hugging Face wrapper around the live model (patched in place for every candidate)."""
    from lm_eval.models.huggingface import HFLM

    with quiet():
        return HFLM(pretrained=model, tokenizer=tokenizer, batch_size=batch_size)


def _encoded(lm: Any, split: SplitRequests) -> list[list[tuple]]:
    """Each request of the split tokenised exactly as lm-eval's `loglikelihood` tokenises it, once: its
    front half (tokenising, empty contexts included) runs with its back half (`_loglikelihood_tokens`, the
    model calls) captured instead of run; scoring then calls the back half alone."""
    if split.encoded is None:
        captured: list[tuple] = []

        def capture(reqs, **_kwargs):
            captured.extend(reqs)
            return [(0.0, False)] * len(reqs)

        lm._loglikelihood_tokens = capture  # an attribute of this one wrapper; removed below
        try:
            lm.loglikelihood([inst for reqs in split.requests for inst in reqs], disable_tqdm=True)
        finally:
            del lm._loglikelihood_tokens
        flat = iter(captured)
        split.encoded = [[next(flat) for _ in reqs] for reqs in split.requests]
    return split.encoded


def score(lm: Any, ht: HarnessTask, split: SplitRequests, ids: Sequence[int]) -> np.ndarray:
    """The metric value of each document `ids` selects (positions in `split`), as lm-eval's evaluator computes
    it: the model's log-likelihoods, the task's filters, then its `process_results`. A non-finite
    log-likelihood is a NumericalError (a failed candidate); a value other than 1 or 0 is an EnmpError."""
    encoded = _encoded(lm, split)
    chosen = [split.requests[i] for i in ids]
    runs = [(inst, enc) for i in ids for inst, enc in zip(split.requests[i], encoded[i]) for _ in range(inst.repeats)]
    for reqs in chosen:
        for inst in reqs:
            inst.resps, inst.filtered_resps = [], {}
    with quiet():
        out = lm._loglikelihood_tokens([enc for _, enc in runs], disable_tqdm=True)
    if not all(math.isfinite(ll) for ll, _greedy in out):
        raise NumericalError("non-finite log-likelihoods", where=ht.where)
    for (inst, _), resp in zip(runs, out):
        inst.resps.append(resp)
    task = ht.task
    task._instances = [inst for reqs in chosen for inst in reqs]  # lm-eval's filters run over these
    task.apply_filters()
    values = np.empty(len(ids))
    for k, (i, reqs) in enumerate(zip(ids, chosen)):
        key = next(iter(reqs[0].filtered_resps))  # the first filter, as lm-eval's evaluator reads it first
        values[k] = float(task.process_results(split.docs[i], [inst.filtered_resps[key] for inst in reqs])[ht.metric])
    odd = values[(values != 0) & (values != 1)]
    if odd.size:
        raise EnmpError(f"metric '{ht.metric}' of lm-eval task '{ht.name}' is {odd[0]:g} for a document, not 1 or 0",
                        where=f"{ht.where}.metric",
                        fix="enmp counts right and wrong documents: choose a metric such as acc or acc_norm")
    return values
