"""The paper's two settings as data, the recipe YAMLs rendered from it, and the KnOTS checkpoint loaders.

Settings (ENMP paper, arXiv 2604.17753; checkpoints from KnOTS, arXiv 2410.19735):

* ``nlp``: Llama-3-8B with six NLI tasks, LoRA r 16 / α 16 on q, k, v, o_proj, one linear classification
  head per task (``hoffman-lab/KnOTS-Llama3_8B_lora_R16_<task>`` + the released ``heads.pt``).
* ``vision``: the CLIP ViT-B/32 image encoder with eight tasks, LoRA r 16 / α 16 on q, k, v, out_proj, one
  zero-shot text head per task (``hoffman-lab/KnOTS-ViT-B-32_lora_R16_<task>`` + ``<task>_head.pt``).

KnOTS format facts used here (from the KnOTS code base):

* NLI experts are ``LlamaForSequenceClassification(num_labels=3)`` + PEFT (task_type SEQ_CLS); the classifier
  (``score``, 3 × 4096, no bias) is pooled on the last non-pad token. Two-class tasks were trained with one
  logit masked to −1e10 (``mask_class``: QNLI and RTE mask row 1 and use row 2 for "not entailment", SciTail
  masks row 2). ``heads.pt`` is a pickled ``{task: tensor[3, 4096]}`` (KnOTS copies it into the score
  layer's ``modules_to_save``). We drop the masked row, which gives the same argmax and lets the data's
  0/1 labels index the head directly.
* Vision heads (``dataset/parsing/generate_clip_heads.py``) are one tensor ``[C, 512]`` per task: the mean
  normalized CLIP text embedding of each class over the dataset's templates, times the logit scale. Scale
  does not change the argmax.

`convert_heads` turns those pickles into ``<out>/<task>/head.safetensors`` + ``head.json`` — reading them with
``torch.load(weights_only=True)`` only (plain tensors and containers; no code can run).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
import yaml

from .errors import EnmpError

SETTINGS = ("nlp", "vision")
METHODS = ("ta", "ties", "dare_ties", "tsv", "knots", "core_space")


@dataclass(frozen=True)
class RecipeTask:
    name: str  # the paper's task name (our task name)
    hub_name: str  # <task> in the KnOTS hub ids / file names
    data: dict  # DataConfig fields
    n_classes: int
    labels: Optional[tuple[str, ...]] = None  # class names in head-row order (after dropping masked rows)
    keep_rows: Optional[tuple[int, ...]] = None  # rows of the KnOTS head that this task uses
    note: str = ""


@dataclass(frozen=True)
class Setting:
    name: str
    base: str
    adapter_id: str  # format string with {hub_name}
    kind: str
    pooling: Optional[str]
    tasks: tuple[RecipeTask, ...]
    heads_dir: str  # where convert_heads writes, relative to the recipes directory
    hyper: dict  # method -> MergeConfig fields (paper Table 6)
    eval: dict = field(default_factory=dict)
    output: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()


_NLI3 = ("entailment", "neutral", "contradiction")


def _pair(hub, text, pair, val, test, subset=None):
    d = {"hub": hub, "splits": {"val": val, "test": test}, "text": text, "text_pair": pair, "label": "label"}
    if subset:
        d["subset"] = subset
    return d


NLP = Setting(
    name="nlp",
    base="meta-llama/Meta-Llama-3-8B",
    adapter_id="hoffman-lab/KnOTS-Llama3_8B_lora_R16_{hub_name}",
    kind="classification",
    pooling="last",
    heads_dir="heads/llama3-8b",
    tasks=(
        RecipeTask("snli", "snli", {**_pair("stanfordnlp/snli", "premise", "hypothesis", "validation", "test"),
                                    "skip_labels": [-1]}, 3,
                   _NLI3, note="SNLI marks pairs without a gold label with label -1; like KnOTS we drop them."),
        RecipeTask("mnli", "mnli", _pair("SetFit/mnli", "text1", "text2", "validation[:20%]", "validation[20%:]"),
                   3, _NLI3, note="KnOTS splits the (matched) validation set 20 % val / 80 % test with a seeded "
                                  "shuffle (seed 42); a contiguous slice is used here, so the exact examples differ."),
        RecipeTask("sick", "sick", _pair("sick", "sentence_A", "sentence_B", "validation", "test"), 3, _NLI3,
                   note="KnOTS loads the hub id 'sick' (a loading script, which datasets >= 4 no longer runs): "
                        "point data.hub at a parquet copy or local files with sentence_A, sentence_B, label "
                        "(0 entailment, 1 neutral, 2 contradiction)."),
        RecipeTask("qnli", "qnli", _pair("SetFit/qnli", "text1", "text2", "validation[:20%]", "validation[20%:]"),
                   2, ("entailment", "not_entailment"), keep_rows=(0, 2),
                   note="KnOTS: 20 % of validation as val (seeded shuffle), the rest as test; head row 1 masked."),
        RecipeTask("rte", "rte", _pair("SetFit/rte", "text1", "text2", "validation[:50%]", "validation[50%:]"),
                   2, ("entailment", "not_entailment"), keep_rows=(0, 2),
                   note="KnOTS: 50 % of validation as val (seeded shuffle), the rest as test; head row 1 masked."),
        RecipeTask("scitail", "scitail",
                   _pair("allenai/scitail", "premise", "hypothesis", "validation", "test", subset="tsv_format"),
                   2, ("entails", "neutral"), keep_rows=(0, 1),
                   note="tsv_format labels are the strings 'entails' / 'neutral' (matched to the head's labels); "
                        "head row 2 masked."),
    ),
    hyper={"ta": {"lam": 0.3}, "ties": {"lam": 1.2, "top_k": 80},
           "dare_ties": {"lam": 1.1, "top_k": 80, "drop_rate": 0.1},
           "tsv": {"lam": 0.6}, "knots": {"lam": 1.1, "top_k": 90, "inner": "ties"},
           "core_space": {"lam": 0.5, "inner": "tsv"}},
    eval={"batch_size": 16, "max_length": 512, "dtype": "bfloat16", "device": "auto"},
    output={"save_model": False, "save_adapter": True},
    notes=("The base is gated on the Hub: accept Meta's license and `hf auth login` first.",
           "Heads: download the KnOTS NLI heads.pt and run convert_heads (`enmp convert-heads heads.pt "
           "--setting nlp --out recipes/heads/llama3-8b`).",
           "bfloat16 forward passes keep an 8B model on one GPU; merge math stays float32 whatever eval.dtype."),
)

# Class counts of the eight vision tasks (heads are C × 512).
_VISION = (
    ("cars", "stanford_cars", "tanganke/stanford_cars", None, 196),
    ("dtd", "dtd", "tanganke/dtd", None, 47),
    ("eurosat", "eurosat", "tanganke/eurosat", None, 10),
    ("gtsrb", "gtsrb", "tanganke/gtsrb", None, 43),
    ("mnist", "mnist", "ylecun/mnist", None, 10),
    ("resisc45", "resisc45", "tanganke/resisc45", None, 45),
    ("sun397", "sun397", "tanganke/sun397", None, 397),
    ("svhn", "svhn", "ufldl-stanford/svhn", "cropped_digits", 10),
)


def _image(hub, subset):
    d = {"hub": hub, "splits": {"val": "test[:20%]", "test": "test[20%:]"}, "text": None, "image": "image",
         "label": "label"}
    if subset:
        d["subset"] = subset
    return d


VISION = Setting(
    name="vision",
    base="openai/clip-vit-base-patch32",
    adapter_id="hoffman-lab/KnOTS-ViT-B-32_lora_R16_{hub_name}",
    kind="clip_zero_shot",
    pooling=None,
    heads_dir="heads/clip-vit-b32",
    tasks=tuple(RecipeTask(n, h, _image(hub, sub), c,
                           note="integer labels in the dataset's class order (the head's rows follow it)")
                for n, h, hub, sub, c in _VISION),
    hyper={"ta": {"lam": 0.1}, "ties": {"lam": 0.3, "top_k": 40},
           "dare_ties": {"lam": 0.3, "top_k": 20, "drop_rate": 0.1},
           "tsv": {"lam": 0.3}, "knots": {"lam": 0.6, "top_k": 90, "inner": "ties"},
           "core_space": {"lam": 0.9, "inner": "tsv", "iso": True}},
    eval={"batch_size": 128, "dtype": "float32", "device": "auto"},
    output={"save_model": True, "save_adapter": True},
    notes=("Heads: the KnOTS zero-shot heads <task>_head.pt (dataset/parsing/generate_clip_heads.py) converted "
           "with `enmp convert-heads *_head.pt --setting vision --out recipes/heads/clip-vit-b32`.",
           "Datasets: hub copies whose class order must match the heads' rows. KnOTS uses torchvision / the "
           "task-vectors splits and, for MNIST, SVHN, Cars, GTSRB and SUN397, a seeded 20 % of the test set as "
           "validation; here the first 20 % of test is val and the rest test (DTD, EuroSAT and RESISC45 have "
           "their own val splits in KnOTS). Ids and split names are best guesses: check them before a real run.",
           "The adapters adapt the vision tower only (module paths encoder.layers.N...); the base is the full "
           "CLIP checkpoint, whose text tower has the same module paths."),
)

SETTINGS_BY_NAME = {"nlp": NLP, "vision": VISION}
PAPER_SEARCH = {"strategy": "cma", "generations": 60, "popsize": 16, "rho": 0.2, "sigma0": 0.5, "seed": 1}


def known_class_count(task: str) -> Optional[int]:
    for s in SETTINGS_BY_NAME.values():
        for t in s.tasks:
            if task in (t.name, t.hub_name):
                return t.n_classes
    return None


# ------------------------------------------------------------------------------------------ recipes
def recipe_dict(setting: str, method: str) -> dict:
    s = SETTINGS_BY_NAME[setting]
    if method not in s.hyper:
        raise EnmpError(f"no paper hyperparameters for method '{method}'", where=f"recipe {setting}",
                        fix=f"use one of {', '.join(METHODS)}")
    tasks = []
    for t in s.tasks:
        entry = {"name": t.name, "adapter": s.adapter_id.format(hub_name=t.hub_name), "kind": s.kind,
                 "head": f"{s.heads_dir}/{t.name}/head.safetensors"}
        if t.labels:
            entry["labels"] = list(t.labels)
        if s.pooling:
            entry["pooling"] = s.pooling
        entry["data"] = {k: v for k, v in t.data.items() if v is not None or k == "text"}
        tasks.append(entry)
    return {"base": s.base, "tasks": tasks, "merge": {"method": method, **s.hyper[method]},
            "search": dict(PAPER_SEARCH), "eval": dict(s.eval), "parallel": {"workers": 1},
            "output": dict(s.output)}


def render_recipe(setting: str, method: str) -> str:
    s = SETTINGS_BY_NAME[setting]
    hp = ", ".join(f"{k} {v}" for k, v in s.hyper[method].items())
    lines = [f"# ENMP paper recipe — {setting} setting, {method} (Table 6: {hp}).",
             "# Generated by enmp.recipes.write_recipes(); edit the tables in src/enmp/recipes.py instead.",
             "# Population 16, 60 generations, rho 0.2, sigma0 0.5 (the paper's search).",
             "# Check offline first: enmp search --config THIS --dry-run",
             "# Spread candidates over GPUs / a cluster: --workers N [--ray-address ADDR].", "#"]
    for note in s.notes:
        lines.append("# " + note)
    lines.append("#")
    lines.append("# Datasets (uncertain details):")
    for t in s.tasks:
        lines.append(f"# - {t.name}: {t.note}")
    body = yaml.safe_dump(recipe_dict(setting, method), sort_keys=False, width=110)
    return "\n".join(lines) + "\n" + body


def recipe_name(setting: str, method: str) -> str:
    return f"{setting}_{method}.yaml"


def write_recipes(out_dir: str | Path) -> list[Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for setting in SETTINGS:
        for method in METHODS:
            p = out / recipe_name(setting, method)
            p.write_text(render_recipe(setting, method))
            paths.append(p)
    return paths


# ------------------------------------------------------------------------------------------ heads
_HEAD_STEMS = ("score", "classifier", "classification_head", "head", "vision_head")


def _load_pickle(path: Path):
    if not path.is_file():
        raise EnmpError(f"head file {path} not found", where="convert-heads")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise EnmpError(f"{path.name} holds more than tensors, so it was not loaded "
                        f"({str(e).splitlines()[0][:160]})", where=str(path),
                        fix="re-save the heads as plain tensors (a {task: tensor} dict) in a trusted "
                            "environment") from None
    except Exception as e:
        raise EnmpError(f"cannot read {path.name} ({type(e).__name__})", where=str(path)) from None


def _head_from_state(sd: dict) -> Optional[tuple[torch.Tensor, Optional[torch.Tensor]]]:
    for stem in _HEAD_STEMS:
        for key, value in sd.items():
            k = key.replace(".modules_to_save.default", "").replace(".original_module", "")
            named = k == f"{stem}.weight" or k.endswith(f".{stem}.weight")
            if named and isinstance(value, torch.Tensor) and value.ndim == 2:
                bias = sd.get(key[: -len("weight")] + "bias")
                return value, bias if isinstance(bias, torch.Tensor) else None
    return None


def read_heads(pt_path: str | Path) -> dict[str, tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """{task: (weight C×H, bias or None)} from a KnOTS-style pickle, loaded with weights_only=True."""
    path = Path(pt_path)
    obj = _load_pickle(path)
    stem = path.stem[: -len("_head")] if path.stem.endswith("_head") else path.stem
    if isinstance(obj, torch.Tensor):
        return {stem: (obj, None)}
    if not isinstance(obj, dict) or not obj:
        raise EnmpError(f"{path.name} holds a {type(obj).__name__}, not a tensor or a dict of heads", where=str(path))
    if all(isinstance(k, str) and "." not in k for k in obj):  # {task: tensor} or {task: {weight, bias}}
        out = {}
        for task, value in obj.items():
            if isinstance(value, torch.Tensor):
                out[task] = (value, None)
            elif isinstance(value, dict) and isinstance(value.get("weight"), torch.Tensor):
                out[task] = (value["weight"], value.get("bias"))
            elif isinstance(value, dict) and _head_from_state(value):
                out[task] = _head_from_state(value)
            else:
                raise EnmpError(f"entry '{task}' is not a head tensor", where=str(path))
        return out
    found = _head_from_state(obj)  # one model's state dict
    if found is None:
        raise EnmpError(f"no head weight in {path.name} (looked for {', '.join(s + '.weight' for s in _HEAD_STEMS)})",
                        where=str(path))
    return {stem: found}


def _task_info(setting: Optional[str], key: str) -> Optional[RecipeTask]:
    settings = [SETTINGS_BY_NAME[setting]] if setting else list(SETTINGS_BY_NAME.values())
    for s in settings:
        for t in s.tasks:
            if key.lower() in (t.name, t.hub_name):
                return t
    return None


def convert_heads(pt_path: str | Path, out_dir: str | Path, *, setting: Optional[str] = None,
                  labels: Optional[dict[str, list[str]]] = None) -> dict[str, Path]:
    """Convert pickled heads to ``<out_dir>/<task>/head.safetensors`` + ``head.json``; returns {task: dir}.

    Accepts a bare tensor (``<task>_head.pt``), a ``{task: tensor}`` / ``{task: {weight, bias}}`` dict
    (KnOTS ``heads.pt``) or one model's state dict (the head under score / classifier / ...). Known KnOTS
    tasks are renamed to the paper's names (stanford_cars → cars), get their class names, and lose the
    rows KnOTS masked for two-class tasks; `labels` overrides class names per task.
    """
    from safetensors.torch import save_file

    if setting is not None and setting not in SETTINGS_BY_NAME:
        raise EnmpError(f"unknown setting '{setting}'", where="--setting", fix="use nlp or vision")
    out = Path(out_dir)
    written: dict[str, Path] = {}
    for key, (weight, bias) in read_heads(pt_path).items():
        if weight.ndim != 2 or (bias is not None and bias.shape != (weight.shape[0],)):
            raise EnmpError(f"head '{key}' has shape {tuple(weight.shape)}; expected classes × features",
                            where=str(pt_path))
        info = _task_info(setting, key)
        name = info.name if info else key
        rows = list(range(weight.shape[0]))
        if info and info.keep_rows and weight.shape[0] > len(info.keep_rows):
            rows = list(info.keep_rows)
        w = weight.detach().to(torch.float32)[rows].contiguous()
        tensors = {"weight": w}
        if bias is not None:
            tensors["bias"] = bias.detach().to(torch.float32)[rows].contiguous()
        names = (labels or {}).get(name) or (list(info.labels) if info and info.labels else None) \
            or [str(i) for i in range(len(rows))]
        if len(names) != len(rows):
            raise EnmpError(f"{len(names)} labels for head '{name}' with {len(rows)} rows", where=str(pt_path))
        if not torch.isfinite(w).all():
            raise EnmpError(f"head '{name}' has NaN/Inf values", where=str(pt_path))
        meta = {"labels": [str(n) for n in names], "source": str(pt_path), "source_key": key, "rows": rows}
        if info is not None and _task_info("nlp", key) is info:
            meta["pooling"] = "last"  # LlamaForSequenceClassification pools the last non-pad token
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(d / "head.safetensors"))
        (d / "head.json").write_text(json.dumps(meta, indent=1))
        written[name] = d
    return written
