"""Everything a search needs, loaded once: base model, validated adapters, heads and preprocessed data."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from ..adapters import AdapterSet, BaseCheckpoint, load_adapter_set
from ..adapters.hub import resolve_dir
from ..config import RunConfig, TaskConfig
from ..errors import EnmpError
from ..evaluation import (CausalLMTask, ClassificationTask, ClipZeroShotTask, PreparedSplit, TaskKind,
                          load_examples, load_head)
from ..masking import group_labels
from .cache import MergeCache
from .patch import LivePatcher, parameter_name
from .prefix import PrefixCache, find_layer_list

_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
        model = cls.from_pretrained(str(base.dir), dtype=dtype, trust_remote_code=trust_remote_code,
                                    use_safetensors=True)
    except EnmpError:
        raise
    except Exception as e:  # transformers raises many types; one line is what the user needs
        msg = str(e).strip().splitlines()[0][:240] if str(e).strip() else type(e).__name__
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
        from ..evaluation.heads import Head

        head = Head(torch.zeros(len(labels), 1), None, labels)
        return CausalLMTask(tc.name, head, prompt=tc.prompt, label_words=list(tc.label_words))
    head = load_head(tc.name, adapter_dir, tc.head, tc.labels, tc.pooling, extra)
    return (ClipZeroShotTask if tc.kind == "clip_zero_shot" else ClassificationTask)(tc.name, head)


@dataclass
class Workspace:
    cfg: RunConfig
    base: BaseCheckpoint
    adapters: AdapterSet
    groups: list
    model: torch.nn.Module
    tasks: list[TaskKind]
    splits: dict[str, list[PreparedSplit]] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")
    processors: dict = field(default_factory=dict)  # task kind → tokenizer / image processor

    _patcher: Optional[LivePatcher] = None
    _prefix: Optional[PrefixCache] = None
    _prefix_checked: bool = False

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def patcher(self, cache_mb: float) -> LivePatcher:
        """The one patcher of this live model: it alone knows what the weights hold and their base values."""
        if self._patcher is None:
            self._patcher = LivePatcher(self.model, self.adapters, self.groups, self.cfg.search.grouping,
                                        MergeCache(cache_mb))
        return self._patcher

    def prefix_cache(self) -> Optional[PrefixCache]:
        """Layer-output cache for this model (None when disabled or the layer stack is not found)."""
        if not self._prefix_checked:
            self._prefix_checked = True
            budget = self.cfg.eval.prefix_cache_mb
            names = dict(self.model.named_parameters())
            layer_list = find_layer_list(self.model, [parameter_name(names, t.weight) for t in self.adapters.targets],
                                         [t.layer for t in self.adapters.targets]) if budget > 0 else None
            if layer_list is not None and max(t.layer for t in self.adapters.targets) < len(layer_list):
                self._prefix = PrefixCache(layer_list, budget)
        return self._prefix


def build_workspace(cfg: RunConfig, *, splits=("val", "test"),
                    log: Optional[Callable[[str], None]] = None) -> Workspace:
    log = log or (lambda _msg: None)
    quiet_transformers()
    if cfg.eval.threads:
        torch.set_num_threads(cfg.eval.threads)
    device = pick_device(cfg.eval.device)
    log("checking base model and adapters")
    base = BaseCheckpoint(cfg.base)
    adapters = load_adapter_set(base, {t.name: t.adapter for t in cfg.tasks}, layer_regex=cfg.layer_regex)
    groups = group_labels(adapters.targets, cfg.search.grouping)
    tasks = [build_task(tc, resolve_dir(tc.adapter, what="adapter"), ad.extra)
             for tc, ad in zip(cfg.tasks, adapters.adapters)]
    kinds = {tc.kind for tc in cfg.tasks}
    processors = {k: load_processor(base, k, cfg.trust_remote_code) for k in kinds}
    prepared: dict[str, list[PreparedSplit]] = {s: [] for s in splits}
    for tc, task in zip(cfg.tasks, tasks):
        for split in splits:
            log(f"preparing {tc.name} ({split})")
            limit = cfg.eval.val_samples if split == "val" else cfg.eval.test_samples
            ex = load_examples(tc.data, split, task.head.labels, max_samples=limit, seed=cfg.eval.data_seed,
                               where=f"task '{tc.name}'")
            prepared[split].append(task.prepare(ex, processors[tc.kind], batch_size=cfg.eval.batch_size,
                                                max_length=cfg.eval.max_length).to(device))
    log("loading base model")
    model = load_model(base, kinds, _DTYPES[cfg.eval.dtype], device, cfg.trust_remote_code)
    return Workspace(cfg, base, adapters, groups, model, tasks, prepared, device, processors)


def default_threads(workers: int) -> int:
    """Threads per evaluator so that `workers` evaluators do not oversubscribe the cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))
