"""`enmp search --config RECIPE --dry-run`: validate a run config offline on a tiny random model.

Nothing is downloaded. The base's architecture comes from a small table of known checkpoints (or from a
local base directory's config.json) and is rebuilt tiny with random weights, keeping what a real run
depends on: the model class and its tensor names, grouped-query attention (k/v narrower than q), the
text tower next to the vision tower in a full CLIP checkpoint, the tokenizer's missing pad token. Tiny
random LoRA adapters are saved by PEFT the way the real ones were (same wrapper class, same module paths,
init_lora_weights=False), heads get the right number of classes, and every task gets a few fake examples
with the config's own column names. Then the real Workspace and Evaluator score each expert, the full
merge and the first CMA-ES candidate, exactly as a run would, and every check is printed.

What stays unchecked offline (and is said so): hub ids, gated access, the real datasets' columns and
split names, and the real weights.
"""

from __future__ import annotations

import json
import random
import tempfile
import time
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from rich.console import Console

from ..config import DataConfig, ParallelConfig, RunConfig
from ..errors import EnmpError

# Known bases: model_type, the real sizes (for the printout and head-shape checks), the tiny sizes, the
# modules the published adapters target and what they were trained on.
ARCHITECTURES: dict[str, dict] = {
    "meta-llama/Meta-Llama-3-8B": {
        "model_type": "llama",
        "real": {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
                 "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256},
        "targets": ["q_proj", "k_proj", "v_proj", "o_proj"],
        "adapter_on": "sequence_classification",  # KnOTS: LlamaForSequenceClassification(num_labels=3) + PEFT
        "pad_token": False,  # Llama-3's tokenizer has no pad token
    },
    "openai/clip-vit-base-patch32": {
        "model_type": "clip",
        "real": {"vision_hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                 "intermediate_size": 3072, "image_size": 224, "patch_size": 32, "text_hidden_size": 512,
                 "projection_dim": 512},
        "targets": ["q_proj", "k_proj", "v_proj", "out_proj"],
        "adapter_on": "vision_tower",  # KnOTS: PEFT around CLIPModel.vision_model
    },
}
ARCHITECTURES["meta-llama/Llama-3.1-8B"] = ARCHITECTURES["meta-llama/Meta-Llama-3-8B"]

_WORDS = ("a", "the", "man", "woman", "dog", "cat", "is", "are", "not", "on", "in", "park", "street", "sits",
          "runs", "plays", "music", "eats", "food", "red", "blue", "car", "two", "people", "outside", "inside",
          "what", "who", "where", "question", "answer", "true", "false", "science", "water", "sun", ".", "?")
_TINY_LAYERS = 2


# ------------------------------------------------------------------------------------------ architecture
def _architecture(cfg: RunConfig) -> tuple[str, dict]:
    base = cfg.base
    if base in ARCHITECTURES:
        return base, ARCHITECTURES[base]
    cfg_file = Path(base) / "config.json"
    if cfg_file.is_file():  # a local checkpoint: its own config, shrunk
        data = json.loads(cfg_file.read_text())
        mt = data.get("model_type")
        if mt == "llama":
            real = {k: data.get(k) for k in ("hidden_size", "num_hidden_layers", "num_attention_heads",
                                              "num_key_value_heads", "intermediate_size", "vocab_size")}
            return base, {"model_type": "llama", "real": real, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"],
                          "adapter_on": "sequence_classification", "pad_token": False}
        if mt in ("clip", "clip_vision_model"):
            v = data.get("vision_config", data)
            real = {"vision_hidden_size": v.get("hidden_size"), "num_hidden_layers": v.get("num_hidden_layers"),
                    "projection_dim": data.get("projection_dim"), "patch_size": v.get("patch_size")}
            return base, {"model_type": mt, "real": real, "targets": ["q_proj", "k_proj", "v_proj", "out_proj"],
                          "adapter_on": "vision_tower"}
        raise EnmpError(f"the dry run cannot rebuild model type '{mt}' yet", where="--dry-run",
                        fix=f"known: llama, clip (bases {', '.join(sorted(ARCHITECTURES))})")
    raise EnmpError(f"unknown architecture for base '{base}' (offline, its config cannot be downloaded)",
                    where="--dry-run", fix=f"use a local base directory or one of {', '.join(sorted(ARCHITECTURES))}")


def _feature_dim(arch: dict) -> Optional[int]:
    real = arch["real"]
    return real.get("projection_dim") if arch["model_type"].startswith("clip") else real.get("hidden_size")


def _tiny_llama(out: Path, arch: dict) -> dict:
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bos, eos = "<|begin_of_text|>", "<|end_of_text|>"
    vocab = ["<unk>", bos, eos, *_WORDS]
    real = arch["real"]
    heads = 4
    kv = max(1, heads * (real.get("num_key_value_heads") or real.get("num_attention_heads") or heads)
             // (real.get("num_attention_heads") or heads))  # same q:kv ratio as the real model
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=_TINY_LAYERS,
                      num_attention_heads=heads, num_key_value_heads=kv, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=None)
    LlamaForCausalLM(cfg).eval().save_pretrained(out)  # the real checkpoint is a causal LM
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A $B:1",
                                                           special_tokens=[(bos, 1)])
    kwargs = {} if not arch.get("pad_token", True) else {"pad_token": eos}
    PreTrainedTokenizerFast(tokenizer_object=backend, bos_token=bos, eos_token=eos, unk_token="<unk>",
                            **kwargs).save_pretrained(out)
    return {"config": cfg, "feature_dim": 32, "layers": _TINY_LAYERS}


