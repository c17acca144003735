"""The published checkpoints the paper merges: base architectures and the KnOTS experts trained on them.

One table, read by the recipes (base ids, task names, head sizes) and by the offline dry run (which tiny
stand-in to build, which modules its adapters target, which head shapes fit), so the two cannot drift.
Low level on purpose: it imports nothing but the errors, so the engine can use it without the recipes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import EnmpError

LLAMA3_8B = "meta-llama/Meta-Llama-3-8B"
CLIP_B32 = "openai/clip-vit-base-patch32"
_LLAMA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj")
_CLIP_TARGETS = ("q_proj", "k_proj", "v_proj", "out_proj")


@dataclass(frozen=True)
class Expert:
    """One published KnOTS LoRA expert."""

    name: str  # the paper's task name
    hub_name: str  # <task> in the KnOTS hub ids and head file names
    n_classes: int  # rows of its head after convert_heads (KnOTS' masked rows dropped)


@dataclass(frozen=True)
class Architecture:
    model_type: str
    real: dict  # the real checkpoint's sizes (for the printout and head-shape checks)
    targets: tuple[str, ...]  # modules the published adapters adapt
    adapter_on: str  # "sequence_classification" (PEFT around the classifier) or "vision_tower"
    pad_token: bool = True  # False: the tokenizer has none (Llama-3)
    experts: tuple[Expert, ...] = ()

    @property
    def feature_dim(self) -> Optional[int]:
        """Width of the features a head reads: CLIP's projection, else the hidden size."""
        return self.real.get("projection_dim") if self.model_type.startswith("clip") else self.real.get("hidden_size")


_NLI = (Expert("snli", "snli", 3), Expert("mnli", "mnli", 3), Expert("sick", "sick", 3),
        Expert("qnli", "qnli", 2), Expert("rte", "rte", 2), Expert("scitail", "scitail", 2))
_VISION = (Expert("cars", "stanford_cars", 196), Expert("dtd", "dtd", 47), Expert("eurosat", "eurosat", 10),
           Expert("gtsrb", "gtsrb", 43), Expert("mnist", "mnist", 10), Expert("resisc45", "resisc45", 45),
           Expert("sun397", "sun397", 397), Expert("svhn", "svhn", 10))

ARCHITECTURES: dict[str, Architecture] = {
    # KnOTS: LlamaForSequenceClassification(num_labels=3) + PEFT; Llama-3's tokenizer has no pad token
    LLAMA3_8B: Architecture(
        "llama", {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                  "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256},
        _LLAMA_TARGETS, "sequence_classification", pad_token=False, experts=_NLI),
    # KnOTS: PEFT around CLIPModel.vision_model
    CLIP_B32: Architecture(
        "clip", {"vision_hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                 "intermediate_size": 3072, "image_size": 224, "patch_size": 32, "text_hidden_size": 512,
                 "projection_dim": 512},
        _CLIP_TARGETS, "vision_tower", experts=_VISION),
}
ARCHITECTURES["meta-llama/Llama-3.1-8B"] = ARCHITECTURES[LLAMA3_8B]


def known_class_count(task: str) -> Optional[int]:
    """Head rows of a published expert, by paper or KnOTS task name (None if not one of them)."""
    for arch in ARCHITECTURES.values():
        for e in arch.experts:
            if task in (e.name, e.hub_name):
                return e.n_classes
    return None


def architecture_of(base: str) -> tuple[str, Architecture]:
    """A known hub base, or a local checkpoint read from its own config.json (nothing is downloaded)."""
    if base in ARCHITECTURES:
        return base, ARCHITECTURES[base]
    known = ", ".join(sorted(ARCHITECTURES))
    cfg_file = Path(base) / "config.json"
    if not cfg_file.is_file():
        raise EnmpError(f"unknown architecture for base '{base}' (offline, its config cannot be downloaded)",
                        where="--dry-run", fix=f"use a local base directory or one of {known}")
    data = json.loads(cfg_file.read_text())
    mt = data.get("model_type")
    if mt == "llama":
        real = {k: data.get(k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                          "num_key_value_heads", "intermediate_size", "vocab_size")}
        return base, Architecture("llama", real, _LLAMA_TARGETS, "sequence_classification", pad_token=False)
    if mt in ("clip", "clip_vision_model"):
        v = data.get("vision_config", data)
        real = {"vision_hidden_size": v.get("hidden_size"), "num_hidden_layers": v.get("num_hidden_layers"),
                "projection_dim": data.get("projection_dim"), "patch_size": v.get("patch_size")}
        return base, Architecture(mt, real, _CLIP_TARGETS, "vision_tower")
    raise EnmpError(f"the dry run cannot rebuild model type '{mt}' yet", where="--dry-run",
                    fix=f"known: llama, clip (bases {known})")
