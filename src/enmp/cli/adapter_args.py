"""Command-line side of the adapters: parsing ``--adapter NAME=PATH`` and the `enmp inspect` table rows.

They change with the CLI's flags and output, not with how adapters are loaded, so they live here.
"""

from __future__ import annotations

import re
from typing import Iterable

from ..errors import EnmpError

_NAME = re.compile(r"^\w[\w.+-]*$")


def parse_adapter_args(items: Iterable[str]) -> dict[str, str]:
    """Parse repeated ``--adapter name=path`` options into an ordered {name: path} dict."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, path = str(item).partition("=")
        name, path = name.strip(), path.strip()
        if not sep:
            raise EnmpError(f"adapter argument {item!r} has no '='", where="--adapter",
                            fix="write --adapter NAME=PATH_OR_HUB_ID, e.g. --adapter sst2=./lora-sst2")
        if not name:
            raise EnmpError(f"adapter argument {item!r} has an empty name", where="--adapter",
                            fix="write --adapter NAME=PATH_OR_HUB_ID")
        if not _NAME.match(name):
            raise EnmpError(f"adapter name {name!r} may only use letters, digits, '_', '-', '.', '+'",
                            where="--adapter", fix="rename it, e.g. --adapter sst2=PATH")
        if not path:
            raise EnmpError(f"adapter {name!r} has an empty path", where="--adapter",
                            fix="write --adapter NAME=PATH_OR_HUB_ID")
        if name in out:
            raise EnmpError(f"adapter name {name!r} is given twice", where="--adapter",
                            fix="give every adapter a unique name")
        out[name] = path
    return out
