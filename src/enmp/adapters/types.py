"""Data structures for LoRA experts after loading and validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch


@dataclass(frozen=True, eq=False)
class TaskDelta:
    """One task's low-rank update of one matrix: ΔW = scale · B @ A (what every merge method consumes).

    ``seed_key`` names (task, matrix) so random per-entry choices (DARE) are drawn once per run from the
    run seed and reused by every candidate, whatever else is kept.
    """

    B: torch.Tensor  # d_out × r
    A: torch.Tensor  # r × d_in
    scale: float
    seed_key: str = ""
    _scaled: dict = field(default_factory=dict, init=False, repr=False)  # dtype → (scale · B, A), made once

    def scaled_B(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """scale · B in `dtype`, computed once: a merge of many tasks would otherwise redo it per candidate."""
        return self._factors(dtype)[0]

    def A_as(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A in `dtype`, made once (even a no-op `.to` costs a microsecond, per task and matrix of each merge)."""
        return self._factors(dtype)[1]

    def _factors(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        got = self._scaled.get(dtype)
        if got is None:
            got = self._scaled[dtype] = (self.B.to(dtype) * self.scale, self.A.to(dtype))
        return got

    @property
    def shape(self) -> tuple[int, int]:
        return (self.B.shape[0], self.A.shape[1])

    @property
    def rank(self) -> int:
        return self.A.shape[0]

    def dense(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return (self.B.to(dtype) @ self.A.to(dtype)) * self.scale


@dataclass(frozen=True)
class TargetMatrix:
    """One adapted weight matrix of the base model."""

    module: str  # module path inside the base model, e.g. "encoder.layer.0.attention.self.query"
    weight: str  # tensor name in the base checkpoint, e.g. "encoder.layer.0.attention.self.query.weight"
    layer: int  # transformer layer index
    projection: str  # projection name as written in the model, e.g. "query" or "q_proj"
    shape: tuple[int, int]  # (d_out, d_in)


@dataclass
class LoraFactor:
    """One task's LoRA on one matrix (float32 factors and the scale PEFT applies)."""

    A: torch.Tensor  # r × d_in
    B: torch.Tensor  # d_out × r
    scale: float  # α/r, or α/√r with rsLoRA (per-module rank/alpha patterns applied)

    @property
    def rank(self) -> int:
        return int(self.A.shape[0])

    def delta(self, seed_key: str = "") -> TaskDelta:
        return TaskDelta(B=self.B, A=self.A, scale=self.scale, seed_key=seed_key)


@dataclass
class LoraAdapter:
    """A loaded PEFT LoRA adapter: factors keyed by the base module path (prefixes stripped)."""

    name: str
    source: str  # local dir or hub id it came from
    config: dict
    factors: dict[str, LoraFactor]
    extra: dict[str, torch.Tensor] = field(default_factory=dict)  # modules_to_save / other tensors
    directory: Optional[Path] = None  # the local directory it was read from (a Hub snapshot for a Hub id)


@dataclass
class AdapterSet:
    """T validated adapters over one base model; all target the same matrices."""

    base: str
    adapters: list[LoraAdapter]
    targets: list[TargetMatrix]  # sorted by (layer, module)
    # module → every task's TaskDelta, built once: a search merges each matrix thousands of times, and with
    # 100 tasks rebuilding them (and their seed keys) cost 0.26 ms per merge next to a 2.6 ms TA merge
    _deltas: dict[str, list[TaskDelta]] = field(default_factory=dict, init=False, repr=False, compare=False)

    @property
    def tasks(self) -> list[str]:
        return [a.name for a in self.adapters]

    @property
    def layers(self) -> list[int]:
        return sorted({t.layer for t in self.targets})

    @property
    def projections(self) -> list[str]:
        return sorted({t.projection for t in self.targets})

    def describe(self) -> list[dict]:
        """One row per task: matrices, layers, projections, ranks, scales (`enmp inspect`, model cards)."""
        rows = []
        for ad in self.adapters:
            facs = [ad.factors[t.module] for t in self.targets]
            rows.append({
                "task": ad.name,
                "matrices": len(facs),
                "layers": self.layers,
                "projections": self.projections,
                "ranks": sorted({f.rank for f in facs}),
                "scales": sorted({round(f.scale, 6) for f in facs}),
                "rslora": bool(ad.config.get("use_rslora", False)),
                "extra": sorted(ad.extra),
                "path": ad.source,
            })
        return rows

    def deltas(self, target: TargetMatrix, tasks: list[int] | None = None) -> list[TaskDelta]:
        """TaskDeltas of the given task indices (default all) for one matrix, in task order."""
        row = self._deltas.get(target.module)
        if row is None:
            row = self._deltas[target.module] = [ad.factors[target.module].delta(f"{ad.name}/{target.weight}")
                                                 for ad in self.adapters]
        return list(row) if tasks is None else [row[i] for i in tasks]
