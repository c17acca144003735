"""Write merged outputs from pure tensors: a Hugging Face model dir and a merged PEFT LoRA adapter.

The model is written shard by shard from the base checkpoint (same tensor names and sharding), so memory
stays at one shard plus the adapted matrices, whatever the model size. A GGUF base is written as one
model.safetensors of its dequantised weights (Hugging Face names), plus config.json and its tokenizer.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import torch
from safetensors.torch import save_file

from ...adapters import AdapterSet, BaseCheckpoint
from ...dtypes import DTYPES
from ...errors import EnmpError
from ...masking import Mask, group_label
from ...merging import MergeParams, merge_kept

MAX_EXACT_RANK = 256  # merged-adapter rank cap when the user gives none


def merged_deltas(adapters: AdapterSet, mask: Mask, grouping: str, method: str,
                  params: MergeParams) -> dict[str, torch.Tensor]:
    """ΔW per base weight name for the kept modules of `mask` (float32).

    Every task's update goes in with the kept set, so methods merged align-then-prune build their shared
    basis from all tasks (`merge_kept`); prune-then-align merges only the kept ones.
    """
    labels = [str(x) for x in mask.layers]
    out = {}
    for target in adapters.targets:
        g = labels.index(str(group_label(target.layer, target.projection, grouping)))
        kept = [int(t) for t in np.flatnonzero(mask.keep[:, g])]
        out[target.weight] = merge_kept(method, adapters.deltas(target), kept, params, target.shape)
    return out


def _copy_side_files(base: BaseCheckpoint, out: Path, dtype: Optional[str]) -> None:
    config = dict(base.config)
    if dtype:
        config["torch_dtype"] = dtype
        config["dtype"] = dtype
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    for f in base.tokenizer_files:
        shutil.copy2(f, out / f.name)
    if base.gguf is not None:
        base.gguf.save_tokenizer(out)


def write_model(out: Path, base: BaseCheckpoint, deltas: dict[str, torch.Tensor],
                dtype: Optional[str] = None, log: Callable[[str], None] = lambda _m: None) -> None:
    """Base tensors with W + ΔW on adapted matrices, into `out` (must be a fresh directory)."""
    cast = DTYPES[dtype] if dtype else None
    weight_map: dict[str, str] = {}
    total = n_files = 0
    if base.gguf is not None:
        log(f"base is GGUF ({base.gguf.name}): writing its dequantised weights as plain safetensors "
            f"({dtype or 'float32'}, Hugging Face tensor names), not re-quantised")
    for file_name, tensors in base.shards():
        for name, t in tensors.items():
            if name in deltas:
                t = (t.to(torch.float32) + deltas[name]).to(t.dtype)
            if cast is not None and t.is_floating_point():
                t = t.to(cast)
            tensors[name] = t.contiguous()
            weight_map[name] = file_name
            total += t.numel() * t.element_size()
        save_file(tensors, str(out / file_name), metadata={"format": "pt"})
        n_files += 1
        log(f"wrote {file_name}")
    missing = set(deltas) - set(weight_map)
    if missing:
        raise EnmpError(f"adapted weights missing from the base checkpoint: {sorted(missing)[:3]}")
    if n_files > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    _copy_side_files(base, out, dtype)


def lowrank_factors(delta: torch.Tensor, rank: Optional[int]) -> tuple[torch.Tensor, torch.Tensor, int, float]:
    """Truncated SVD ΔW ≈ B A; returns (B, A, rank used, relative Frobenius error).

    Without `rank` it uses the numerical rank (exact up to float noise), capped at MAX_EXACT_RANK.
    """
    d = delta.to(torch.float64)
    norm = torch.linalg.matrix_norm(d)
    if norm == 0:
        r = 1
        return torch.zeros(d.shape[0], r), torch.zeros(r, d.shape[1]), r, 0.0
    U, S, Vh = torch.linalg.svd(d, full_matrices=False)
    exact = int((S > S[0] * 1e-6).sum())
    r = max(1, min(exact, rank if rank else MAX_EXACT_RANK))
    root = S[:r].sqrt()
    B, A = U[:, :r] * root, root[:, None] * Vh[:r]
    err = float(torch.linalg.matrix_norm(d - B @ A) / norm)
    return B.float().contiguous(), A.float().contiguous(), r, err


def write_adapter(out: Path, base: BaseCheckpoint, deltas: dict[str, torch.Tensor], rank: Optional[int],
                  log: Callable[[str], None] = lambda _m: None, dtype: Optional[str] = None) -> dict[str, float]:
    """A PEFT LoRA adapter (scale 1: α = r per module) that reproduces the merge; returns errors > 1e-6.

    Factors are stored in `dtype` when given (like the merged model), else float32.
    """
    cast = DTYPES[dtype] if dtype else torch.float32
    tensors: dict[str, torch.Tensor] = {}
    ranks: dict[str, int] = {}
    errors: dict[str, float] = {}
    for weight, delta in deltas.items():
        module = weight[: -len(".weight")]
        B, A, r, err = lowrank_factors(delta, rank)
        tensors[f"base_model.model.{module}.lora_A.weight"] = A.to(cast).contiguous()
        tensors[f"base_model.model.{module}.lora_B.weight"] = B.to(cast).contiguous()
        ranks[module] = r
        if err > 1e-6:
            errors[module] = err
    r_max = max(ranks.values())
    pattern = {m: r for m, r in ranks.items() if r != r_max}
    config = {
        "peft_type": "LORA", "task_type": None, "base_model_name_or_path": base.source,
        "r": r_max, "lora_alpha": r_max, "rank_pattern": pattern, "alpha_pattern": dict(pattern),
        "target_modules": sorted(ranks), "lora_dropout": 0.0, "bias": "none", "use_rslora": False,
        "fan_in_fan_out": False, "init_lora_weights": True, "modules_to_save": None, "inference_mode": True,
    }
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"), metadata={"format": "pt"})
    (out / "adapter_config.json").write_text(json.dumps(config, indent=2) + "\n")
    if errors:  # one line, not one per matrix (dense merges such as TIES are truncated everywhere); the
        # per-matrix errors go next to the adapter, where PEFT ignores them
        (out / "reconstruction_error.json").write_text(json.dumps(
            {m: {"rank": ranks[m], "relative_error": e} for m, e in errors.items()}, indent=2) + "\n")
        worst = max(errors, key=errors.get)
        log(f"adapter: {len(errors)}/{len(ranks)} matrices truncated to rank ≤ {r_max}; relative reconstruction "
            f"error mean {sum(errors.values()) / len(errors):.2e}, max {errors[worst]:.2e} ({worst}); "
            f"the merged model in model/ is exact")
    return errors
