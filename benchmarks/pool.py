"""Per-example outcomes over a task's whole labelled pool, so that replicates on fresh partitions are cheap.

The demo's labelled examples of each task (its validation and test files, 150 + 400) form one pool. A
replicate draws a new validation/test partition of every pool (`partition`); its searches and its test
scores read (mask, example) outcomes from a persistent store (`PoolStore`) and compute only what is missing
(`PoolComputer`, on one live model over the pool). `PoolEvaluator` is the engine's evaluator back-end for one
partition: the real `SearchRun` drives it, with the engine's own result cache, fitness and cost accounting —
what a search is charged is what it would be charged on that partition alone.

Outcomes are stored once per (merge method, hyperparameters, mask, example). A prediction whose top two
logits agree to the last bit may differ from a run batched otherwise (batch shapes change float rounding);
the store makes every later read agree with the first computation.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from enmp.engine.scoring.accounting import CostModel
from enmp.engine.scoring.evaluator import Evaluator, Job, JobResult
from enmp.engine.scoring.live import live_model
from enmp import Workspace
from enmp.errors import NumericalError
from enmp.evaluation import correct
from enmp.masking import keep_to_str
from enmp.merging import MergeParams
from enmp.metrics import accuracy
from enmp.search.outcome import pack_bits, unpack_bits


def write_pool(data_dir: Path, tasks: Sequence[str], out: Path) -> Path:
    """Each task's validation and test rows in one file, `out/<task>/pool.csv` (written once)."""
    for task in tasks:
        path = out / task / "pool.csv"
        if path.is_file():
            continue
        rows = []
        for split in ("val", "test"):
            with open(data_dir / task / f"{split}.csv", newline="", encoding="utf-8") as fh:
                rows += list(csv.DictReader(fh))
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
        os.replace(tmp, path)
    return out


def partition(labels: Sequence[int], n_val: int, seed: int, task: int) -> tuple[np.ndarray, np.ndarray]:
    """(validation, test) pool indices: class-balanced like the demo's splits — classes in a shuffled order,
    each class's examples shuffled, taken round robin until `n_val` are drawn; the rest is test."""
    rng = np.random.default_rng([seed, task])
    labels = np.asarray(labels)
    classes = rng.permutation(np.unique(labels))
    queues = [list(rng.permutation(np.flatnonzero(labels == c))) for c in classes]
    val: list[int] = []
    while len(val) < n_val and any(queues):
        for q in queues:
            if q and len(val) < n_val:
                val.append(int(q.pop()))
    val_idx = np.sort(np.array(val, dtype=np.int64))
    return val_idx, np.setdiff1d(np.arange(len(labels)), val_idx)


def subsample(val: np.ndarray, n: int, seed: int, task: int) -> np.ndarray:
    """`n` of a partition's validation indices, drawn by a seeded permutation (for a smaller validation split
    whose test split stays the same)."""
    if n >= len(val):
        return val
    return np.sort(np.random.default_rng([seed, task, n]).permutation(val)[:n])


class PoolStore:
    """Append-only files of per-example outcomes, one per merge spec: {keep, task, examples, bits} lines."""

    def __init__(self, root: Path, n_examples: Sequence[int]):
        self.root, self.n = Path(root), list(n_examples)
        self.root.mkdir(parents=True, exist_ok=True)
        self._loaded: dict[str, dict] = {}

    @staticmethod
    def spec_name(method: str, params: MergeParams) -> str:
        digest = hashlib.sha1(repr(params.cache_key()).encode()).hexdigest()[:12]
        return f"{method}-{digest}"

    def _table(self, spec: str) -> dict:
        if spec not in self._loaded:
            table: dict = {}
            path = self.root / f"{spec}.jsonl"
            if path.is_file():
                for line in path.read_text().splitlines():
                    try:
                        row = json.loads(line)
                    except json.JSONDecodeError:  # a line cut by a kill: its outcomes are computed again
                        continue
                    self._fill(table, row["keep"], row["task"], unpack_bits(row["examples"]), unpack_bits(row["bits"]))
            self._loaded[spec] = table
        return self._loaded[spec]

    def _fill(self, table: dict, keep: str, task: int, where: np.ndarray, bits: np.ndarray) -> None:
        known, right = table.setdefault((keep, task), (np.zeros(self.n[task], bool), np.zeros(self.n[task], bool)))
        known[where], right[where] = True, bits

    def known(self, spec: str, keep: str, task: int) -> tuple[np.ndarray, np.ndarray]:
        table = self._table(spec)
        return table.get((keep, task), (np.zeros(self.n[task], bool), np.zeros(self.n[task], bool)))

    def add(self, spec: str, keep: str, task: int, index: np.ndarray, bits: np.ndarray) -> None:
        """Outcomes of the pool examples `index` (sorted, distinct), `bits` in that order."""
        where = np.zeros(self.n[task], bool)
        where[index] = True
        self._fill(self._table(spec), keep, task, where, bits)
        line = json.dumps({"keep": keep, "task": task, "examples": pack_bits(where), "bits": pack_bits(bits)}) + "\n"
        with open(self.root / f"{spec}.jsonl", "a", encoding="utf-8") as fh:  # one write per line
            fh.write(line)


