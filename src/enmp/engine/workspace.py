"""Everything a search needs, loaded once: base model, validated adapters, heads and preprocessed data."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import torch

from ..adapters import AdapterSet, BaseCheckpoint, load_adapter_set
from ..config import RunConfig, TaskConfig
from ..dtypes import DTYPES
from ..errors import EnmpError, first_line
from ..evaluation import (CausalLMTask, ClassificationTask, ClipZeroShotTask, Examples, PreparedSplit, TaskKind,
                          load_examples, load_head)
from ..masking import group_labels, target_groups
from ..search import Subset
from .cache import MergeCache
from .patch import LivePatcher, parameter_name
from .prefix import PrefixCache, find_layer_list



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
        from ..evaluation.heads import Head

        head = Head(torch.zeros(len(labels), 1), None, labels)
        return CausalLMTask(tc.name, head, prompt=tc.prompt, label_words=list(tc.label_words))
    head = load_head(tc.name, adapter_dir, tc.head, tc.labels, tc.pooling, extra)
    return (ClipZeroShotTask if tc.kind == "clip_zero_shot" else ClassificationTask)(tc.name, head)


@dataclass
class RunInputs:
    """What every process of a run needs: the validated base checkpoint and adapters and the mask's
    module groups — no model and no data (a parallel driver holds only this; its workers load the rest)."""

    cfg: RunConfig
    base: BaseCheckpoint
    adapters: AdapterSet
    groups: list

    @property
    def task_names(self) -> list[str]:
        return self.adapters.tasks

    def target_layout(self) -> tuple[list[int], list[int]]:
        """Each adapted matrix's transformer layer and mask group (what the cost model needs to know)."""
        targets = self.adapters.targets
        return [t.layer for t in targets], target_groups(targets, self.groups, self.cfg.search.grouping)


def load_inputs(cfg: RunConfig, log: Optional[Callable[[str], None]] = None) -> RunInputs:
    (log or (lambda _msg: None))("checking base model and adapters")
    base = BaseCheckpoint(cfg.base)
    adapters = load_adapter_set(base, {t.name: t.adapter for t in cfg.tasks}, layer_regex=cfg.layer_regex)
    return RunInputs(cfg, base, adapters, group_labels(adapters.targets, cfg.search.grouping))


@dataclass
class Workspace(RunInputs):
    """RunInputs plus the live model, the task heads and the preprocessed data of each split."""

    model: torch.nn.Module = None
    tasks: list[TaskKind] = field(default_factory=list)
    splits: dict[str, list[PreparedSplit]] = field(default_factory=dict)
    device: torch.device = torch.device("cpu")
    processors: dict = field(default_factory=dict)  # task kind → tokenizer / image processor
    examples: dict[str, list[Examples]] = field(default_factory=dict)  # split → per task, as loaded

    _subsets: dict = field(default_factory=dict)  # (split, task, subset key) → PreparedSplit

    _patcher: Optional[LivePatcher] = None
    _prefix: Optional[PrefixCache] = None
    _prefix_checked: bool = False
    _layers: Optional[torch.nn.ModuleList] = None
    _layers_checked: bool = False

    def patcher(self) -> LivePatcher:
        """The one patcher of this live model: it alone knows what the weights hold and their base values."""
        if self._patcher is None:
            self._patcher = LivePatcher(self.model, self.adapters, self.groups, self.cfg.search.grouping,
                                        MergeCache(self.cfg.eval.cache_mb))
        return self._patcher

    def prepare(self, task: int, ex: Examples) -> PreparedSplit:
        """Model inputs for some examples of one task (tokenised or preprocessed once, batched by length)."""
        tc = self.cfg.tasks[task]
        return self.tasks[task].prepare(ex, self.processors[tc.kind], batch_size=self.cfg.eval.batch_size,
                                        max_length=self.cfg.eval.max_length).to(self.device)

    def prepared(self, split: str, task: int, subset: Optional[Subset] = None) -> PreparedSplit:
        """A split's prepared inputs for one task, or those of a subset of its examples (prepared on first use)."""
        if subset is None:
            return self.splits[split][task]
        key = (split, task, subset.key)
        if key not in self._subsets:
            self._subsets[key] = self.prepare(task, self.examples[split][task].subset(subset.index[task].tolist()))
        return self._subsets[key]

    def layer_list(self) -> Optional[torch.nn.ModuleList]:
        """The ModuleList of transformer layers the adapters live in (None when it cannot be found)."""
        if not self._layers_checked:
            self._layers_checked = True
            names = dict(self.model.named_parameters())
            found = find_layer_list(self.model, [parameter_name(names, t.weight) for t in self.adapters.targets],
                                    [t.layer for t in self.adapters.targets])
            if found is not None and max(t.layer for t in self.adapters.targets) < len(found):
                self._layers = found
        return self._layers

    @property
    def n_layers(self) -> int:
        """Transformer layers a forward pass runs (for cost accounting)."""
        layers = self.layer_list()
        if layers is not None:
            return len(layers)
        config = self.base.config.get("vision_config") or self.base.config
        return int(config.get("num_hidden_layers") or len(self.adapters.layers))

    def prefix_cache(self) -> Optional[PrefixCache]:
        """Layer-output cache for this model (None when disabled or the layer stack is not found)."""
        if not self._prefix_checked:
            self._prefix_checked = True
            budget = self.cfg.eval.prefix_cache_mb
            layers = self.layer_list() if budget > 0 else None
            if layers is not None:
                self._prefix = PrefixCache(layers, budget)
        return self._prefix


def build_workspace(cfg: RunConfig, *, splits=("val", "test"), inputs: Optional[RunInputs] = None,
                    log: Optional[Callable[[str], None]] = None) -> Workspace:
    """Load everything an in-process evaluator needs (reusing `inputs` when the caller has them)."""
    log = log or (lambda _msg: None)
    quiet_transformers()
    if cfg.eval.threads:
        torch.set_num_threads(cfg.eval.threads)
    device = pick_device(cfg.eval.device)
    inputs = inputs or load_inputs(cfg, log)
    base, adapters = inputs.base, inputs.adapters
    tasks = [build_task(tc, ad.directory, ad.extra) for tc, ad in zip(cfg.tasks, adapters.adapters)]
    kinds = {tc.kind for tc in cfg.tasks}
    processors = {k: base.gguf.tokenizer(cfg.trust_remote_code) if base.gguf is not None  # inside the GGUF
                  else load_processor(base, k, cfg.trust_remote_code) for k in kinds}
    ws = Workspace(cfg, base, adapters, inputs.groups, None, tasks, {s: [] for s in splits}, device, processors,
                   {s: [] for s in splits})
    for t, tc in enumerate(cfg.tasks):
        for split in splits:
            log(f"preparing {tc.name} ({split})")
            limit = cfg.eval.val_samples if split == "val" else cfg.eval.test_samples
            ex = load_examples(tc.data, split, tasks[t].head.labels, max_samples=limit, seed=cfg.eval.data_seed,
                               where=f"task '{tc.name}'")
            ws.examples[split].append(ex)
            ws.splits[split].append(ws.prepare(t, ex))
    log("loading base model")
    ws.model = load_model(base, kinds, DTYPES[cfg.eval.dtype], device, cfg.trust_remote_code)
    return ws
