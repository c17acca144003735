"""Loading the live model, its tokenizer or image processor, and each task's head (the task kinds)."""

from __future__ import annotations

from pathlib import Path

import torch

from ...adapters import BaseCheckpoint
from ...config import TaskConfig
from ...errors import EnmpError, first_line
from ...evaluation import CausalLMTask, ClassificationTask, ClipZeroShotTask, TaskKind, load_head


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise EnmpError(f"unknown device '{name}'", where="--device", fix="use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EnmpError("CUDA is not available on this machine", where="--device", fix="use --device cpu")
    return device


def quiet_transformers() -> None:
    """Our own progress bars and log lines replace transformers' per-load reports."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _model_class(kinds: set[str]):
    import transformers

    if "clip_zero_shot" in kinds:
        if kinds != {"clip_zero_shot"}:
            raise EnmpError("clip_zero_shot tasks cannot be mixed with text tasks in one run", where="tasks")
        return transformers.CLIPVisionModelWithProjection
    if "causal_lm" in kinds:
        return transformers.AutoModelForCausalLM
    return transformers.AutoModel


def load_model(base: BaseCheckpoint, kinds: set[str], dtype: torch.dtype, device: torch.device,
               trust_remote_code: bool) -> torch.nn.Module:
    cls = _model_class(kinds)
    try:
        if base.gguf is not None:  # transformers dequantises the GGUF straight to the eval dtype
            model = base.gguf.load_model(cls, dtype, trust_remote_code)
        else:
            model = cls.from_pretrained(str(base.dir), dtype=dtype, trust_remote_code=trust_remote_code,
                                        use_safetensors=True)
    except EnmpError:
        raise
    except Exception as e:  # transformers raises many types; one line is what the user needs
        msg = first_line(e, 240)
        fix = "pass --trust-remote-code if you trust it" if "trust_remote_code" in msg else \
            "check that the base is a transformers model directory"
        raise EnmpError(f"cannot load the base model ({msg})", where=str(base.dir), fix=fix) from None
    return model.to(device).eval()


def load_processor(base: BaseCheckpoint, kind: str, trust_remote_code: bool):
    import transformers

    if kind == "clip_zero_shot":
        try:
            return transformers.AutoImageProcessor.from_pretrained(str(base.dir))
        except Exception:  # a bare vision checkpoint: build CLIP's processor from the config
            size = (base.config.get("vision_config") or base.config).get("image_size", 224)
            return transformers.CLIPImageProcessor(size={"shortest_edge": size},
                                                   crop_size={"height": size, "width": size})
    try:
        return transformers.AutoTokenizer.from_pretrained(str(base.dir), trust_remote_code=trust_remote_code)
    except Exception as e:
        raise EnmpError(f"cannot load the base model's tokenizer ({type(e).__name__})", where=str(base.dir),
                        fix="the base directory needs tokenizer files") from None


def build_task(tc: TaskConfig, adapter_dir: Path, extra: dict) -> TaskKind:
    where = f"task '{tc.name}'"
    if tc.kind == "causal_lm":
        if not tc.prompt or not tc.label_words:
            raise EnmpError("causal_lm tasks need prompt and label_words", where=where)
        labels = tc.labels or [w.strip() for w in tc.label_words]
        if len(labels) != len(tc.label_words):
            raise EnmpError("labels and label_words differ in length", where=where)
        from ...evaluation.heads import Head

        head = Head(torch.zeros(len(labels), 1), None, labels)
        return CausalLMTask(tc.name, head, prompt=tc.prompt, label_words=list(tc.label_words))
    head = load_head(tc.name, adapter_dir, tc.head, tc.labels, tc.pooling, extra)
    return (ClipZeroShotTask if tc.kind == "clip_zero_shot" else ClassificationTask)(tc.name, head)