def _tiny_clip(out: Path, arch: dict) -> dict:
    import transformers
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=_TINY_LAYERS, num_attention_heads=4,
                  image_size=64, patch_size=32, projection_dim=16)  # the sub-config repeats it, as on the hub
    if arch["model_type"] == "clip":  # the hub checkpoint is the full CLIP model: text tower included
        cfg = CLIPConfig(text_config=dict(hidden_size=24, intermediate_size=48, num_hidden_layers=_TINY_LAYERS,
                                          num_attention_heads=4, vocab_size=64, max_position_embeddings=16,
                                          projection_dim=16),
                         vision_config=vision, projection_dim=16)
        CLIPModel(cfg).eval().save_pretrained(out)
    else:
        cfg = CLIPVisionConfig(**vision)
        CLIPVisionModelWithProjection(cfg).eval().save_pretrained(out)
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    processor_cls(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64}).save_pretrained(out)
    return {"config": cfg, "feature_dim": 16, "layers": _TINY_LAYERS}


def _tiny_adapter(base_dir: Path, arch: dict, info: dict, out: Path, seed: int, n_labels: int) -> None:
    """A PEFT LoRA adapter saved from the same wrapper the published adapters were trained in."""
    import transformers
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    common = dict(r=4, lora_alpha=4, lora_dropout=0.0, target_modules=list(arch["targets"]), init_lora_weights=False)
    with warnings.catch_warnings():  # transformers' deprecation notes from inside PEFT
        warnings.simplefilter("ignore", FutureWarning)
        if arch["adapter_on"] == "sequence_classification":
            n = max(3, n_labels)  # KnOTS trained every NLI expert with a 3-way head
            labels = {i: f"LABEL_{i}" for i in range(n)}
            model = transformers.LlamaForSequenceClassification(transformers.LlamaConfig(
                **{**info["config"].to_dict(), "id2label": labels, "label2id": {v: k for k, v in labels.items()}}))
            peft_model = get_peft_model(model, LoraConfig(task_type="SEQ_CLS", **common))
        else:  # KnOTS wraps CLIPModel.vision_model (module paths encoder.layers.N...)
            full = info["config"]
            owner = (transformers.CLIPModel if arch["model_type"] == "clip"
                     else transformers.CLIPVisionModelWithProjection)
            peft_model = get_peft_model(owner(full).vision_model, LoraConfig(**common))
        peft_model.save_pretrained(str(out), safe_serialization=True)


def _fake_rows(rng: random.Random, data: DataConfig, labels: list[str], n: int, image_dir: Optional[Path],
               by_name: bool) -> list[dict]:
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
                row[data.text] = " ".join(rng.choice(_WORDS[:-2]) for _ in range(rng.randint(3, 8))) + " ."
            if data.text_pair:
                row[data.text_pair] = " ".join(rng.choice(_WORDS[:-2]) for _ in range(rng.randint(2, 6))) + " ?"
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts as a CSV with a header (fake examples for dry runs and tests)."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _class_count(tc) -> tuple[int, str]:
    if tc.labels:
        return len(tc.labels), "labels"
    if tc.head and Path(tc.head).is_file():
        from safetensors import safe_open

        with safe_open(tc.head, framework="pt") as fh:
            return int(fh.get_slice("weight").get_shape()[0]), "head file"
    from ..recipes import known_class_count

    n = known_class_count(tc.name)
    if n:
        return n, "known task"
    return 2, "assumed"


