"""Load PEFT LoRA adapters (safetensors only) and validate a set of them against one base checkpoint.

Everything that would make a merge silently wrong is an EnmpError here, before any compute: wrong rank or
shape, NaN factors, adapters for another model, adapters that target different matrices, and PEFT features
whose update is not ``scale · B @ A`` (DoRA, LoRA biases, fan_in_fan_out, embedding LoRA).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import warnings
from pathlib import Path
from typing import Mapping

import torch
from safetensors import safe_open

from ..errors import EnmpError, NumericalError
from .base_model import BaseCheckpoint
from .hub import resolve_dir
from .naming import parse_module
from .types import AdapterSet, LoraAdapter, LoraFactor, TargetMatrix

_PREFIX = "base_model.model."
_LORA_KEY = re.compile(r"^(?P<module>.+)\.(?P<kind>lora_A|lora_B)(?:\.(?P<adapter>[^.]+))?\.(?P<param>weight|bias)$")
_UNSUPPORTED_TENSORS = {
    "lora_embedding_A": "embedding LoRA (lora_embedding_A/B)",
    "lora_embedding_B": "embedding LoRA (lora_embedding_A/B)",
    "lora_magnitude_vector": "DoRA (lora_magnitude_vector)",
}
_SAFE_FIX = ("convert it: PeftModel.from_pretrained(base, path).save_pretrained(out, safe_serialization=True)")


def pattern_value(patterns: Mapping[str, object] | None, module: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup (mirrors peft.utils.other.get_pattern_key, peft 0.21).

    The first key (in config order) that matches the end of the module path at a dot boundary, as a
    regex, wins; otherwise the module name itself is looked up, then the default applies.
    """
    if not patterns:
        return default
    for key in patterns:
        if re.match(rf"(.*\.)?({key})$", module):
            return patterns[key]
    return patterns.get(module, default)


def lora_scale(alpha: float, r: int, use_rslora: bool) -> float:
    """PEFT's scaling: α/r, or α/√r for rank-stabilised LoRA."""
    return float(alpha) / (math.sqrt(r) if use_rslora else r)


