"""Loading the live model, its tokenizer or image processor, and each task's head, as the task kinds declare."""

from __future__ import annotations

from pathlib import Path

import torch

from ...adapters import BaseCheckpoint
from ...config import TaskConfig
from ...errors import EnmpError, first_line
from ...evaluation import TaskKind, get_kind, model_class_for


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
    """The transformers class every kind of the run reads (declared by the kinds; mixing others is an error)."""
    import transformers

    return getattr(transformers, model_class_for(kinds))


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
    """The tokenizer or image processor tasks of `kind` read (the kind declares which)."""
    return get_kind(kind).load_processor(base, trust_remote_code)


def build_task(tc: TaskConfig, adapter_dir: Path, extra: dict) -> TaskKind:
    """The task of one task config, with its head (built by its kind: a head file, or its label words)."""
    return get_kind(tc.kind).from_config(tc, adapter_dir, extra)
