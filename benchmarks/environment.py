"""What a benchmark ran on: the machine, the library versions and a digest of its input files.

On one machine CPU forward passes are bit-reproducible (a search re-run in the same session writes a
byte-identical journal, whatever ran before it in the process), but float kernels differ between CPU types and
library versions, so between sessions a borderline example can flip and a search take another path. Results
files carry these facts so that such a difference can be traced to its cause.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
from pathlib import Path
from typing import Iterable

LIBRARIES = ("torch", "transformers", "peft", "numpy", "cma")
#: CPU flags that choose the float kernels MKL / oneDNN run
KERNEL_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


def _cpuinfo() -> dict[str, str]:
    path = Path("/proc/cpuinfo")
    if not path.is_file():
        return {}
    first = path.read_text().split("\n\n", 1)[0]
    return {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in first.splitlines())}


def machine(**extra) -> dict:
    """CPU model and kernel flags, cores, Python and library versions (plus `extra`, e.g. threads, device)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    versions = {}
    for lib in LIBRARIES:
        try:
            versions[lib] = importlib.metadata.version(lib)
        except importlib.metadata.PackageNotFoundError:
            versions[lib] = None
    return {"cpu": info.get("model name") or platform.processor() or "?", "cpu_flags": [f for f in KERNEL_FLAGS if f in flags],
            "cores": os.cpu_count(), "python": platform.python_version(), **versions, **extra}


def files_digest(paths: Iterable[Path]) -> str:
    """sha256 over the files' names and bytes, in sorted order: equal digests, equal inputs."""
    h = hashlib.sha256()
    for p in sorted(Path(p) for p in paths):
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()
