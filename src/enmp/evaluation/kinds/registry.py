"""The task kinds by name: one explicit list, the checking of a task config against its kind's declaration,
and the model class a run's kinds share.

Each kind declares everything about itself in its own module (`TaskKind` in base.py); this module only reads
those declarations. A new kind is its module and one line in `KINDS`.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from ...errors import EnmpError
from .base import Required, TaskKind
from .causal_lm import CausalLMTask
from .classification import ClassificationTask
from .clip_zero_shot import ClipZeroShotTask
from .lm_eval_kind import LmEvalTask

KINDS: dict[str, type[TaskKind]] = {k.kind: k for k in (ClassificationTask, ClipZeroShotTask, CausalLMTask,
                                                        LmEvalTask)}


def available_kinds() -> list[str]:
    return sorted(KINDS)


def get_kind(name: str, where: str = "tasks[].kind") -> type[TaskKind]:
    if name not in KINDS:
        raise EnmpError(f"unknown task kind '{name}'", where=where,
                        fix=f"choose one of: {', '.join(available_kinds())}")
    return KINDS[name]


def declaring(key: str) -> list[str]:
    """The kinds that take task-config key `key`, in registry order."""
    return [k.kind for k in KINDS.values() if key in k.options]


def _either(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def check_options(tc: Any) -> dict[str, Any]:
    """The keys task config `tc` gives beyond the common ones, checked against its kind's declaration: one
    EnmpError line for an unknown kind, a key its kind does not take (naming the kinds that do), a key it
    needs, or a bad value. Returns the given keys' checked values. null means unset for a key some kind
    declares: the saved configs of earlier versions wrote null for every kind's keys on every task."""
    where = f"task '{tc.name}'"
    kind = get_kind(tc.kind, where=f"{where}.kind")
    given = {k: v for k, v in (tc.model_extra or {}).items() if v is not None or not declaring(k)}
    accepted = f"{kind.kind} takes: {', '.join(kind.options) or 'no keys of its own'}"
    for key in given:
        if key not in kind.options:
            others = declaring(key)
            if others:
                raise EnmpError(f"{kind.kind} tasks take no {key}", where=f"{where}.{key}",
                                fix=f"{key} is for {_either(others)} tasks ({accepted})")
            raise EnmpError(f"unknown key '{key}'", where=f"{where}.{key}",
                            fix=f"a task takes {', '.join(type(tc).model_fields)}; {accepted}")
    if kind.brings_data and tc.data is not None:
        raise EnmpError(f"{kind.kind} tasks take no data", where=f"{where}.data",
                        fix=f"the task brings its own documents: remove data ({accepted})")
    if not kind.brings_data and tc.data is None:
        raise EnmpError(f"{kind.kind} tasks need data", where=f"{where}.data",
                        fix="e.g. data: {files: {val: val.csv, test: test.csv}} (or data: {hub: DATASET_ID})")
    missing = [k for k, o in kind.options.items() if isinstance(o, Required) and k not in given]
    if missing:
        first = kind.options[missing[0]]
        raise EnmpError(f"{kind.kind} tasks need {' and '.join(missing)}", where=f"{where}.{missing[0]}",
                        fix=f"e.g. {first.name}: {first.example} ({first.help})")
    values = kind.options.resolve(given, where, owner=f"task kind '{kind.kind}'")
    kind.check_config(tc, values, where)
    return {k: values[k] for k in given}


def model_class_for(kinds: Iterable[str]) -> str:
    """The transformers class (its name) one run loads for tasks of these kinds: the first, in registry order,
    that every kind reads (its own `model_class` or one in its `also_runs_on`); e.g. a causal LM serves both
    classification and causal_lm tasks. Kinds no one model serves are one error line."""
    wanted = set(kinds)
    for name in sorted(wanted):
        get_kind(name)
    chosen = [k for k in KINDS.values() if k.kind in wanted]
    for candidate in chosen:
        if all(k.runs_on(candidate.model_class) for k in chosen):
            return candidate.model_class
    for i, newcomer in enumerate(chosen):  # name the first kind that no model shares with those before it
        group = chosen[:i + 1]
        if not any(all(k.runs_on(c.model_class) for k in group) for c in group):
            before = chosen[:i]
            raise EnmpError(f"{newcomer.kind} tasks cannot be mixed with {_either([k.kind for k in before])} "
                            "tasks in one run", where="tasks",
                            fix=f"they load different models ({newcomer.model_class}, "
                                f"{', '.join(k.model_class for k in before)}): search them in separate runs")
    raise AssertionError("unreachable: the kinds share no model, so some prefix of them shares none")
