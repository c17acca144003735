"""`lm_eval`: a task of EleutherAI's lm-evaluation-harness, scored by lm-eval itself on the live model.

The lm-eval task (a registered name, or the path of a task YAML) brings its documents, prompts, choices and
metric, so the task config has no `data:`. lm-eval builds each split's requests once (its own
`build_all_requests`); every candidate then runs them through lm-eval's `HFLM` wrapper around the live,
patched model, so merge caching, live patching, Ray workers and resume work as for every kind. A document's
metric value (acc: 1 right, 0 wrong) is its right/wrong, so strategies get the per-example outcomes they read.

The module is named after the kind plus `_kind`: a module `lm_eval.py` here would read as the package.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import torch

from ...errors import EnmpError
from ...options import Option, Options
from ..data import Examples
from ..harness import YAML_SUFFIXES, HarnessTask, SplitRequests, build_split, open_task, score, split_names, \
    wrap_model
from .base import PreparedSplit, Required, TaskKind

TASK = Required("task", str, None, "a registered lm-eval task name, or the path of a task YAML (relative: to "
                "the config file's directory)", example="arc_easy")
NUM_FEWSHOT = Option("num_fewshot", int, 0, "few-shot examples in each prompt (lm-eval's --num_fewshot)", low=0)
METRIC = Option("metric", str, None, "the lm-eval metric counted per document (1 right, 0 wrong); null: the "
                "task's first accuracy-type metric (acc, acc_norm, exact_match)", nullable=True)
LIMIT = Option("limit", int, None, "only the first N documents of each split (lm-eval's --limit); null: all",
               low=1, nullable=True)
VAL_SPLIT = Option("val_split", str, None, "the lm-eval task's split that the search scores; null: the task's "
                   "validation_split", nullable=True)
TEST_SPLIT = Option("test_split", str, None, "the lm-eval task's split the report's test scores come from; "
                    "null: the task's test_split", nullable=True)


@dataclass
class Documents(Examples):
    """Some documents of one split of an lm-eval task: positions (`ids`) in its requests built once
    (`source`). `labels` hold each document's gold choice where the task has one (else 0); only stratified
    sampling reads them, scoring never does."""

    source: Optional[SplitRequests] = None
    ids: list[int] = field(default_factory=list)

    def subset(self, index) -> "Documents":
        return Documents(None, None, None, [self.labels[i] for i in index], self.source, [self.ids[i] for i in index])


@dataclass
class DocBatch:
    """What one scoring call needs: the documents and the tokenizer and batch size of lm-eval's wrapper."""

    source: SplitRequests
    ids: list[int]
    tokenizer: Any
    batch_size: int

    @property
    def rows(self) -> int:
        """Log-likelihood requests lm-eval runs for these documents (one per choice of a multiple-choice one)."""
        return sum(inst.repeats for i in self.ids for inst in self.source.requests[i])


class PreparedDocs(PreparedSplit):
    """Documents of one split as a single batch: lm-eval batches their requests itself (by length, with the
    batch size given). Every label is 1, the value of a right document's metric."""

    def __init__(self, batch: DocBatch):
        super().__init__([batch], [torch.ones(len(batch.ids))], list(range(len(batch.ids))))

    @property
    def rows(self) -> int:
        return self.batches[0].rows

    def to(self, device: torch.device) -> "PreparedDocs":
        return self  # lm-eval puts its tokens on the model's device itself; labels stay with the CPU results


class LmEvalTask(TaskKind):
    """A task of EleutherAI's lm-evaluation-harness (multiple-choice or log-likelihood), scored by lm-eval."""

    kind = "lm_eval"
    options = Options(TASK, NUM_FEWSHOT, METRIC, LIMIT, VAL_SPLIT, TEST_SPLIT)
    model_class = "AutoModelForCausalLM"
    processor = "tokenizer"
    brings_data = True
    layer_prefix_cache = False

    def __init__(self, name, head, *, harness: HarnessTask, splits: dict[str, str], limit: Optional[int]):
        super().__init__(name, head)
        self.harness, self.splits, self.limit = harness, splits, limit
        self._built: dict[str, SplitRequests] = {}  # enmp split → its requests (built once)
        self._lm: Optional[tuple[torch.nn.Module, Any]] = None  # (live model, lm-eval's wrapper of it)

    @classmethod
    def check_config(cls, tc, options, where):
        for key in ("head", "labels"):
            if getattr(tc, key) is not None:
                raise EnmpError(f"lm_eval tasks take no {key}", where=f"{where}.{key}",
                                fix="the lm-eval task scores its documents itself: remove it")

    @classmethod
    def resolve_paths(cls, options, resolve):
        task = options.get("task")
        if isinstance(task, str) and task.endswith(YAML_SUFFIXES):
            return {**options, "task": resolve(task)}
        return options  # a registered task name

    @classmethod
    def from_config(cls, tc, adapter_dir, extra):
        o, where = tc.kind_options(), f"task '{tc.name}'"
        harness = open_task(o["task"], num_fewshot=o["num_fewshot"], metric=o["metric"], where=where)
        return cls(tc.name, None, harness=harness, splits=split_names(harness, o["val_split"], o["test_split"]),
                   limit=o["limit"])

    def examples(self, tc, split, *, max_samples, seed, where):
        if split not in self._built:
            self._built[split] = build_split(self.harness, self.splits[split], self.limit, f"{where}.{split}_split")
        source = self._built[split]
        ids = list(range(len(source)))
        if max_samples is not None:  # eval.val_samples / test_samples, drawn with the run's data seed
            if len(ids) < max_samples:
                raise EnmpError(f"the {split} split has {len(ids)} documents, fewer than the {max_samples} requested",
                                where=f"{where} ({split})", fix=f"lower eval.{split}_samples or leave it empty")
            ids = sorted(np.random.default_rng(seed).permutation(len(ids))[:max_samples].tolist())
        gold = [self.harness.task.doc_to_target(source.docs[i]) for i in ids]
        labels = [g if isinstance(g, int) and not isinstance(g, bool) else 0 for g in gold]
        return Documents(None, None, None, labels, source, ids)

    def prepare(self, ex, tokenizer, *, batch_size, max_length):
        # max_length does not apply: lm-eval truncates from the left at the model's own context length
        if not isinstance(ex, Documents):
            raise EnmpError("lm_eval tasks score the lm-eval task's own documents", where=f"task '{self.name}'")
        return PreparedDocs(DocBatch(ex.source, ex.ids, tokenizer, batch_size))

    def predict(self, model, batch):
        """Each document's metric value (acc: 1 right, 0 wrong), compared with labels that are all 1."""
        if not batch.ids:
            return torch.zeros(0)
        if self._lm is None or self._lm[0] is not model:
            self._lm = (model, wrap_model(model, batch.tokenizer, batch.batch_size))
        return torch.from_numpy(score(self._lm[1], self.harness, batch.source, batch.ids))
