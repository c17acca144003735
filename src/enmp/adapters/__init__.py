"""Loading and validating LoRA experts and their base checkpoint."""

from .base_model import BaseCheckpoint
from .hub import looks_like_hub_id, resolve_dir
from .load import load_adapter, load_adapter_set, lora_scale, pattern_value
from .naming import BUILTIN_PATTERNS, compile_layer_regex, parse_module
from .types import AdapterSet, LoraAdapter, LoraFactor, TargetMatrix

__all__ = [
    "AdapterSet", "BaseCheckpoint", "BUILTIN_PATTERNS", "LoraAdapter", "LoraFactor", "TargetMatrix",
    "compile_layer_regex", "load_adapter", "load_adapter_set", "looks_like_hub_id", "lora_scale",
    "parse_module", "pattern_value", "resolve_dir",
]
