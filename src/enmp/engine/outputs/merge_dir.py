"""`enmp merge` as a Python function: adapters (+ optional mask) → merged model dir (+ merged adapter)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from ...adapters import BaseCheckpoint, load_adapter_set, looks_like_hub_id
from ...atomic_files import atomic_dir, atomic_write_json, check_output_dir
from ...errors import EnmpError
from ...masking import Mask, group_labels
from ...merging import MergeParams, method_params, resolved
from .export import merged_deltas, write_adapter, write_model
from .model_card import merge_command, write_card


def merge_to_dir(base: str, adapters: dict[str, str], out: str | Path, *, method: str = "ta",
                 params: Optional[MergeParams] = None, mask: Optional[str | Path | Mask] = None,
                 grouping: str = "layer", layer_regex: Optional[str] = None, overwrite: bool = False,
                 save_adapter: bool = False, adapter_rank: Optional[int] = None, dtype: Optional[str] = None,
                 base_model_id: Optional[str] = None, log: Callable[[str], None] = lambda _m: None) -> dict:
    """Merge LoRA experts into the base and write a Hugging Face model directory at `out`.

    Everything is validated before anything is written; the directory appears only when complete.
    `base_model_id` names a local base by its Hub id in the model card. Returns a summary (tasks, layers,
    pruned modules, adapter reconstruction errors).
    """
    params = method_params(method) if params is None else resolved(method, params)
    if base_model_id is not None and not looks_like_hub_id(base_model_id):
        raise EnmpError(f"'{base_model_id}' is not a Hub id", where="--base-model-id",
                        fix="pass the base's Hub repo as ORG/NAME, e.g. meta-llama/Meta-Llama-3-8B")
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
    card = {"base": ckpt, "adapters": aset, "method": method, "params": params, "grouping": grouping,
            "pruned": keep.pruned(), "base_model_id": base_model_id, "command": merge_command(
                base, adapters, method, params, mask=mask is not None, out=out, grouping=grouping,
                layer_regex=layer_regex, save_adapter=save_adapter, adapter_rank=adapter_rank, dtype=dtype,
                base_model_id=base_model_id)}
    with atomic_dir(out, overwrite) as tmp:
        write_model(tmp, ckpt, deltas, dtype, log)
        write_card(tmp, "model", **card)
        if save_adapter:
            errors = write_adapter(tmp / "adapter", ckpt, deltas, adapter_rank, log, dtype=dtype)
            write_card(tmp / "adapter", "adapter", **card)
        keep.save(tmp / "mask.json")
        summary = {"base": ckpt.source, "tasks": aset.tasks, "layers": layers, "method": method,
                   "params": params.to_dict(), "pruned": keep.pruned(), "adapter_errors": errors}
        atomic_write_json(tmp / "enmp_merge.json", summary)
    return summary
