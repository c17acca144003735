"""Task × layer keep-masks: the JSON file format and the ENMP decode z → mask.

A *module* is one task's LoRA in one layer (all its projections). With the finer "projection" grouping a
module is one task × layer × projection and the mask's "layers" entries are labels "LAYER.PROJECTION".
File format: {"tasks": [names], "layers": [layer indices or labels], "keep": [[0/1 per layer] per task]}.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence, Union

import numpy as np

from .errors import EnmpError
from .atomic_files import atomic_write_json

GroupLabel = Union[int, str]
GROUPINGS = ("layer", "projection")
_MASK_FIX = 'write {"tasks": [names], "layers": [indices], "keep": [[0/1 per layer] per task]} (see a run\'s mask.json)'


def group_label(layer: int, projection: str, grouping: str) -> GroupLabel:
    return layer if grouping == "layer" else f"{layer}.{projection}"


def group_labels(targets, grouping: str = "layer") -> list[GroupLabel]:
    """Ordered, unique group labels of target matrices (objects with .layer and .projection)."""
    if grouping not in GROUPINGS:
        raise EnmpError(f"unknown module grouping '{grouping}'", where="grouping",
                        fix=f"choose one of: {', '.join(GROUPINGS)}")
    seen: dict[GroupLabel, None] = {}
    for t in sorted(targets, key=lambda t: (t.layer, t.projection)):
        seen.setdefault(group_label(t.layer, t.projection, grouping), None)
    return list(seen)


def target_groups(targets, groups: Sequence[GroupLabel], grouping: str) -> list[int]:
    """The mask group (column) each target matrix belongs to."""
    labels = [str(g) for g in groups]
    return [labels.index(str(group_label(t.layer, t.projection, grouping))) for t in targets]


def keep_to_str(keep: np.ndarray) -> str:
    """The text form of a keep-mask ("101;110": one row per task, 1 = keep): the identity of a mask in
    caches and the form logs store it in."""
    return ";".join("".join("1" if v else "0" for v in row) for row in np.asarray(keep, dtype=bool))


def keep_from_str(text: str) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in text.split(";")], dtype=bool)


@dataclass(eq=False)
class Mask:
    tasks: list[str]
    layers: list[GroupLabel]
    keep: np.ndarray  # bool, shape (T, G); True = keep

    def __post_init__(self):
        self.keep = np.asarray(self.keep, dtype=bool)
        if self.keep.shape != (len(self.tasks), len(self.layers)):
            raise EnmpError(f"mask has shape {self.keep.shape}, expected "
                            f"({len(self.tasks)} tasks, {len(self.layers)} layers)")

    @classmethod
    def full(cls, tasks: Sequence[str], layers: Sequence[GroupLabel]) -> "Mask":
        return cls(list(tasks), list(layers), np.ones((len(tasks), len(layers)), dtype=bool))

    @property
    def shape(self) -> tuple[int, int]:
        return self.keep.shape

    def kept_tasks(self, group: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.flatnonzero(self.keep[:, group]))

    def pruned(self) -> list[list]:
        return [[self.tasks[t], self.layers[g]] for t, g in zip(*np.nonzero(~self.keep))]

    @property
    def n_pruned(self) -> int:
        return int((~self.keep).sum())

    def to_json(self) -> dict:
        return {"tasks": list(self.tasks), "layers": list(self.layers),
                "keep": [[int(v) for v in row] for row in self.keep]}

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_json())

    @classmethod
    def from_json(cls, data, *, where: str = "mask") -> "Mask":
        if not isinstance(data, dict) or not {"tasks", "layers", "keep"} <= set(data):
            raise EnmpError("mask JSON must be an object with keys tasks, layers, keep", where=where,
                            fix='write {"tasks": [...], "layers": [...], "keep": [[0/1, ...], ...]}')
        tasks, layers, keep = data["tasks"], data["layers"], data["keep"]
        if not isinstance(tasks, list) or not all(isinstance(t, str) for t in tasks):
            raise EnmpError("'tasks' must be a list of task names", where=where, fix=_MASK_FIX)
        if not isinstance(layers, list) or not all(isinstance(x, (int, str)) and not isinstance(x, bool)
                                                     for x in layers):
            raise EnmpError("'layers' must be a list of layer indices", where=where, fix=_MASK_FIX)
        if (not isinstance(keep, list) or len(keep) != len(tasks)
                or any(not isinstance(r, list) or len(r) != len(layers) for r in keep)):
            raise EnmpError(f"'keep' must be {len(tasks)} rows of {len(layers)} values", where=where, fix=_MASK_FIX)
        if any(v not in (0, 1) or isinstance(v, float) for r in keep for v in r):
            raise EnmpError("'keep' values must be 0 or 1", where=where, fix=_MASK_FIX)
        return cls(tasks, layers, np.array(keep, dtype=bool).reshape(len(tasks), len(layers)))

    @classmethod
    def load(cls, path: str | Path) -> "Mask":
        path = Path(path)
        if not path.is_file():
            raise EnmpError(f"mask file {path} not found", where="--mask")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise EnmpError(f"mask file is not valid JSON ({e.msg if hasattr(e, 'msg') else e})",
                            where=str(path), fix=_MASK_FIX) from None
        return cls.from_json(data, where=str(path))

    def check_matches(self, tasks: Sequence[str], layers: Sequence[GroupLabel], where: str = "--mask") -> "Mask":
        """Return this mask reordered to (tasks, layers); error if the names or sizes differ."""
        if sorted(self.tasks) != sorted(tasks) or len(set(self.tasks)) != len(self.tasks):
            raise EnmpError(f"mask tasks {self.tasks} do not match the adapters {list(tasks)}", where=where,
                            fix="use a mask made for these adapters (names must match --adapter NAME=...)")
        norm = [str(x) for x in self.layers]
        if sorted(norm) != sorted(str(x) for x in layers):
            raise EnmpError(f"mask layers {self.layers} do not match the model's adapted layers "
                            f"{list(layers)}", where=where,
                            fix="use a mask made for this base model and grouping (see a run's mask.json)")
        rows = [self.tasks.index(t) for t in tasks]
        cols = [norm.index(str(x)) for x in layers]
        return Mask(list(tasks), list(layers), self.keep[np.ix_(rows, cols)])


def prune_budget(rho: float, n_modules: int) -> int:
    """k = ⌊ρ · T · L⌋ (an upper bound on how many modules a decoded mask prunes)."""
    return int(math.floor(rho * n_modules + 1e-9))


def decode(z: np.ndarray, rho: float, shape: tuple[int, int]) -> np.ndarray:
    """ENMP decode: prune the k largest *positive* scores (fewer if fewer are positive); keep the rest.

    z ≤ 0 everywhere gives the full merge. Ties are broken by index (stable sort) for determinism.
    Returns a bool keep array of `shape` (row-major: task-major, as the latent is laid out).
    """
    z = np.asarray(z, dtype=float).ravel()
    n = int(np.prod(shape))
    if z.size != n:
        raise ValueError(f"latent has {z.size} entries, mask needs {n}")
    k = prune_budget(rho, n)
    keep = np.ones(n, dtype=bool)
    if k > 0:
        order = np.argsort(-z, kind="stable")[:k]
        prune = order[z[order] > 0]
        keep[prune] = False
    return keep.reshape(shape)
