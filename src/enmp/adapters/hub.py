"""Turn a user's "path or hub id" into a local directory.

Local directories always win, so a folder named like "org/name" is never shadowed by the hub. Downloads
are limited to safetensors, JSON and tokenizer files: enmp never reads pickled weights, so it never
fetches them either (they can be large and are unsafe to unpickle).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Sequence

from ..errors import EnmpError, first_line

# What a snapshot download fetches by default: weights (safetensors only), configs, tokenizers, processors.
DEFAULT_ALLOW_PATTERNS: tuple[str, ...] = (
    "*.safetensors", "*.json", "*.txt", "*.model", "*.tiktoken", "tokenizer*", "*.md",
)
PICKLE_PATTERNS: tuple[str, ...] = ("*.bin", "*.pt", "*.pth")

# "org/name" with Hub-legal characters; no leading "." / "/" / "~" and no "..", which mean local paths.
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]{0,95}/[A-Za-z0-9][\w.-]{0,95}$")

_FIX = "check the path, or set HF_HUB_OFFLINE=0 / log in (`hf auth login`) to download it"


def looks_like_hub_id(text: str) -> bool:
    """True for "org/name" strings that could be a Hub repo (and are not obviously a local path)."""
    return bool(_HUB_ID.match(text)) and ".." not in text and not text.endswith((".", "-"))


def hub_offline() -> bool:
    """Read HF_HUB_OFFLINE at call time (huggingface_hub caches it at import, which tests can't change)."""
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in {"1", "ON", "YES", "TRUE"}


def resolve_dir(path_or_id: str | os.PathLike, *, what: str, revision: str | None = None,
                allow_pickle: bool = False, allow_patterns: Sequence[str] | None = None) -> Path:
    """Return a local directory for `path_or_id`, downloading a Hub snapshot if it is not a local folder.

    `what` names the thing for error messages ("base model", "adapter 'sst2'"). With HF_HUB_OFFLINE=1
    only the local Hub cache is consulted. Every failure is an EnmpError, never a raw hub exception.
    """
    text = str(path_or_id).strip()
    if not text:
        raise EnmpError(f"empty path for {what}", fix="pass a local directory or a Hub id like org/name")
    path = Path(text).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise EnmpError(f"{what} path '{text}' is a file, not a directory",
                        fix="pass the directory that holds config and safetensors files")
    if not looks_like_hub_id(text):
        raise EnmpError(f"cannot find {what} '{text}': no such directory",
                        fix="check the path (a Hub id must look like org/name)")
    patterns = list(allow_patterns or DEFAULT_ALLOW_PATTERNS)
    if allow_pickle:
        patterns += list(PICKLE_PATTERNS)
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(repo_id=text, revision=revision, allow_patterns=patterns,
                                  local_files_only=hub_offline())
    except Exception as exc:  # offline, 404, gated, auth, disk: all explained the same way
        raise EnmpError(f"cannot find {what} '{text}': not a local directory and the hub download failed "
                        f"({first_line(exc, 300, with_type=True)})", fix=_FIX) from exc
    return Path(local)
