"""Per-task heads: a linear classifier (NLP setting) or zero-shot text embeddings (vision setting)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import torch

from ..errors import EnmpError

HEAD_FILE, HEAD_META = "head.safetensors", "head.json"
# modules_to_save names PEFT writes for common classifier heads (after prefix stripping)
_EXTRA_HEAD_NAMES = ("classifier", "score", "classifier.out_proj", "head")


@dataclass
class Head:
    weight: torch.Tensor  # C × H (float32)
    bias: Optional[torch.Tensor]  # C
    labels: list[str]
    pooling: str = "mean"
    pair: bool = False

    @property
    def n_classes(self) -> int:
        return int(self.weight.shape[0])

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        out = features.float() @ self.weight.T
        return out if self.bias is None else out + self.bias


def _from_extra(extra: dict[str, torch.Tensor]) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    for stem in _EXTRA_HEAD_NAMES:
        for key, value in extra.items():
            k = key.replace(".modules_to_save.default", "")
            if k.endswith(f"{stem}.weight") and value.ndim == 2:
                bias = next((v for kk, v in extra.items()
                             if kk.replace(".modules_to_save.default", "") == k[:-len("weight")] + "bias"), None)
                return value, bias
    return None


def load_head(task: str, adapter_dir: Path, head_path: Optional[str], labels: Optional[list[str]],
              pooling: Optional[str], extra: dict[str, torch.Tensor]) -> Head:
    """Find a task's head: explicit file, else <adapter>/head.safetensors, else the adapter's modules_to_save."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    where = f"task '{task}'"
    meta: dict = {}
    meta_path = (Path(head_path).parent if head_path else adapter_dir) / HEAD_META
    if meta_path.is_file():
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            raise EnmpError("head metadata is not valid JSON", where=str(meta_path)) from None
    path = Path(head_path) if head_path else adapter_dir / HEAD_FILE
    if head_path and not path.is_file():
        raise EnmpError(f"head file {path} not found", where=f"{where}.head",
                        fix="check tasks[].head (relative paths are resolved against the config file's directory)")
    if path.suffix in (".pt", ".pth", ".bin") and path.is_file():
        raise EnmpError(f"head {path} is a pickle file; enmp loads safetensors only", where=where,
                        fix="convert it with `enmp convert-heads` or save it with safetensors")
    if path.is_file():
        try:
            tensors = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as e:
            raise EnmpError(f"cannot read head file ({e})", where=str(path)) from None
        if "weight" not in tensors:
            raise EnmpError(f"head file has no 'weight' tensor (has: {', '.join(tensors)})", where=str(path))
        weight, bias = tensors["weight"], tensors.get("bias")
    else:
        found = _from_extra(extra)
        if found is None:
            raise EnmpError(f"no head for task '{task}'", where=where,
                            fix=f"put {HEAD_FILE} in the adapter dir, set tasks[].head, or save the head "
                                "in the adapter's modules_to_save")
        weight, bias = found
    weight = weight.float()
    bias = None if bias is None else bias.float()
    if weight.ndim != 2 or (bias is not None and bias.shape != (weight.shape[0],)):
        raise EnmpError(f"head weight must be C × H (and bias C), got {tuple(weight.shape)}", where=where)
    if not torch.isfinite(weight).all() or (bias is not None and not torch.isfinite(bias).all()):
        raise EnmpError("head has NaN/Inf values", where=where)
    names = labels or meta.get("labels") or [str(i) for i in range(weight.shape[0])]
    if len(names) != weight.shape[0]:
        raise EnmpError(f"{len(names)} labels for a head with {weight.shape[0]} classes", where=where,
                        fix="make tasks[].labels match the head's rows")
    return Head(weight, bias, [str(n) for n in names], pooling or meta.get("pooling", "mean"),
                bool(meta.get("pair", False)))
