"""Tiny random stand-ins for a run's real files: base, PEFT adapters, heads and fake labelled examples.

They keep what a real run depends on: the model class and its tensor names, grouped-query attention (k/v
narrower than q), the text tower next to the vision tower in a full CLIP checkpoint, the tokenizer's missing
pad token, adapters saved by PEFT from the wrapper the published ones were trained in, heads with the right
number of classes, and the config's own column names. `enmp.tiny` builds the files (the factory the tests
and benchmarks share); this module decides what of the real run each stand-in mirrors.
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Optional

from ...architectures import Architecture
from ...config import DataConfig, ParallelConfig, RunConfig
from ...evaluation import get_kind
from ...tiny import (LLAMA3_TOKENS, feature_dim, make_lora_adapter, make_tiny_clip, make_tiny_llama, sentence,
                     write_csv, write_head, write_images)

TINY_LAYERS = 2
IMAGE_SIZE = 64  # fake images and the tiny CLIP's input


def tiny_base(out: Path, arch: Architecture) -> None:
    """The real checkpoint's class, tiny: a causal LM with the real q:kv head ratio and tokenizer specials, or
    CLIP's vision tower (with the text tower when the hub checkpoint is the full CLIP model)."""
    if arch.model_type == "llama":
        real = arch.real
        heads = 4
        kv = max(1, heads * (real.get("num_key_value_heads") or real.get("num_attention_heads") or heads)
                 // (real.get("num_attention_heads") or heads))  # same q:kv ratio as the real model
        tokens = LLAMA3_TOKENS if not arch.pad_token else dataclasses.replace(LLAMA3_TOKENS, pad=LLAMA3_TOKENS.eos)
        make_tiny_llama(out, num_layers=TINY_LAYERS, num_heads=heads, num_kv_heads=kv, tokens=tokens)
    else:
        make_tiny_clip(out, num_layers=TINY_LAYERS, image_size=IMAGE_SIZE, patch_size=32,  # ViT-B/32: 2×2 patches
                       text_tower=arch.model_type == "clip")


def tiny_adapter(arch: Architecture, base: Path, out: Path, seed: int, n_labels: int) -> None:
    """A PEFT LoRA adapter saved from the same wrapper the published adapters were trained in."""
    common = dict(r=4, alpha=4, target_modules=list(arch.targets), seed=seed)
    if arch.adapter_on == "sequence_classification":  # PEFT saves the score head too, as KnOTS' experts have
        make_lora_adapter(base, out, family=arch.model_type, head="seq_cls", task_type="SEQ_CLS",
                          num_labels=max(3, n_labels), **common)  # KnOTS trained every NLI expert 3-way
    else:  # KnOTS wraps CLIPModel.vision_model (module paths encoder.layers.N...)
        make_lora_adapter(base, out, family="clip", head="vision_tower", **common)


def fake_rows(rng: random.Random, data: DataConfig, labels: list[str], n: int, image_dir: Optional[Path],
              by_name: bool) -> list[dict]:
    """`n` examples with the config's column names; labels cycle so every class occurs."""
    images = write_images(image_dir, rng, n, IMAGE_SIZE) if data.image else None
    rows = []
    for i in range(n):
        row = {data.label: labels[i % len(labels)] if by_name else i % len(labels)}
        if images:
            row[data.image] = images[i]
        else:
            if data.text:
                row[data.text] = sentence(rng, (3, 8)) + " ."
            if data.text_pair:
                row[data.text_pair] = sentence(rng, (2, 6)) + " ?"
        rows.append(row)
    return rows


def build_stand_in(cfg: RunConfig, arch: Architecture, counts: dict[str, int], root: Path,
                   n_examples: int) -> tuple[RunConfig, dict]:
    """Write a tiny base, one adapter + head + val/test CSVs per task under `root`; return the run config
    pointing at them (on the CPU, serial, nothing saved) and the tiny base's size."""
    base_dir = root / "base"
    tiny_base(base_dir, arch)
    info = {"feature_dim": feature_dim(base_dir), "layers": TINY_LAYERS}
    rng = random.Random(0)
    tiny = cfg.model_copy(deep=True)
    tiny.base = str(base_dir)
    for i, tc in enumerate(tiny.tasks):
        n = counts[tc.name]
        labels = list(tc.labels) if tc.labels else [str(c) for c in range(n)]
        adir = root / "adapters" / tc.name
        tiny_adapter(arch, base_dir, adir, seed=100 + i, n_labels=n)
        head = write_head(root / "heads" / tc.name, labels, info["feature_dim"],
                          unit_rows=get_kind(tc.kind).unit_head_rows)
        by_name = bool(tc.labels) and not all(lb.isdigit() for lb in labels)
        files = {}
        for split in ("val", "test"):
            img = root / "images" / tc.name / split if tc.data.image else None
            path = root / "data" / tc.name / f"{split}.csv"
            write_csv(path, fake_rows(rng, tc.data, labels, n_examples, img, by_name))
            files[split] = str(path)
        d = tc.data
        tc.adapter = str(adir)
        tc.head = str(head)
        tc.data = DataConfig(files=files, text=d.text, text_pair=d.text_pair, image=d.image, label=d.label)
    tiny.eval.device = "cpu"
    tiny.eval.val_samples = tiny.eval.test_samples = None
    tiny.eval.batch_size = min(tiny.eval.batch_size, 4)
    tiny.eval.max_length = min(tiny.eval.max_length, 64)
    tiny.parallel = ParallelConfig()
    tiny.output.save_model = tiny.output.save_adapter = False
    return tiny, info
