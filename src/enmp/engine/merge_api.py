"""`enmp merge` as a Python function: adapters (+ optional mask) → merged model dir (+ merged adapter)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ..adapters import BaseCheckpoint, load_adapter_set
from ..io import atomic_dir, atomic_write_json, check_output_dir
from ..masking import Mask, group_labels
from ..merging import MergeParams, get_method, resolve_params, validate_params
from .export import merged_deltas, write_adapter, write_model


def merge_to_dir(base: str, adapters: dict[str, str], out: str | Path, *, method: str = "ta",
                 params: MergeParams = MergeParams(), mask: Optional[str | Path | Mask] = None,
                 grouping: str = "layer", layer_regex: Optional[str] = None, overwrite: bool = False,
                 save_adapter: bool = False, adapter_rank: Optional[int] = None, dtype: Optional[str] = None,
                 log: Callable[[str], None] = lambda _m: None) -> dict:
    """Merge LoRA experts into the base and write a Hugging Face model directory at `out`.

    Everything is validated before anything is written; the directory appears only when complete.
    Returns a summary (tasks, layers, pruned modules, adapter reconstruction errors).
    """
    get_method(method)
    validate_params(method, params)
    params = resolve_params(method, params)
    check_output_dir(out, overwrite)
    ckpt = BaseCheckpoint(base)
    aset = load_adapter_set(ckpt, adapters, layer_regex=layer_regex)
    layers = group_labels(aset.targets, grouping)
    if mask is None:
        keep = Mask.full(aset.tasks, layers)
    else:
        keep = (mask if isinstance(mask, Mask) else Mask.load(mask)).check_matches(aset.tasks, layers)
    log(f"merging {len(aset.tasks)} adapters over {len(aset.targets)} matrices with {method}")
    deltas = merged_deltas(aset, keep, grouping, method, params)
    errors: dict[str, float] = {}
    with atomic_dir(out, overwrite) as tmp:
        write_model(tmp, ckpt, deltas, dtype, log)
        if save_adapter:
            errors = write_adapter(tmp / "adapter", ckpt, deltas, adapter_rank, log, dtype=dtype)
        keep.save(tmp / "mask.json")
        summary = {"base": ckpt.source, "tasks": aset.tasks, "layers": layers, "method": method,
                   "params": params.__dict__, "pruned": keep.pruned(), "adapter_errors": errors}
        atomic_write_json(tmp / "enmp_merge.json", summary)
    return summary
