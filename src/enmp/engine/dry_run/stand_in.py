"""Tiny random stand-ins for a run's real files: base, PEFT adapters, heads and fake labelled examples.

They keep what a real run depends on: the model class and its tensor names, grouped-query attention (k/v
narrower than q), the text tower next to the vision tower in a full CLIP checkpoint, the tokenizer's missing
pad token, adapters saved by PEFT from the wrapper the published ones were trained in, heads with the right
number of classes, and the config's own column names.
"""

from __future__ import annotations

import json
import random
import warnings
from pathlib import Path
from typing import Optional

import torch

from ...architectures import Architecture
from ...config import DataConfig, ParallelConfig, RunConfig
from ...evaluation import get_kind

WORDS = ("a", "the", "man", "woman", "dog", "cat", "is", "are", "not", "on", "in", "park", "street", "sits",
         "runs", "plays", "music", "eats", "food", "red", "blue", "car", "two", "people", "outside", "inside",
         "what", "who", "where", "question", "answer", "true", "false", "science", "water", "sun", ".", "?")
TINY_LAYERS = 2


def tiny_llama(out: Path, arch: Architecture) -> dict:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
    vocab = ["<unk>", bos, eos, *WORDS]
    real = arch.real
    heads = 4
    kv = max(1, heads * (real.get("num_key_value_heads") or real.get("num_attention_heads") or heads)
             // (real.get("num_attention_heads") or heads))  # same q:kv ratio as the real model
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=TINY_LAYERS,
                      num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=None)
    LlamaForCausalLM(cfg).eval().save_pretrained(out)  # the real checkpoint is a causal LM
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B:1",
                                                           special_tokens=[(bos, 1)])
    kwargs = {"pad_token": eos} if arch.pad_token else {}
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, unk_token="<unk>",
                            **kwargs).save_pretrained(out)
    return {"config": cfg, "feature_dim": 32, "layers": TINY_LAYERS}


def tiny_clip(out: Path, arch: Architecture) -> dict:
    import transformers
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=TINY_LAYERS, num_attention_heads=4,
                  image_size=64, patch_size=32, projection_dim=16)  # the sub-config repeats it, as on the hub
    if arch.model_type == "clip":  # the hub checkpoint is the full CLIP model: text tower included
        cfg = CLIPConfig(text_config=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=TINY_LAYERS,
                                          num_attention_heads=4, vocab_size=64, max_position_embeddings=16,
                                          projection_dim=16),
                         vision_config=vision, projection_dim=16)
        CLIPModel(cfg).eval().save_pretrained(out)
    else:
        cfg = CLIPVisionConfig(**vision)
        CLIPVisionModelWithProjection(cfg).eval().save_pretrained(out)
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    processor_cls(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(out)
    return {"config": cfg, "feature_dim": 16, "layers": TINY_LAYERS}


def tiny_adapter(arch: Architecture, info: dict, out: Path, seed: int, n_labels: int) -> None:
    """A PEFT LoRA adapter saved from the same wrapper the published adapters were trained in."""
    import transformers
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    common = dict(r=4, lora_alpha=4, lora_dropout=0.0, target_modules=list(arch.targets), init_lora_weights=False)
    with warnings.catch_warnings():  # transformers' deprecation notes from inside PEFT
        warnings.simplefilter("ignore", FutureWarning)
        if arch.adapter_on == "sequence_classification":
            n = max(3, n_labels)  # KnOTS trained every NLI expert with a 3-way head
            labels = {i: f"LABEL_{i}" for i in range(n)}
            model = transformers.LlamaForSequenceClassification(transformers.LlamaConfig(
                **{**info["config"].to_dict(), "id2label": labels, "label2id": {v: k for k, v in labels.items()}}))
            peft_model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", **common))
        else:  # KnOTS wraps CLIPModel.vision_model (module paths encoder.layers.N...)
            owner = (transformers.CLIPModel if arch.model_type == "clip"
                     else transformers.CLIPVisionModelWithProjection)
            peft_model = get_peft_model(owner(info["config"]).vision_model, LoraConfig(**common))
        peft_model.save_pretrained(str(out), safe_serialization=True)


def fake_rows(rng: random.Random, data: DataConfig, labels: list[str], n: int, image_dir: Optional[Path],
              by_name: bool) -> list[dict]:
    """`n` examples with the config's column names; labels cycle so every class occurs."""
    rows = []
    for i in range(n):
        row = {}
        label = i % len(labels)
        row[data.label] = labels[label] if by_name else label
        if data.image:
            from PIL import Image

            px = bytes(rng.randrange(256) for _ in range(64 * 64 * 3))
            path = image_dir / f"img{i}.png"
            Image.frombytes("RGB", (64, 64), px).save(path)
            row[data.image] = str(path)
        else:
            if data.text:
                row[data.text] = " ".join(rng.choice(WORDS[:-2]) for _ in range(rng.randint(3, 8))) + " ."
            if data.text_pair:
                row[data.text_pair] = " ".join(rng.choice(WORDS[:-2]) for _ in range(rng.randint(2, 6))) + " ?"
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts as a CSV with a header (fake examples for dry runs, tests and benchmarks)."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def build_stand_in(cfg: RunConfig, arch: Architecture, counts: dict[str, int], root: Path,
                   n_examples: int) -> tuple[RunConfig, dict]:
    """Write a tiny base, one adapter + head + val/test CSVs per task under `root`; return the run config
    pointing at them (on the CPU, serial, nothing saved) and the tiny base's info."""
    from safetensors.torch import save_file

    base_dir = root / "base"
    info = (tiny_llama if arch.model_type == "llama" else tiny_clip)(base_dir, arch)
    rng = random.Random(0)
    tiny = cfg.model_copy(deep=True)
    tiny.base = str(base_dir)
    for i, tc in enumerate(tiny.tasks):
        n = counts[tc.name]
        labels = list(tc.labels) if tc.labels else [str(c) for c in range(n)]
        adir = root / "adapters" / tc.name
        tiny_adapter(arch, info, adir, seed=100 + i, n_labels=n)
        hdir = root / "heads" / tc.name
        hdir.mkdir(parents=True)
        w = torch.randn(n, info["feature_dim"])
        if get_kind(tc.kind).unit_head_rows:  # zero-shot heads: unit text embeddings
            w = torch.nn.functional.normalize(w, dim=-1)
        save_file({"weight": w.contiguous()}, str(hdir / "head.safetensors"))
        (hdir / "head.json").write_text(json.dumps({"labels": labels}))
        by_name = bool(tc.labels) and not all(lb.isdigit() for lb in labels)
        files = {}
        for split in ("val", "test"):
            img = root / "images" / tc.name / split if tc.data.image else None
            if img:
                img.mkdir(parents=True)
            path = root / "data" / tc.name / f"{split}.csv"
            write_csv(path, fake_rows(rng, tc.data, labels, n_examples, img, by_name))
            files[split] = str(path)
        d = tc.data
        tc.adapter = str(adir)
        tc.head = str(hdir / "head.safetensors")
        tc.data = DataConfig(files=files, text=d.text, text_pair=d.text_pair, image=d.image, label=d.label)
    tiny.eval.device = "cpu"
    tiny.eval.val_samples = tiny.eval.test_samples = None
    tiny.eval.batch_size = min(tiny.eval.batch_size, 4)
    tiny.eval.max_length = min(tiny.eval.max_length, 64)
    tiny.parallel = ParallelConfig()
    tiny.output.save_model = tiny.output.save_adapter = False
    return tiny, info
