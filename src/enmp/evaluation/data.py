"""Load a task's labelled splits through Hugging Face `datasets` (local csv/json/parquet or a hub id)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..config import DataConfig
from ..errors import EnmpError

_FORMATS = {".csv": "csv", ".tsv": "csv", ".json": "json", ".jsonl": "json", ".parquet": "parquet"}


@dataclass
class Examples:
    """One split of one task, sampled and with labels mapped to class indices."""

    texts: Optional[list[str]]
    pairs: Optional[list[str]]
    images: Optional[list[Any]]
    labels: list[int]

    def __len__(self) -> int:
        return len(self.labels)


def _no_rows(path: Path, fmt: str) -> bool:
    """True for a text data file without a single example (`datasets` fails obscurely on those)."""
    lines = [ln for ln in path.read_text(encoding="utf-8", errors="replace").splitlines() if ln.strip()]
    if fmt == "csv":
        return len(lines) <= 1  # nothing, or a header only
    return not lines or "".join(lines).replace(" ", "") in ("[]", "{}")


def _load_split(cfg: DataConfig, split: str, where: str):
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    try:
        if cfg.files is not None:
            if split not in cfg.files:
                raise EnmpError(f"no file for split '{split}'", where=f"{where}.data.files",
                                fix=f"add a '{split}:' entry with a csv/json/parquet file")
            path = Path(cfg.files[split])
            if not path.is_file():
                raise EnmpError(f"data file {path} not found", where=f"{where}.data.files.{split}",
                                fix="check the path (relative paths are resolved against the config file's "
                                    "directory)")
            fmt = _FORMATS.get(path.suffix.lower())
            if fmt is None:
                raise EnmpError(f"unsupported data file type '{path.suffix}'", where=str(path),
                                fix="use .csv, .tsv, .json, .jsonl or .parquet")
            if fmt != "parquet" and _no_rows(path, fmt):
                raise EnmpError(f"the {split} split is empty (no rows in {path.name})",
                                where=f"{where}.data.files.{split}", fix="provide labelled examples")
            kwargs = {"delimiter": "\t"} if path.suffix.lower() == ".tsv" else {}
            return datasets.load_dataset(fmt, data_files={"data": str(path)}, split="data", **kwargs)
        name = cfg.splits.get(split, split)
        return datasets.load_dataset(cfg.hub, cfg.subset, split=name)
    except EnmpError:
        raise
    except Exception as e:  # datasets raises many types; the user needs one line
        src = cfg.files.get(split) if cfg.files else cfg.hub
        raise EnmpError(f"cannot load split '{split}' ({type(e).__name__}: {str(e).splitlines()[0][:200]})",
                        where=f"{where}: {src}", fix="check the data path/id and its format") from None


def _column(ds, name: str, where: str, role: str) -> list:
    if name not in ds.column_names:
        raise EnmpError(f"dataset has no {role} column '{name}' (columns: {', '.join(ds.column_names)})",
                        where=where, fix=f"set data.{role} to the right column name")
    return list(ds[name])


def _label_indices(values: Sequence, labels: Sequence[str], where: str) -> list[int]:
    index = {name: i for i, name in enumerate(labels)}
    out = []
    for v in values:
        if isinstance(v, bool):
            v = int(v)
        if isinstance(v, (int,)) or (isinstance(v, float) and float(v).is_integer()):
            i = int(v)
            if not 0 <= i < len(labels):
                raise EnmpError(f"label {i} is outside the head's {len(labels)} classes", where=where,
                                fix="use class indices 0..C-1 or label names from the head")
            out.append(i)
        elif str(v) in index:
            out.append(index[str(v)])
        else:
            raise EnmpError(f"label '{v}' is not one of the head's classes {list(labels)}", where=where,
                            fix="fix the data or the task's labels list")
    return out


def load_examples(cfg: DataConfig, split: str, labels: Sequence[str], *, max_samples: Optional[int],
                  seed: int, where: str) -> Examples:
    """Load one split, check its columns, draw `max_samples` with a fixed seed, map labels to indices."""
    ds = _load_split(cfg, split, where)
    src = f"{where} ({split})"
    if len(ds) == 0:
        raise EnmpError(f"the {split} split is empty", where=src, fix="provide labelled examples")
    if cfg.skip_labels:
        _column(ds, cfg.label, src, "label")  # a clear error when the column is missing
        skip = {str(v) for v in cfg.skip_labels}
        ds = ds.filter(lambda row: str(row[cfg.label]) not in skip)
        if len(ds) == 0:
            raise EnmpError(f"the {split} split is empty after dropping labels {cfg.skip_labels}", where=src,
                            fix="check data.skip_labels")
    if max_samples is not None:
        if len(ds) < max_samples:
            raise EnmpError(f"the {split} split has {len(ds)} examples, fewer than the {max_samples} requested",
                            where=src, fix=f"lower eval.{split}_samples or leave it empty to use all")
        ds = ds.shuffle(seed=seed).select(range(max_samples))
    label_values = _column(ds, cfg.label, src, "label")
    texts = _column(ds, cfg.text, src, "text") if cfg.text and cfg.image is None else None
    pairs = _column(ds, cfg.text_pair, src, "text_pair") if cfg.text_pair else None
    images = _column(ds, cfg.image, src, "image") if cfg.image else None
    if texts is not None and any(t is None for t in texts):
        raise EnmpError("the text column has empty values", where=src)
    return Examples(texts, pairs, images, _label_indices(label_values, labels, src))
