"""Run configuration (YAML ↔ pydantic). Unknown keys and wrong types are errors, not silently ignored.

Relative paths in a config file are resolved against the file's directory, so a run directory's saved
`config.yaml` replays the run from anywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .data_config import DataConfig, StrictModel as _Strict
from .errors import EnmpError


class TaskConfig(BaseModel):
    """One task: its adapter, data and kind, and the keys its kind adds.

    The keys every kind shares are the fields below; the keys a kind adds (classification's `pooling`,
    causal_lm's `prompt` and `label_words`) are declared once in the kind's module (`enmp.evaluation.kinds`)
    and checked here against that declaration when the config is read: an unknown kind, a key the kind does
    not take (naming the kinds that do) or a key it needs is one error line. null means unset for a key some
    kind declares, so the saved config.yaml files of earlier versions (null for every kind's keys) still load.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    name: str = Field(min_length=1)
    adapter: str
    kind: str = "classification"  # a registered task kind (enmp.evaluation.available_kinds())
    data: Optional[DataConfig] = None  # every kind needs it but those that bring their own documents (lm_eval)
    head: Optional[str] = None  # safetensors with weight [C, H] (+ bias); default <adapter>/head.safetensors
    labels: Optional[list[str]] = None  # class names in head order; default from <adapter>/head.json

    @model_validator(mode="after")
    def _check(self):
        from .evaluation.kinds import check_options  # lazy: evaluation sits above config (and imports torch)

        self.__pydantic_extra__ = check_options(self)  # raises one EnmpError line; keeps the given keys, checked
        return self

    def kind_options(self) -> dict[str, Any]:
        """Every key the task's kind declares: the given values over the kind's defaults."""
        from .evaluation.kinds import get_kind

        return {**get_kind(self.kind).options.defaults, **(self.model_extra or {})}


class MergeConfig(BaseModel):
    """`merge:` — a method and its own parameters, whatever they are: `{method: ties, lam: 1.2, top_k: 80}`.

    The keys a method accepts, their types, ranges and defaults are declared once in its module
    (`MergeMethod.params`) and checked here against that declaration when the config is read: a key the
    method does not take is one error line listing the keys it accepts. An unset key takes the method's
    default; null also means "unset", so the saved config.yaml files of earlier versions (which wrote null
    for every key the method ignores) still load. `resolved()` writes out every value the method reads,
    which is what a run directory saves, so its config.yaml replays the merge whatever the defaults become.
    """

    model_config = ConfigDict(extra="allow", validate_assignment=True)

    method: str = "ta"

    @model_validator(mode="after")
    def _check(self):
        self.params()  # raises one EnmpError line for a bad key or value
        return self

    def given(self) -> dict[str, Any]:
        """The parameters as written under `merge:` (besides `method`)."""
        return dict(self.model_extra or {})

    def params(self):
        """The full, checked `MergeParams` (lazy import: keeps `enmp.config` free of torch until used)."""
        from .merging import method_params

        return method_params(self.method, **self.given())

    def resolved(self) -> "MergeConfig":
        """This section with every value the method reads written out (and nothing else)."""
        return MergeConfig(method=self.method, **self.params().to_dict())


class SearchConfig(_Strict):
    """`search:` — a strategy and its settings. `rho`, `seed`, `popsize` and `generations` left unset take the
    strategy's own defaults (cma: the paper's 0.2, 1, 16, 60) and `options` are the strategy's own, all
    declared once by the strategy and checked here against that declaration when the config is read.
    `resolved()` writes every value out, which is what a run directory saves. The default strategy is
    `crossfit` (its decision and expected gain come from examples the search did not fit; the replicate
    benchmark is the evidence); `cma` is the paper's exact method."""

    strategy: str = "crossfit"
    options: dict[str, Any] = Field(default_factory=dict)  # the strategy's own options (declared by it)
    generations: Optional[int] = None
    popsize: Optional[int] = None
    rho: Optional[float] = None
    seed: Optional[int] = None
    sigma0: Optional[float] = None  # σ0 for every strategy that declares one (unset: its own; cma: the paper's 0.5)
    grouping: Literal["layer", "projection"] = "layer"
    random_repeats: int = Field(5, ge=0)  # random-pruning baseline repeats at ENMP's sparsity
    greedy_baseline: bool = False
    track_test: bool = True  # score each new best on the test split too (convergence plot)

    @model_validator(mode="after")
    def _check(self):
        self.settings()  # raises one EnmpError line for an unknown strategy, option or a bad value
        return self

    def settings(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """(rho, seed, popsize and generations; the strategy's options), every value checked and filled in."""
        from .search import get_strategy  # lazy: keeps `enmp.config` light until a config is read

        cls = get_strategy(self.strategy)
        options = dict(self.options)
        if self.sigma0 is not None and "sigma0" in cls.OPTIONS:
            options.setdefault("sigma0", self.sigma0)
        given = {k: getattr(self, k) for k in ("rho", "seed", "popsize", "generations") if getattr(self, k) is not None}
        return cls.resolve_settings(given, options)

    def resolved(self) -> "SearchConfig":
        """This section with the strategy's every setting written out."""
        common, options = self.settings()
        return self.model_copy(update={**common, "options": options})


class EvalConfig(_Strict):
    val_samples: Optional[int] = Field(None, ge=1)
    test_samples: Optional[int] = Field(None, ge=1)
    batch_size: int = Field(64, ge=1)
    max_length: int = Field(128, ge=4)
    device: str = "auto"
    dtype: Literal["float32", "float16", "bfloat16"] = "float32"
    data_seed: int = 0
    cache_mb: int = Field(1024, ge=0)
    prefix_cache_mb: int = Field(512, ge=0)  # hidden states of shared layer prefixes (0 turns it off)
    threads: Optional[int] = Field(None, ge=1)


class ParallelConfig(_Strict):
    workers: int = Field(1, ge=1)
    ray_address: Optional[str] = None


class OutputConfig(_Strict):
    save_model: bool = True
    save_adapter: bool = False
    adapter_rank: Optional[int] = Field(None, ge=1)
    dtype: Optional[Literal["float32", "float16", "bfloat16"]] = None
    # the base's Hub id (org/name) for the model cards when `base` is a local path: cards never name local paths
    base_model_id: Optional[str] = None

    @field_validator("base_model_id")
    @classmethod
    def _hub_id(cls, value):
        from .adapters.hub import looks_like_hub_id

        if value is not None and not looks_like_hub_id(value):
            raise ValueError(f"'{value}' is not a Hub id of the form ORG/NAME")
        return value


class RunConfig(_Strict):
    base: str
    trust_remote_code: bool = False
    layer_regex: Optional[str] = None
    tasks: list[TaskConfig] = Field(min_length=1)
    merge: MergeConfig = Field(default_factory=MergeConfig)
    search: SearchConfig = Field(default_factory=SearchConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)
    parallel: ParallelConfig = Field(default_factory=ParallelConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)

    @field_validator("tasks")
    @classmethod
    def _unique_names(cls, tasks):
        names = [t.name for t in tasks]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate task names: {', '.join(dup)}")
        return tasks

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def _resolve(value: Optional[str], root: Path) -> Optional[str]:
    """Make a relative local path absolute against the config's directory; hub ids stay as they are."""
    from .adapters.hub import looks_like_hub_id  # (lazy: keeps `enmp.config` free of torch)

    if value is None:
        return None
    p = Path(value).expanduser()
    if p.is_absolute():
        return str(p)
    candidate = root / p
    if candidate.exists() or not looks_like_hub_id(value):
        return str(candidate.resolve())  # a missing local path is reported with its full location
    return value  # "org/name" that does not exist locally: a hub id (the same rule resolve_dir applies)


def _resolve_local(value: Optional[str], root: Path) -> Optional[str]:
    if value is None:
        return None
    p = Path(value).expanduser()
    return str(p if p.is_absolute() else (root / p).resolve())


def resolve_paths(cfg: RunConfig, root: Path) -> RunConfig:
    from .evaluation.kinds import get_kind  # (lazy, as in TaskConfig: kinds import torch)

    cfg = cfg.model_copy(deep=True)
    cfg.base = _resolve(cfg.base, root)
    for t in cfg.tasks:
        t.adapter = _resolve(t.adapter, root)
        t.head = _resolve_local(t.head, root)
        if t.data is not None and t.data.files:
            t.data.files = {k: _resolve_local(v, root) for k, v in t.data.files.items()}
        if t.data is not None and t.data.hub and (root / t.data.hub).exists():
            t.data.hub = str((root / t.data.hub).resolve())
        # the keys a kind adds may hold paths too (lm_eval's task YAML): the kind says which
        t.__pydantic_extra__ = get_kind(t.kind).resolve_paths(dict(t.model_extra or {}),
                                                              lambda v: _resolve_local(v, root))
    return cfg


def format_validation_error(err: ValidationError, where: str) -> str:
    first = err.errors()[0]
    loc = ".".join(str(x) for x in first["loc"]) or "(top level)"
    msg = first["msg"]
    if first["type"] == "extra_forbidden":
        msg = "unknown key"
    elif first["type"] == "value_error":  # our own validators: drop pydantic's "Value error, " prefix
        msg = msg.removeprefix("Value error, ")
    more = f" (+{len(err.errors()) - 1} more)" if len(err.errors()) > 1 else ""
    return f"{where}: {loc}: {msg}{more}"


def parse_config(data, *, where: str, root: Path) -> RunConfig:
    if not isinstance(data, dict):
        raise EnmpError("config must be a YAML mapping", where=where, fix="see the README's config example")
    try:
        cfg = RunConfig.model_validate(data)
    except ValidationError as e:
        raise EnmpError(format_validation_error(e, where), fix="fix that field (see the README's config example)") from None
    except EnmpError as e:  # the merge and search sections' own checks (declared by the method and strategy)
        raise EnmpError(e.what, where=f"{where}: {e.where}" if e.where else where, fix=e.fix) from None
    return resolve_paths(cfg, root)


def load_config(path: str | Path) -> RunConfig:
    path = Path(path)
    if not path.is_file():
        raise EnmpError(f"config file {path} not found", where="--config", fix="check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark else ""
        raise EnmpError(f"config is not valid YAML{at}", where=str(path),
                        fix="fix the YAML syntax (see the README's config example)") from None
    return parse_config(data, where=str(path), root=path.resolve().parent)
