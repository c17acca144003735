"""The search ↔ evaluation contract: which examples a strategy asks a mask to be scored on, and what it gets back.

A strategy asks for evaluations of (mask, examples) — `Candidate.examples` is a `Subset` of the validation
split, or None for all of it — and is told one `Outcome` per candidate: per task, whether each asked example
was predicted right, plus the ENMP fitness on those examples. How examples are grouped (folds, halves,
racing blocks, held-out parts) is the strategy's own business: the engine only scores what it is asked.
Pure numpy; no models.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..errors import EnmpError
from ..metrics import accuracy, fitness


class Subset:
    """Some examples of the validation split: per task, sorted example indices (0 … n_t − 1).

    `key` is a digest of the indices, so two subsets with the same examples are the same in every cache and
    journal whatever they are called; `name` is only for people ("fold 3/8")."""

    __slots__ = ("name", "index", "key")

    def __init__(self, name: str, index: Sequence[Sequence[int]]):
        self.name = name
        self.index = tuple(np.unique(np.asarray(ix, dtype=np.int64)) for ix in index)
        for ix in self.index:
            ix.setflags(write=False)
        digest = hashlib.sha1(b"".join(ix.tobytes() + b";" for ix in self.index)).hexdigest()
        self.key = digest[:16]

    def __repr__(self) -> str:
        return f"Subset({self.name!r}, {self.sizes})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Subset) and other.key == self.key

    def __hash__(self) -> int:
        return hash(self.key)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(ix) for ix in self.index)

    @classmethod
    def everything(cls, sizes: Sequence[int], name: str = "all") -> "Subset":
        return cls(name, [np.arange(n) for n in sizes])

    @classmethod
    def folds(cls, sizes: Sequence[int], k: int, seed: int, name: str = "fold") -> list["Subset"]:
        """k disjoint folds covering every example, drawn per task by a seeded permutation (fold f holds the
        f-th, (f+k)-th, … example of the permutation, so fold sizes differ by at most one)."""
        orders = [np.random.default_rng(seed).permutation(n) for n in sizes]
        return [cls(f"{name} {f + 1}/{k}", [order[f::k] for order in orders]) for f in range(k)]

    @classmethod
    def union(cls, parts: Sequence["Subset"], name: Optional[str] = None) -> "Subset":
        index = [np.concatenate([p.index[t] for p in parts]) for t in range(len(parts[0].index))]
        return cls(name or " + ".join(p.name for p in parts), index)

    def without(self, other: "Subset", name: Optional[str] = None) -> "Subset":
        """These examples minus `other`'s."""
        index = [np.setdiff1d(a, b) for a, b in zip(self.index, other.index)]
        return Subset(name or f"{self.name} − {other.name}", index)


def check_fold_sizes(sizes: Sequence[int], k: int, strategy: str) -> None:
    """One clear line when a task has fewer validation examples than a strategy's `k` folds."""
    small = min(sizes)
    if small < k:
        raise EnmpError(f"{small} validation examples cannot fill the {k} folds of search '{strategy}'",
                        where="eval.val_samples", fix="give more validation examples (eval.val_samples) or "
                                                      "fewer folds (search.options.folds)")


def pack_bits(bits: np.ndarray) -> str:
    """Right/wrong per example as 'n:hex' (a journal row stays small: 900 examples are 230 characters)."""
    bits = np.asarray(bits, dtype=bool)
    return f"{bits.size}:{np.packbits(bits).tobytes().hex()}"


def unpack_bits(text: str) -> np.ndarray:
    n, _, hexed = text.partition(":")
    return np.unpackbits(np.frombuffer(bytes.fromhex(hexed), dtype=np.uint8))[: int(n)].astype(bool)


@dataclass
class Outcome:
    """One candidate's evaluation on the examples it asked for.

    `correct` holds per task one bool per asked example, in the subset's index order (None when a strategy is
    driven with bare fitness values, as pycma's `tell(X, f)` is). `fitness` is the mean normalized accuracy on
    those examples (−inf: the candidate failed); `expert` each task expert's accuracy (%) on the validation
    split, the normalizer."""

    fitness: float
    correct: Optional[tuple[np.ndarray, ...]] = None
    expert: Optional[tuple[float, ...]] = None
    scores: Optional[dict[str, float]] = None  # per task raw accuracy (%) on the asked examples
    error: Optional[str] = None
    cached: bool = False

    @classmethod
    def from_correct(cls, correct: Sequence[np.ndarray], expert: Sequence[float]) -> "Outcome":
        """The outcome of these per-example results, its fitness computed exactly as the engine computes it."""
        correct = tuple(np.asarray(c, dtype=bool) for c in correct)
        raw = {t: accuracy(c) for t, c in enumerate(correct)}
        return cls(fitness(raw, dict(enumerate(expert))), correct, tuple(expert))

    @classmethod
    def of(cls, value: "Outcome | float") -> "Outcome":
        """A bare fitness value (tests, value-only drivers) as an Outcome; an Outcome as it is."""
        if isinstance(value, Outcome):
            return value
        value = float(value)
        return cls(value if math.isfinite(value) else -math.inf,
                   error=None if math.isfinite(value) else "non-finite fitness")

    @property
    def failed(self) -> bool:
        return self.error is not None or not math.isfinite(self.fitness)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(len(c) for c in self.correct)

    @property
    def normalizers(self) -> tuple[float, ...]:
        """1e4 / accuracy (%) per task: an example's normalized score when right (0 for an expert at 0 %)."""
        return tuple(1e4 / a if a > 0 else 0.0 for a in self.expert)

    def per_example(self) -> list[np.ndarray]:
        """Per task, each asked example's normalized score (its mean is the task's normalized accuracy)."""
        if self.correct is None or self.expert is None:
            raise ValueError("this outcome carries a fitness value only, no per-example results")
        return [c.astype(float) * s for c, s in zip(self.correct, self.normalizers)]
