"""The merge-parameter flags of `enmp merge`, generated from the methods' declarations.

One flag per parameter that any method declares (`top_k` → `--top-k`), typed by its declaration, with a help
text that lists each method's default (and choices). A new parameter in a method's module is a new flag with no
edit here. The command receives the values as one dict (name → value, None when not given) and hands it to
`method_params`, which checks them against the chosen method's declaration.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Optional, get_type_hints

import typer

from ..merging import METHODS, declared_options
from ..merging.command_line import is_switch
from ..merging.params import flag
from ..options import Option, show_value

_TYPES = {float: float, int: int, str: str, bool: bool}


def _per_method(name: str, value: Callable[[Option], Any]) -> dict[str, Any]:
    return {m: value(info.options[name]) for m, info in sorted(METHODS.items()) if name in info.options}


def flag_help(option: Option) -> str:
    """'Percent of entries TIES trimming keeps (default: core_space 100.0, dare_ties 80.0, …).'"""
    text = option.help
    if option.choices is not None:
        choices = _per_method(option.name, lambda o: "|".join(map(show_value, o.choices)))
        same = len(set(choices.values())) == 1
        text += ": " + (next(iter(choices.values())) if same else ", ".join(f"{m} {c}" for m, c in choices.items()))
    if is_switch(option.name):  # off unless given, for every method
        return text + "."
    defaults = _per_method(option.name, lambda o: show_value(o.default))
    if len(set(defaults.values())) == 1 and len(defaults) == len(METHODS):
        return f"{text} (default: {next(iter(defaults.values()))} for every method)."
    return f"{text} (default: {', '.join(f'{m} {v}' for m, v in defaults.items())})."


def _parameter(option: Option) -> inspect.Parameter:
    if is_switch(option.name):
        info, annotation = typer.Option(False, flag(option.name), help=flag_help(option)), bool
    elif option.type is bool:
        dashed = flag(option.name)[2:]
        info = typer.Option(None, f"--{dashed}/--no-{dashed}", help=flag_help(option))
        annotation = Optional[bool]
    else:
        info, annotation = typer.Option(None, flag(option.name), help=flag_help(option)), Optional[_TYPES[option.type]]
    return inspect.Parameter(option.name, inspect.Parameter.KEYWORD_ONLY, default=info, annotation=annotation)


def with_merge_flags(after: str, into: str = "merge_params"):
    """Decorate a typer command that takes `into: dict`: its signature gets one option per declared merge
    parameter (after the parameter named `after`) instead, and the wrapper collects them into that dict."""

    def decorate(command: Callable) -> Callable:
        options = list(declared_options().values())
        sig = inspect.signature(command)
        hints = get_type_hints(command)
        fixed = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
                 for p in sig.parameters.values() if p.name != into]
        clash = sorted({o.name for o in options} & {p.name for p in fixed})
        if clash:
            raise ValueError(f"merge parameter(s) {', '.join(clash)} clash with `{command.__name__}` options")
        at = next(i for i, p in enumerate(fixed) if p.name == after) + 1
        params = fixed[:at] + [_parameter(o) for o in options] + fixed[at:]
        names = [o.name for o in options]

        @functools.wraps(command)
        def wrapper(**kwargs):
            given = {name: kwargs.pop(name) for name in names}
            # a switch that was not given is unset (the method's default), not an explicit "off"
            given = {k: (None if v is False and is_switch(k) else v) for k, v in given.items()}
            return command(**kwargs, **{into: given})

        wrapper.__signature__ = sig.replace(parameters=params)
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        return wrapper

    return decorate
