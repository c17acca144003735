"""How merge parameters are written on the `enmp merge` command line, derived from the declarations.

The CLI generates its flags from this (cli/merge_flags.py) and the model card writes its rebuild command with
it (engine/model_card.py), so the two cannot disagree.
"""

from __future__ import annotations

from typing import Any

from .params import flag
from .registry import METHODS


def is_switch(name: str) -> bool:
    """A boolean that is off by default in every method that declares it (`--iso`): a plain switch; any other
    boolean gets `--name/--no-name`."""
    options = [m.options[name] for m in METHODS.values() if name in m.options]
    return bool(options) and all(o.type is bool and o.default is False for o in options)


def command_words(name: str, value: Any) -> list[str]:
    """The words that set parameter `name` to `value` on the `enmp merge` command line."""
    if isinstance(value, bool):
        if is_switch(name):
            return [flag(name)] if value else []
        return [flag(name) if value else "--no-" + flag(name)[2:]]
    return [flag(name), str(value)]