class PoolComputer:
    """Scores (mask, merge, task, pool examples) on one live model over the pools; remembers every outcome."""

    def __init__(self, ws: Workspace, store: PoolStore):
        self.ws, self.store = ws, store
        self.live = live_model(ws)
        self.patcher = self.live.patcher
        self.examples_run = 0

    def outcomes(self, keep: np.ndarray, method: str, params: MergeParams, task: int,
                 index: np.ndarray) -> np.ndarray:
        """Right/wrong of each pool example in `index` (in that order). Masks every partition asks for (the
        full merge, single prunings, the experts) are scored on the whole pool at once, with the layers they
        share from the prefix cache; any other mask only on the examples asked for."""
        spec, key = PoolStore.spec_name(method, params), keep_to_str(keep)
        known, right = self.store.known(spec, key, task)
        missing = index[~known[index]]
        if len(missing):
            whole = int((~keep).sum()) <= 1 or int(keep.sum()) == keep.shape[1]  # full/single, or an expert
            run = np.flatnonzero(~known) if whole else np.unique(missing)
            bits = self._run(keep, method, params, task, run)
            self.store.add(spec, key, task, run, bits)
            known, right = self.store.known(spec, key, task)
        return right[index]

    def _run(self, keep, method, params, task, run: np.ndarray) -> np.ndarray:
        ws = self.ws
        self.patcher.apply(np.asarray(keep, dtype=bool), method, params)
        self.examples_run += len(run)
        if len(run) == len(ws.examples["val"][task]):  # the whole pool: its one prepared copy, prefix-cached
            prefix = self.live.prefix
            if prefix is not None:
                prefix.begin("pool", task, self.patcher.layer_signature(len(prefix.layers)))
                try:
                    bits = correct(ws.tasks[task], ws.model, ws.splits["val"][task], prefix.set_batch)
                except BaseException:
                    prefix.abort()
                    raise
                prefix.commit()
                return bits.numpy()
            return correct(ws.tasks[task], ws.model, ws.splits["val"][task]).numpy()
        data = ws.prepare(task, ws.examples["val"][task].subset(run.tolist()))
        return correct(ws.tasks[task], ws.model, data).numpy()


class PoolEvaluator(Evaluator):
    """The engine's evaluator for one partition of the pools: `val` and `test` are that partition's parts."""

    def __init__(self, computer: PoolComputer, parts: dict[str, list[np.ndarray]], method: str,
                 params: MergeParams):
        ws = computer.ws
        super().__init__(ws.task_names, len(ws.groups), method, params)
        self.computer, self.parts = computer, parts
        self.cost_model = CostModel(*ws.target_layout(), computer.live.n_layers, True)  # as a run with a prefix cache
        self.val_sizes = tuple(len(ix) for ix in parts["val"])

    def run_jobs(self, jobs: Sequence[Job]) -> list[JobResult]:
        out = []
        for job in jobs:
            index = self.parts[job.split][job.task]
            if job.subset is not None:
                index = index[job.subset.index[job.task]]
            try:
                bits = self.computer.outcomes(job.keep, job.method or self.method, job.params or self.params,
                                              job.task, index)
            except NumericalError as e:
                out.append(JobResult({}, e.line()))
                continue
            name = self.task_names[job.task]
            out.append(JobResult({name: accuracy(bits)}, None, len(bits), len(bits), bits))
        return out