def _check_real_head(tc, n_classes: int, feature_dim: Optional[int]) -> str:
    if not tc.head:
        return "default location (<adapter>/head.safetensors), not checked offline"
    path = Path(tc.head)
    if not path.is_file():
        return f"{path.name} not present yet (convert the KnOTS heads first), shape not checked"
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as fh:
        shape = tuple(fh.get_slice("weight").get_shape())
    if feature_dim and shape[1] != feature_dim:
        raise EnmpError(f"head {path} is {shape[0]}×{shape[1]} but the base gives {feature_dim} features",
                        where=f"task '{tc.name}'.head")
    if shape[0] != n_classes:
        raise EnmpError(f"head {path} has {shape[0]} rows for {n_classes} classes", where=f"task '{tc.name}'.head")
    return f"{path.name} {shape[0]}×{shape[1]} fits"


# ------------------------------------------------------------------------------------------ the dry run
def dry_run(cfg: RunConfig, console: Optional[Console] = None, *, workdir: Optional[str | Path] = None,
            n_examples: int = 4) -> dict:
    """Validate `cfg` offline on a tiny random model of the same architecture; returns a summary dict."""
    from ..engine.run import make_strategy, merge_params
    from .evaluator import Evaluator
    from .workspace import build_workspace, quiet_transformers

    quiet_transformers()
    console = console or Console()
    ok = lambda msg: console.print(f"[green]✓[/] {msg}", highlight=False)  # noqa: E731
    note = lambda msg: console.print(f"[yellow]·[/] {msg}", highlight=False)  # noqa: E731
    started = time.perf_counter()

    params = merge_params(cfg)
    ok(f"config: {len(cfg.tasks)} tasks ({', '.join(t.name for t in cfg.tasks)}), merge {cfg.merge.method} "
       f"({', '.join(f'{k}={v}' for k, v in params.__dict__.items() if v is not None)})")
    base_id, arch = _architecture(cfg)
    real = arch["real"]
    L = real.get("num_hidden_layers")
    ok(f"base {base_id}: {arch['model_type']}, {L} layers; adapters on {', '.join(arch['targets'])}")
    T = len(cfg.tasks)
    if L and cfg.search.grouping == "layer":
        k = int(np.floor(cfg.search.rho * T * L))
        ok(f"real search space: mask {T}×{L} = {T * L} modules, prune at most {k} (rho {cfg.search.rho}); "
           f"{cfg.search.generations} generations × population {cfg.search.popsize}")
    feature_dim = _feature_dim(arch)
    counts = {}
    for tc in cfg.tasks:
        n, source = _class_count(tc)
        counts[tc.name] = n
        ok(f"task {tc.name}: {tc.kind}, {n} classes ({source}); head: {_check_real_head(tc, n, feature_dim)}; "
           f"adapter {tc.adapter}")
        d = tc.data
        src = f"hub {d.hub}" + (f" ({d.subset})" if d.subset else "") if d.hub else "local files"
        cols = ", ".join(f"{r}={getattr(d, r)}" for r in ("text", "text_pair", "image", "label")
                         if getattr(d, r) and not (r == "text" and d.image))
        note(f"  data: {src}, splits {d.splits if d.hub else sorted(d.files or {})}, columns {cols} "
             "(not checked offline)")
    if cfg.parallel.workers > 1 or cfg.parallel.ray_address:
        where = cfg.parallel.ray_address or "a local Ray cluster"
        note(f"parallel: {cfg.parallel.workers} Ray workers on {where}, device {cfg.eval.device} "
             "(not started in a dry run)")

    tmp_ctx = tempfile.TemporaryDirectory(prefix="enmp-dry-run-") if workdir is None else None
    root = Path(workdir) if workdir is not None else Path(tmp_ctx.name)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            base_dir = root / "base"
            info = (_tiny_llama if arch["model_type"] == "llama" else _tiny_clip)(base_dir, arch)
            rng = random.Random(0)
            tiny = cfg.model_copy(deep=True)
            tiny.base = str(base_dir)
            from safetensors.torch import save_file

            for i, tc in enumerate(tiny.tasks):
                n = counts[tc.name]
                labels = list(tc.labels) if tc.labels else [str(c) for c in range(n)]
                adir = root / "adapters" / tc.name
                _tiny_adapter(base_dir, arch, info, adir, seed=100 + i, n_labels=n)
                hdir = root / "heads" / tc.name
                hdir.mkdir(parents=True)
                w = torch.randn(n, info["feature_dim"])
                if tc.kind == "clip_zero_shot":
                    w = torch.nn.functional.normalize(w, dim=-1)
                save_file({"weight": w.contiguous()}, str(hdir / "head.safetensors"))
                (hdir / "head.json").write_text(json.dumps({"labels": labels}))
                by_name = bool(tc.labels) and not all(lb.isdigit() for lb in labels)
                files = {}
                for split in ("val", "test"):
                    img = root / "images" / tc.name / split if tc.data.image else None
                    if img:
                        img.mkdir(parents=True)
                    rows = _fake_rows(rng, tc.data, labels, n_examples, img, by_name)
                    path = root / "data" / tc.name / f"{split}.csv"
                    write_csv(path, rows)
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
            ok(f"built a tiny {arch['model_type']} base ({info['layers']} layers, random weights), {T} PEFT "
               f"adapters with the published module names, heads and {n_examples} fake examples per split")

            step = "loading the tiny run (base, adapters, heads, data)"
            try:
                ws = build_workspace(tiny)
                ev = Evaluator(ws, cfg.merge.method, params, cfg.eval.cache_mb)
                ok(f"workspace: {len(ws.adapters.targets)} adapted matrices in {len(ws.groups)} layers, mask "
                   f"shape {ev.shape}; eval dtype {cfg.eval.dtype}")
                step = "scoring the experts"
                expert = ev.compute_expert("val")
                ok("experts scored alone: " + ", ".join(f"{t} {v:.0f}" for t, v in expert.items()))
                step = "evaluating a merge"
                full = ev.evaluate(np.ones(ev.shape, dtype=bool), "val")
                # The search's own first population; CMA-ES starts at the full merge, so when no candidate
                # prunes anything yet, prune ⌊ρ·T·G⌋ random modules: the pruned merge path must run too.
                cands = make_strategy(cfg, ev.shape).ask()
                mask = max((c.mask for c in cands), key=lambda m: int((~m).sum()))
                origin = f"first {cfg.search.strategy} population"
                if mask.all():
                    k = max(1, int(np.floor(cfg.search.rho * mask.size)))
                    flat = np.ones(mask.size, dtype=bool)
                    flat[np.random.default_rng(0).choice(mask.size, size=k, replace=False)] = False
                    mask, origin = flat.reshape(mask.shape), "random"
                res = ev.evaluate(mask, "val")
            except EnmpError as e:
                raise EnmpError(f"failed while {step} (on a tiny stand-in for {base_id}): {e.line()}",
                                where="--dry-run") from None
            except Exception as e:  # a bug the real run would hit too: one line, not a traceback
                msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else ""
                raise EnmpError(f"failed while {step}: {type(e).__name__}: {msg}", where="--dry-run") from None
            if res.error:
                raise EnmpError(f"the candidate failed: {res.error}", where="--dry-run")
            ok(f"merged and evaluated: full merge fitness {full.fitness:.1f}; a {origin} candidate pruning "
               f"{int((~mask).sum())} of {mask.size} modules: fitness {res.fitness:.1f} (random weights: the numbers "
               "mean nothing)")
    finally:
        if tmp_ctx is not None:
            tmp_ctx.cleanup()
    seconds = time.perf_counter() - started
    console.print(f"[bold green]dry run passed[/] in {seconds:.1f} s — not checked offline: hub ids and access, "
                  "real dataset columns and splits, real weights", highlight=False)
    return {"base": base_id, "tasks": [t.name for t in cfg.tasks], "classes": counts, "shape": ev.shape,
            "fitness": res.fitness, "full_fitness": full.fitness, "n_pruned": int((~mask).sum()),
            "seconds": seconds}
