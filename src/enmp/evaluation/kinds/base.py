"""What every task kind declares (`TaskKind`), the prepared inputs of a split, and scoring them.

A kind turns examples into model inputs once per run (tokenised or preprocessed, grouped into batches of
similar length), so evaluating a candidate costs only the forward passes. Everything the rest of enmp needs
to know about a kind is on its class: the task-config keys it adds, the transformers class and processor the
run loads for it and how its head is built. The registry (`registry.KINDS`) lists the kinds by name.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Optional

import torch

from ... import metrics
from ...errors import EnmpError, NumericalError
from ...options import Option, Options
from ..data import Examples, load_examples
from ..heads import Head, load_head
from .processors import PROCESSORS

if TYPE_CHECKING:
    from ...adapters import BaseCheckpoint


@dataclass
class PreparedSplit:
    """Model inputs of one split in batches of similar length; `order` is the example index of each label
    in batch order, so that results can be put back in the examples' own order."""

    batches: list[dict[str, torch.Tensor]]
    labels: list[torch.Tensor]
    order: list[int]

    @property
    def n(self) -> int:
        return sum(len(y) for y in self.labels)

    @property
    def rows(self) -> int:
        """Sequences (or images) the model runs: `n`, or n × classes for label-word scoring."""
        return sum(next(v for k, v in b.items() if not k.startswith("_")).shape[0] for b in self.batches)

    def to(self, device: torch.device) -> "PreparedSplit":
        return PreparedSplit([{k: v.to(device) for k, v in b.items()} for b in self.batches],
                             [y.to(device) for y in self.labels], self.order)


@dataclass(frozen=True)
class Required(Option):
    """A task-config key a kind cannot do without: it has no default, so `example` (YAML text) shows one in
    the error lines. With `sequence` the value is a non-empty list (one per class), never a single value."""

    example: str = ""

    def describe(self) -> str:
        one = "a non-empty text" if self.type is str else Option.describe(dataclasses.replace(self, sequence=False))
        return f"a non-empty list, each {one}" if self.sequence else one

    def check(self, value: Any, where: str) -> Any:
        if not self.sequence or (isinstance(value, list) and value and not any(isinstance(v, list) for v in value)):
            try:
                return super().check(value, where)
            except EnmpError:
                pass  # the line below says what this key takes, with an example instead of a default
        raise EnmpError(f"{self.name} must be {self.describe()}, got {value!r}", where=where,
                        fix=f"e.g. {self.name}: {self.example}")


def length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (stable), cut into batches: padding stays minimal."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def check_finite(logits: torch.Tensor, task: str) -> None:
    if not torch.isfinite(logits).all():
        raise NumericalError("non-finite logits", where=f"task '{task}'")


class TaskKind:
    """One kind's declaration (class attributes and class methods) and one task of that kind (an instance:
    the task's name and head).

    A new kind is a subclass in its own module that sets the class attributes below and implements `prepare`
    and `predict` (plus `from_config` when its head is not a head file), and one line in `registry.KINDS`.
    """

    #: the name task configs give as `kind:`
    kind: ClassVar[str] = ""
    #: the task-config keys this kind adds to the common ones (`Required`: a task of this kind must give it);
    #: config parsing checks them, and names the kinds that take a key given to a kind that does not
    options: ClassVar[Options] = Options()
    #: the transformers class the run loads the base with (a name in `transformers`)
    model_class: ClassVar[str] = ""
    #: other model classes whose outputs this kind reads as well (so its tasks can share a run with kinds
    #: that need them, e.g. text classification on a causal LM's hidden states)
    also_runs_on: ClassVar[tuple[str, ...]] = ()
    #: how its inputs are preprocessed: a key of `processors.PROCESSORS` ("tokenizer", "image_processor")
    processor: ClassVar[str] = ""
    #: its head's rows are unit vectors (zero-shot text embeddings): stand-in heads of a dry run are too
    unit_head_rows: ClassVar[bool] = False
    #: its tasks bring their own documents (an lm-eval task): their configs have no `data:` section, and
    #: `examples` reads the kind's own source instead of `data.load_examples`
    brings_data: ClassVar[bool] = False
    #: its `predict` runs each prepared batch as one forward pass of the model, so the prefix cache of layer
    #: outputs can serve it (False: a library batches the model calls itself, and the cache cannot know its
    #: batches)
    layer_prefix_cache: ClassVar[bool] = True

    def __init__(self, name: str, head: Optional[Head]):
        self.name, self.head = name, head

    # ------------------------------------------------------------------ building (class methods)
    @classmethod
    def check_config(cls, tc: Any, options: dict[str, Any], where: str) -> None:
        """Checks across keys (each key alone is checked by its `Option`); raise one EnmpError line."""

    @classmethod
    def from_config(cls, tc: Any, adapter_dir: Path, extra: dict[str, torch.Tensor]) -> "TaskKind":
        """The task of one (checked) task config: by default with its head file (see `load_head`)."""
        return cls(tc.name, load_head(tc.name, adapter_dir, tc.head, tc.labels, None, extra))

    @classmethod
    def resolve_paths(cls, options: dict[str, Any], resolve: Callable[[str], str]) -> dict[str, Any]:
        """The kind's given keys with local paths made absolute by `resolve` (against the config file's
        directory); by default the kind's keys hold no paths."""
        return options

    @classmethod
    def load_processor(cls, base: "BaseCheckpoint", trust_remote_code: bool) -> Any:
        return PROCESSORS[cls.processor](base, trust_remote_code)

    @classmethod
    def runs_on(cls, model_class: str) -> bool:
        return model_class == cls.model_class or model_class in cls.also_runs_on

    # ------------------------------------------------------------------ scoring (instances)
    def examples(self, tc: Any, split: str, *, max_samples: Optional[int], seed: int, where: str) -> Examples:
        """One split's labelled examples (`max_samples` drawn with `seed`): by default from the task's `data:`."""
        return load_examples(tc.data, split, self.head.labels, max_samples=max_samples, seed=seed, where=where)

    def prepare(self, ex: Examples, processor: Any, *, batch_size: int, max_length: int) -> PreparedSplit:
        raise NotImplementedError

    def predict(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The predicted class of each example in `batch` (a 1-D tensor, compared with its labels)."""
        raise NotImplementedError


def correct(task: TaskKind, model: torch.nn.Module, split: PreparedSplit,
            before_batch: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Whether each example is predicted right (bool, in the examples' own order)."""
    out = []
    with torch.inference_mode():
        for i, (batch, y) in enumerate(zip(split.batches, split.labels)):
            if before_batch is not None:
                before_batch(i)
            out.append((task.predict(model, batch) == y).cpu())
    if not out:
        return torch.zeros(0, dtype=torch.bool)
    right = torch.empty(split.n, dtype=torch.bool)
    right[torch.tensor(split.order, dtype=torch.long)] = torch.cat(out)
    return right


def accuracy(task: TaskKind, model: torch.nn.Module, split: PreparedSplit,
             before_batch: Optional[Callable[[int], None]] = None) -> float:
    return metrics.accuracy(correct(task, model, split, before_batch))
