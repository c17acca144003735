"""Head checks of the dry run: how many classes each task has, and whether a real head file fits the base.

A head converted for another base (e.g. 512-wide CLIP rows for Llama's 4096 features) fails only after the
real model has been downloaded; reading its shape here catches it offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from ...architectures import known_class_count
from ...errors import EnmpError


def _head_shape(path: str | Path) -> tuple[int, ...]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        return tuple(fh.get_slice("weight").get_shape())


def class_count(tc) -> tuple[int, str]:
    """(classes, where that number came from) for one task config."""
    if tc.labels:
        return len(tc.labels), "labels"
    if tc.head and Path(tc.head).is_file():
        return int(_head_shape(tc.head)[0]), "head file"
    n = known_class_count(tc.name)
    if n:
        return n, "known task"
    return 2, "assumed"


def check_real_head(tc, n_classes: int, feature_dim: Optional[int]) -> str:
    """What was checked of the task's real head (raises when its shape cannot fit)."""
    if not tc.head:
        return "default location (<adapter>/head.safetensors), not checked offline"
    path = Path(tc.head)
    if not path.is_file():
        return f"{path.name} not present yet (convert the KnOTS heads first), shape not checked"
    shape = _head_shape(path)
    if feature_dim and shape[1] != feature_dim:
        raise EnmpError(f"head {path} is {shape[0]}×{shape[1]} but the base gives {feature_dim} features",
                        where=f"task '{tc.name}'.head")
    if shape[0] != n_classes:
        raise EnmpError(f"head {path} has {shape[0]} rows for {n_classes} classes", where=f"task '{tc.name}'.head")
    return f"{path.name} {shape[0]}×{shape[1]} fits"
