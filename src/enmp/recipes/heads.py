"""KnOTS' pickled heads → ``<out>/<task>/head.safetensors`` + ``head.json``, read with weights_only=True only.

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

Pickles are loaded with ``torch.load(weights_only=True)`` only (plain tensors and containers; no code can run).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Optional

import torch

from ..errors import EnmpError, first_line
from .settings import SETTINGS_BY_NAME, task_info

_HEAD_STEMS = ("score", "classifier", "classification_head", "head", "vision_head")


def _load_pickle(path: Path):
    if not path.is_file():
        raise EnmpError(f"head file {path} not found", where="convert-heads")
    try:
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise EnmpError(f"{path.name} holds more than tensors, so it was not loaded ({first_line(e, 160)})",
                        where=str(path), fix="re-save the heads as plain tensors (a {task: tensor} dict) in a "
                                             "trusted environment") from None
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
        info = task_info(setting, key)
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
        if info is not None and task_info("nlp", key) is info:
            meta["pooling"] = "last"  # LlamaForSequenceClassification pools the last non-pad token
        d = out / name
        d.mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(d / "head.safetensors"))
        (d / "head.json").write_text(json.dumps(meta, indent=1))
        written[name] = d
    return written
