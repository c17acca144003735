"""PEFT LoRA adapters on the tiny bases (`models`), saved from the wrapper the adapter was trained in.

The wrapper decides the tensor names' prefixes, which enmp must map back to the base: the base's own class
(`head=None`), its sequence-classification model (`"seq_cls"`: names gain e.g. `bert.` and the new head
can be saved beside the factors, as KnOTS' Llama experts were), or CLIP's bare vision tower
(`"vision_tower"`: names start at `encoder.`, as KnOTS wrapped CLIPModel.vision_model).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import torch

from .models import MAKE_BASE, quiet_seeded

DEFAULT_TARGETS = {
    "bert": ["query", "key", "value", "attention.output.dense"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "clip": ["q_proj", "k_proj", "v_proj", "out_proj"],
}
SEQ_CLS = {"bert": "BertForSequenceClassification", "llama": "LlamaForSequenceClassification"}
HEADS = {None: set(DEFAULT_TARGETS), "seq_cls": set(SEQ_CLS), "vision_tower": {"clip"}}  # head: its families


def load_tiny_model(base_dir: str | Path, family: str, *, head: Optional[str] = None, num_labels: int = 2,
                    seed: int = 0) -> torch.nn.Module:
    """The module adapters of (`family`, `head`) wrap, loaded from `base_dir` (a new head seeded)."""
    import transformers

    if family not in HEADS.get(head, ()):
        raise ValueError(f"unknown family/head {family!r}/{head!r}; known: "
                         f"{sorted((f, h) for h, fams in HEADS.items() for f in fams)}")
    own = json.loads((Path(base_dir) / "config.json").read_text())["architectures"][0]
    cls = getattr(transformers, SEQ_CLS[family] if head == "seq_cls" else own)
    kwargs = {"num_labels": num_labels} if head == "seq_cls" else {}
    with quiet_seeded(seed):
        model = cls.from_pretrained(str(base_dir), **kwargs).eval()
    return model.vision_model if head == "vision_tower" else model


def make_lora_adapter(base_dir: str | Path, out_dir: str | Path, *, family: str, r: int = 4, alpha: float = 8,
                      rslora: bool = False, seed: int = 0, target_modules: Sequence[str] | None = None,
                      rank_pattern: dict | None = None, alpha_pattern: dict | None = None,
                      modules_to_save: Sequence[str] | None = None, head: Optional[str] = None,
                      num_labels: int = 2, task_type: Optional[str] = None) -> Path:
    """A PEFT LoRA adapter with random non-zero A and B (init_lora_weights=False), saved as safetensors.

    Defaults target the attention projections of `family` (DEFAULT_TARGETS). `task_type="SEQ_CLS"` (with
    `head="seq_cls"`) lets PEFT save the classifier itself, as a published classification adapter does;
    otherwise pass e.g. modules_to_save=["classifier"].
    """
    from peft import LoraConfig, get_peft_model

    model = load_tiny_model(base_dir, family, head=head, num_labels=num_labels, seed=seed)
    cfg = LoraConfig(r=r, lora_alpha=alpha, use_rslora=rslora, init_lora_weights=False, lora_dropout=0.0,
                     target_modules=list(target_modules or DEFAULT_TARGETS[family]),
                     rank_pattern=dict(rank_pattern or {}), alpha_pattern=dict(alpha_pattern or {}),
                     modules_to_save=list(modules_to_save) if modules_to_save else None, task_type=task_type)
    with quiet_seeded(seed + 1):
        get_peft_model(model, cfg).save_pretrained(str(out_dir), safe_serialization=True)
    return Path(out_dir)


def make_task_set(root: str | Path, family: str, n_tasks: int = 3, ranks: Sequence[int] = (4, 2, 6),
                  alphas: Sequence[float] = (8, 4, 12), rslora: Sequence[bool] = (False, False, True),
                  *, head: Optional[str] = None, base_seed: int = 0,
                  **adapter_kwargs) -> tuple[Path, dict[str, Path]]:
    """Base model at root/"base" plus `n_tasks` adapters "task0".. with varied rank / alpha / rsLoRA.

    Per-task settings cycle through `ranks`, `alphas`, `rslora`; extra kwargs go to make_lora_adapter.
    Returns (base_dir, {task name: adapter dir}) in task order.
    """
    root = Path(root)
    base = MAKE_BASE[family](root / "base", seed=base_seed)
    adapters = {}
    for i in range(n_tasks):
        name = f"task{i}"
        adapters[name] = make_lora_adapter(
            base, root / name, family=family, r=ranks[i % len(ranks)], alpha=alphas[i % len(alphas)],
            rslora=rslora[i % len(rslora)], seed=100 + i, head=head, **adapter_kwargs)
    return base, adapters


def peft_merged_state(base_dir: str | Path, adapter_dir: str | Path, family: str, *,
                      head: Optional[str] = None) -> dict[str, torch.Tensor]:
    """PEFT's own merge_and_unload of one adapter, as a state dict in the model's own naming: the reference
    enmp's merges are checked against."""
    from peft import PeftModel

    model = load_tiny_model(base_dir, family, head=head)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}