def _read_config(cfg_path: Path, name: str) -> dict:
    if not cfg_path.is_file():
        raise EnmpError(f"adapter '{name}' has no adapter_config.json in {cfg_path.parent}",
                        where=str(cfg_path.parent), fix="pass a directory written by PEFT save_pretrained")
    try:
        config = json.loads(cfg_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EnmpError(f"adapter_config.json is not valid JSON ({exc})", where=str(cfg_path)) from exc
    if not isinstance(config, dict):
        raise EnmpError("adapter_config.json must hold a JSON object", where=str(cfg_path))
    if config.get("peft_type") != "LORA":
        raise EnmpError(f"adapter '{name}' has peft_type {config.get('peft_type')!r}; enmp merges LoRA adapters "
                        "only", where=str(cfg_path), fix="pass LoRA adapters (peft_type 'LORA')")
    unsupported = [
        ("use_dora", "DoRA (use_dora)"), ("lora_bias", "LoRA biases (lora_bias)"),
        ("fan_in_fan_out", "fan_in_fan_out (GPT-2 style Conv1D layers)"),
        ("target_parameters", "LoRA on raw parameters (target_parameters)"),
        ("layer_replication", "layer_replication"),
    ]
    for field, label in unsupported:
        if config.get(field):
            raise EnmpError(f"adapter '{name}' uses {label}, which enmp does not support", where=str(cfg_path),
                            fix="merge plain LoRA adapters on Linear layers")
    for field in ("r", "lora_alpha"):
        value = config.get(field)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise EnmpError(f"adapter_config.json field '{field}' must be a positive number, got {value!r}",
                            where=str(cfg_path))
    for field in ("rank_pattern", "alpha_pattern"):
        if config.get(field) is not None and not isinstance(config[field], dict):
            raise EnmpError(f"adapter_config.json field '{field}' must be an object", where=str(cfg_path))
    return config


def _checked(t: torch.Tensor, key: str, file: Path) -> torch.Tensor:
    if not t.is_floating_point():
        raise EnmpError(f"tensor '{key}' has non-float dtype {t.dtype}", where=str(file),
                        fix="quantized adapters are not supported; save the adapter in float precision")
    t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        raise NumericalError(f"tensor '{key}' contains NaN/Inf", where=str(file),
                             fix="the adapter is corrupt or diverged in training; retrain or leave it out")
    return t


def load_adapter(name: str, path_or_id: str, *, revision: str | None = None) -> LoraAdapter:
    """Load one PEFT LoRA adapter; factors are keyed by module path with ``base_model.model.`` stripped."""
    directory = resolve_dir(path_or_id, what=f"{name} adapter", revision=revision)
    config = _read_config(directory / "adapter_config.json", name)
    file = directory / "adapter_model.safetensors"
    if not file.is_file():
        pickled = [p.name for p in directory.iterdir() if p.suffix in (".bin", ".pt", ".pth")]
        if pickled:
            raise EnmpError(f"adapter '{name}' is a pickled adapter ({pickled[0]}); convert to safetensors",
                            where=str(directory), fix=_SAFE_FIX)
        raise EnmpError(f"adapter '{name}' has no adapter_model.safetensors", where=str(directory),
                        fix="pass a directory written by PEFT save_pretrained")

    halves: dict[str, dict[str, torch.Tensor]] = {}
    extra: dict[str, torch.Tensor] = {}
    try:
        fh_ctx = safe_open(file, framework="pt")
    except Exception as exc:
        raise EnmpError(f"cannot read adapter weights ({type(exc).__name__}: {exc})", where=str(file),
                        fix="re-download or re-save the adapter") from exc
    with fh_ctx as fh:
        for key in fh.keys():
            stripped = key[len(_PREFIX):] if key.startswith(_PREFIX) else key
            for marker, label in _UNSUPPORTED_TENSORS.items():
                if f".{marker}" in stripped or stripped.startswith(marker):
                    raise EnmpError(f"adapter '{name}' contains {label} (tensor '{key}'), which enmp does not "
                                    "support", where=str(file), fix="merge plain LoRA adapters on Linear layers")
            m = _LORA_KEY.match(stripped)
            if m is None:
                if ".lora_" in stripped:
                    raise EnmpError(f"unrecognised LoRA tensor '{key}'", where=str(file),
                                    fix="expected <module>.lora_A.weight / <module>.lora_B.weight")
                # modules_to_save: PEFT may keep the wrapper segment; the base tensor name omits it.
                clean = re.sub(r"\.modules_to_save\.[^.]+(?=\.)", "", stripped)
                extra[clean] = _checked(fh.get_tensor(key), key, file)
                continue
            if m["param"] == "bias":
                raise EnmpError(f"adapter '{name}' has a LoRA bias (tensor '{key}'), which enmp does not support",
                                where=str(file), fix="merge LoRA adapters trained with lora_bias=False")
            halves.setdefault(m["module"], {})[m["kind"]] = _checked(fh.get_tensor(key), key, file)

    if not halves:
        raise EnmpError(f"adapter '{name}' contains no lora_A/lora_B tensors", where=str(file),
                        fix="pass a LoRA adapter saved by PEFT")
    use_rslora = bool(config.get("use_rslora", False))
    factors: dict[str, LoraFactor] = {}
    for module in sorted(halves):
        parts = halves[module]
        if set(parts) != {"lora_A", "lora_B"}:
            have, lack = next(iter(parts)), ({"lora_A", "lora_B"} - set(parts)).pop()
            raise EnmpError(f"module '{module}' has {have} but no {lack}", where=str(file),
                            fix="the adapter file is incomplete; re-save it with PEFT")
        A, B = parts["lora_A"], parts["lora_B"]
        if A.ndim != 2 or B.ndim != 2:
            raise EnmpError(f"module '{module}' has non-matrix LoRA factors (A {tuple(A.shape)}, B "
                            f"{tuple(B.shape)}); only Linear layers are supported", where=str(file))
        if B.shape[1] != A.shape[0]:
            raise EnmpError(f"module '{module}': lora_B is {B.shape[0]}×{B.shape[1]} but lora_A is "
                            f"{A.shape[0]}×{A.shape[1]} (inner ranks differ)", where=str(file),
                            fix="the adapter file is corrupt; re-save it with PEFT")
        r_cfg = pattern_value(config.get("rank_pattern"), module, config["r"])
        if int(r_cfg) != A.shape[0]:
            raise EnmpError(f"module '{module}': adapter_config.json says r={r_cfg} but lora_A has rank "
                            f"{A.shape[0]}", where=str(directory),
                            fix="fix r / rank_pattern in adapter_config.json to match the saved weights")
        alpha = pattern_value(config.get("alpha_pattern"), module, config["lora_alpha"])
        factors[module] = LoraFactor(A=A.contiguous(), B=B.contiguous(),
                                     scale=lora_scale(alpha, A.shape[0], use_rslora))
    return LoraAdapter(name=name, source=str(path_or_id), config=config, factors=factors, extra=extra,
                       directory=directory)


def _declared_base_matches(declared: str | None, base: BaseCheckpoint) -> bool:
    if not declared:
        return True
    known = {base.source.rstrip("/"), str(base.dir), base.dir.name, Path(base.source).name}
    d = str(declared).rstrip("/")
    if d in known or Path(d).name in known:
        return True
    try:
        return Path(d).resolve() == base.dir.resolve()
    except OSError:
        return False


def _rekey_to_base(adapter: LoraAdapter, base: BaseCheckpoint) -> LoraAdapter:
    """Map every adapted module to its base tensor, check shapes, and key factors by base module path."""
    shapes = base.shapes
    rekeyed: dict[str, LoraFactor] = {}
    origin: dict[str, str] = {}
    declared = adapter.config.get("base_model_name_or_path")
    for module, f in adapter.factors.items():
        weight = base.find_weight(module, shape=(f.B.shape[0], f.A.shape[1]))
        if weight is None:
            raise EnmpError(f"adapter '{adapter.name}' adapts module '{module}', which the base model does not have",
                            where=adapter.source,
                            fix=f"use adapters trained on this base (the adapter names base '{declared}')")
        shape = shapes[weight]
        if len(shape) != 2:
            raise EnmpError(f"adapter '{adapter.name}' adapts '{weight}' of shape {shape}; only 2-D Linear "
                            "weights are supported", where=adapter.source)
        d_out, d_in = shape
        if f.B.shape[0] != d_out or f.A.shape[1] != d_in:
            raise EnmpError(
                f"adapter '{adapter.name}' module '{module}' does not fit base weight '{weight}': expected "
                f"B {d_out}×r and A r×{d_in}, found B {f.B.shape[0]}×{f.B.shape[1]} and A "
                f"{f.A.shape[0]}×{f.A.shape[1]}", where=adapter.source,
                fix=f"the adapter was trained on another model or hidden size (it names base '{declared}')")
        key = weight[: -len(".weight")]
        if key in rekeyed:
            raise EnmpError(f"adapter '{adapter.name}' modules '{origin[key]}' and '{module}' both map to base "
                            f"weight '{weight}'", where=adapter.source)
        rekeyed[key], origin[key] = f, module
    return dataclasses.replace(adapter, factors=rekeyed)


def load_adapter_set(base: BaseCheckpoint, adapters: Mapping[str, str], *, layer_regex: str | None = None,
                     revision: str | None = None) -> AdapterSet:
    """Load and cross-validate T adapters over `base`.

    Factors end up keyed by the *base* module path (``weight`` minus ``.weight``), so adapters saved from
    different heads (BertModel vs BertForSequenceClassification) line up. `layer_regex` is matched against
    those base module paths.
    """
    if not adapters:
        raise EnmpError("no adapters given", where="--adapter", fix="pass at least one --adapter NAME=PATH")
    for name in adapters:
        if not str(name).strip():
            raise EnmpError("an adapter has an empty name", where="--adapter", fix="write --adapter NAME=PATH")
    loaded = [_rekey_to_base(load_adapter(n, p, revision=revision), base) for n, p in adapters.items()]

    for ad in loaded:
        declared = ad.config.get("base_model_name_or_path")
        if not _declared_base_matches(declared, base):
            warnings.warn(f"adapter '{ad.name}' was trained on '{declared}' but the base is '{base.source}'; "
                          "shapes match, continuing", UserWarning, stacklevel=2)

    union: set[str] = set().union(*(set(a.factors) for a in loaded))
    lacking = [(a.name, sorted(union - set(a.factors))) for a in loaded if set(a.factors) != union]
    if lacking:
        parts = [f"'{n}' lacks {len(miss)} (e.g. {miss[0]})" for n, miss in lacking]
        same = [a.name for a in loaded if set(a.factors) == union]
        tail = f"; complete: {', '.join(repr(s) for s in same)}" if same else ""
        raise EnmpError("adapters target different matrices: " + ", ".join(parts) + tail,
                        fix="merge adapters trained with the same target_modules (and layers)")

    shapes = base.shapes
    targets = []
    for module in union:
        layer, proj = parse_module(module, layer_regex)
        weight = module + ".weight"
        targets.append(TargetMatrix(module=module, weight=weight, layer=layer, projection=proj,
                                    shape=tuple(shapes[weight])))
    targets.sort(key=lambda t: (t.layer, t.module))
    return AdapterSet(base=base.source, adapters=loaded, targets=targets)
