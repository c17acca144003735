"""The paper's two settings as data (ENMP paper, arXiv 2604.17753; checkpoints from KnOTS, arXiv 2410.19735).

* ``nlp``: Llama-3-8B with six NLI tasks, LoRA r 16 / α 16 on q, k, v, o_proj, one linear classification
  head per task (``hoffman-lab/KnOTS-Llama3_8B_lora_R16_<task>`` + the released ``heads.pt``).
* ``vision``: the CLIP ViT-B/32 image encoder with eight tasks, LoRA r 16 / α 16 on q, k, v, out_proj, one
  zero-shot text head per task (``hoffman-lab/KnOTS-ViT-B-32_lora_R16_<task>`` + ``<task>_head.pt``).

Base ids, task names and head sizes come from `enmp.architectures` (shared with the dry run); what is
recipe-only lives here: datasets, class names, Table 6 hyperparameters and the notes printed in the YAMLs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from ..architectures import ARCHITECTURES, CLIP_B32, LLAMA3_8B, Expert

SETTINGS = ("nlp", "vision")
METHODS = ("ta", "ties", "dare_ties", "tsv", "knots", "core_space")
PAPER_SEARCH = {"strategy": "cma", "generations": 60, "popsize": 16, "rho": 0.2, "sigma0": 0.5, "seed": 1}


@dataclass(frozen=True)
class RecipeTask:
    expert: Expert  # the published checkpoint: task name, KnOTS hub name, head rows
    data: dict  # DataConfig fields
    labels: Optional[tuple[str, ...]] = None  # class names in head-row order (after dropping masked rows)
    keep_rows: Optional[tuple[int, ...]] = None  # rows of the KnOTS head that this task uses
    note: str = ""

    @property
    def name(self) -> str:
        return self.expert.name

    @property
    def hub_name(self) -> str:
        return self.expert.hub_name

    @property
    def n_classes(self) -> int:
        return self.expert.n_classes


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
_NLI = {e.name: e for e in ARCHITECTURES[LLAMA3_8B].experts}


def _pair(hub, text, pair, val, test, subset=None):
    d = {"hub": hub, "splits": {"val": val, "test": test}, "text": text, "text_pair": pair, "label": "label"}
    if subset:
        d["subset"] = subset
    return d


NLP = Setting(
    name="nlp",
    base=LLAMA3_8B,
    adapter_id="hoffman-lab/KnOTS-Llama3_8B_lora_R16_{hub_name}",
    kind="classification",
    pooling="last",
    heads_dir="heads/llama3-8b",
    tasks=(
        RecipeTask(_NLI["snli"], {**_pair("stanfordnlp/snli", "premise", "hypothesis", "validation", "test"),
                                  "skip_labels": [-1]},
                   _NLI3, note="SNLI marks pairs without a gold label with label -1; like KnOTS we drop them."),
        RecipeTask(_NLI["mnli"], _pair("SetFit/mnli", "text1", "text2", "validation[:20%]", "validation[20%:]"),
                   _NLI3, note="KnOTS splits the (matched) validation set 20 % val / 80 % test with a seeded "
                               "shuffle (seed 42); a contiguous slice is used here, so the exact examples differ."),
        RecipeTask(_NLI["sick"], _pair("sick", "sentence_A", "sentence_B", "validation", "test"), _NLI3,
                   note="KnOTS loads the hub id 'sick' (a loading script, which datasets >= 4 no longer runs): "
                        "point data.hub at a parquet copy or local files with sentence_A, sentence_B, label "
                        "(0 entailment, 1 neutral, 2 contradiction)."),
        RecipeTask(_NLI["qnli"], _pair("SetFit/qnli", "text1", "text2", "validation[:20%]", "validation[20%:]"),
                   ("entailment", "not_entailment"), keep_rows=(0, 2),
                   note="KnOTS: 20 % of validation as val (seeded shuffle), the rest as test; head row 1 masked."),
        RecipeTask(_NLI["rte"], _pair("SetFit/rte", "text1", "text2", "validation[:50%]", "validation[50%:]"),
                   ("entailment", "not_entailment"), keep_rows=(0, 2),
                   note="KnOTS: 50 % of validation as val (seeded shuffle), the rest as test; head row 1 masked."),
        RecipeTask(_NLI["scitail"],
                   _pair("allenai/scitail", "premise", "hypothesis", "validation", "test", subset="tsv_format"),
                   ("entails", "neutral"), keep_rows=(0, 1),
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

# The eight vision tasks' hub datasets (heads are C × 512, C from the architectures table).
_VISION_DATA = {
    "cars": ("tanganke/stanford_cars", None), "dtd": ("tanganke/dtd", None),
    "eurosat": ("tanganke/eurosat", None), "gtsrb": ("tanganke/gtsrb", None), "mnist": ("ylecun/mnist", None),
    "resisc45": ("tanganke/resisc45", None), "sun397": ("tanganke/sun397", None),
    "svhn": ("ufldl-stanford/svhn", "cropped_digits"),
}


def _image(hub, subset):
    d = {"hub": hub, "splits": {"val": "test[:20%]", "test": "test[20%:]"}, "text": None, "image": "image",
         "label": "label"}
    if subset:
        d["subset"] = subset
    return d


VISION = Setting(
    name="vision",
    base=CLIP_B32,
    adapter_id="hoffman-lab/KnOTS-ViT-B-32_lora_R16_{hub_name}",
    kind="clip_zero_shot",
    pooling=None,
    heads_dir="heads/clip-vit-b32",
    tasks=tuple(RecipeTask(e, _image(*_VISION_DATA[e.name]),
                           note="integer labels in the dataset's class order (the head's rows follow it)")
                for e in ARCHITECTURES[CLIP_B32].experts),
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


def task_info(setting: Optional[str], key: str) -> Optional[RecipeTask]:
    """The recipe task named `key` (paper or KnOTS name) in one setting, or in any when setting is None."""
    settings = [SETTINGS_BY_NAME[setting]] if setting else list(SETTINGS_BY_NAME.values())
    for s in settings:
        for t in s.tasks:
            if key.lower() in (t.name, t.hub_name):
                return t
    return None
