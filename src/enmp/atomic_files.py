"""Atomic output helpers: write to a temporary sibling, then rename, so a crash never leaves half a file."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from .errors import EnmpError


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def read_json(path: Path, *, missing: EnmpError, corrupt: EnmpError) -> Any:
    """Load a JSON file enmp wrote, turning a missing or damaged file into the caller's one-line error."""
    if not path.is_file():
        raise missing
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise corrupt from None


def check_output_dir(path: str | os.PathLike, overwrite: bool, *, flag: str = "--out") -> Path:
    """Refuse to clobber: an existing non-empty dir needs --overwrite; a file in the way is always an error."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EnmpError(f"output path {path} is a file", where=flag, fix="choose a directory path")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise EnmpError(f"output directory {path} already exists", where=flag,
                        fix="pass --overwrite to replace it or choose another path")
    parent = path.resolve().parent
    probe = parent
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise EnmpError(f"cannot create {path}: {probe} is a file, not a directory", where=flag,
                        fix="choose a path whose parent folders are directories")
    if not os.access(probe, os.W_OK):
        raise EnmpError(f"cannot write under {probe}", where=flag, fix="choose a writable location")
    try:  # os.access says yes to root even on read-only or virtual file systems: really try
        os.rmdir(tempfile.mkdtemp(prefix=".enmp-probe-", dir=probe))
    except OSError as exc:
        raise EnmpError(f"cannot write under {probe} ({exc.strerror or type(exc).__name__})", where=flag,
                        fix="choose a writable location") from exc
    return path


def _write_failed(path: Path, exc: OSError, flag: str) -> EnmpError:
    reason = exc.strerror or type(exc).__name__
    return EnmpError(f"cannot write {path} ({reason})", where=flag,
                     fix="choose a writable location with free space (nothing there was changed)")


def _remove_empty(dirs: list[Path]) -> None:
    """Remove folders (deepest first) that were created for an output that then failed, if still empty."""
    for d in dirs:
        with contextlib.suppress(OSError):
            d.rmdir()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False, *, flag: str = "--out") -> Iterator[Path]:
    """Yield a temp dir next to `path`; on success it replaces `path`, on failure it is removed.

    The previous contents of `path` survive any failure: they are moved aside only after the new dir is
    complete, and deleted after the rename succeeded. Parent folders this call had to create are removed
    again on failure. OS errors (no space, read-only or virtual file systems) become one-line EnmpErrors.
    """
    path = check_output_dir(path, overwrite, flag=flag)
    created = [p for p in [path.parent, *path.parent.parents] if not p.exists()]
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        _remove_empty(created)
        raise _write_failed(path, exc, flag) from exc
    try:
        yield tmp
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        if isinstance(exc, OSError):
            raise _write_failed(path, exc, flag) from exc
        raise
    old = None
    try:
        if path.exists():
            old = path.parent / f".{path.name}.old-{os.getpid()}"
            os.replace(path, old)
        os.replace(tmp, path)
    except BaseException as exc:
        if old is not None and not path.exists():
            os.replace(old, path)
        shutil.rmtree(tmp, ignore_errors=True)
        _remove_empty(created)
        if isinstance(exc, OSError):
            raise _write_failed(path, exc, flag) from exc
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(path.parent)
