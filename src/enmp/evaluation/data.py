"""Load a task's labelled splits through Hugging Face `datasets` (local csv/json/parquet or a hub id)."""

from __future__ import annotations

import math
import numbers
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..data_config import DataConfig
from ..errors import EnmpError, first_line

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

    def subset(self, index: Sequence[int]) -> "Examples":
        pick = (lambda xs: None if xs is None else [xs[i] for i in index])
        return Examples(pick(self.texts), pick(self.pairs), pick(self.images), [self.labels[i] for i in index])



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
        raise EnmpError(f"cannot load split '{split}' ({first_line(e, with_type=True)})",
                        where=f"{where}: {src}", fix="check the data path/id and its format") from None


def _column(ds, name: str, where: str, role: str) -> list:
    if name not in ds.column_names:
        raise EnmpError(f"dataset has no {role} column '{name}' (columns: {', '.join(ds.column_names)})",
                        where=where, fix=f"set data.{role} to the right column name")
    return list(ds[name])


_INT = re.compile(r"[+-]?\d+")
_CHOOSE = ("set data.label_is_index: true if the column holds class indices 0..C-1, or write the labels as the "
           "head's label names")


def _key(v: Any, column: str, where: str) -> Optional[tuple[str, Optional[int]]]:
    """One label cell as (text, integer or None); None for an empty cell. Whole floats (2.0) are integers."""
    if v is None or (isinstance(v, numbers.Real) and not isinstance(v, numbers.Integral) and math.isnan(v)):
        return None
    if isinstance(v, bool):
        v = int(v)
    if isinstance(v, numbers.Integral):
        return str(int(v)), int(v)
    if isinstance(v, numbers.Real):  # a csv column with blanks, or written as 1.0, 2.0, is read as floats
        if not float(v).is_integer():
            raise EnmpError(f"label {v} in column '{column}' is not a whole number", where=where,
                            fix="labels must be the head's label names or integer class indices")
        return str(int(v)), int(v)
    if isinstance(v, str):
        s = v.strip()
        return None if not s else (v, int(s) if _INT.fullmatch(s) else None)
    raise EnmpError(f"label {v!r} in column '{column}' is a {type(v).__name__}, not a class name or index",
                    where=where, fix="labels must be the head's label names or integer class indices")


def _show(raw: Any) -> str:
    return repr(raw) if isinstance(raw, str) else str(raw)


def _label_mapping(values: Sequence, labels: Sequence[str], *, column: str, as_index: bool,
                   where: str) -> dict[tuple[str, Optional[int]], int]:
    """Decide once for the whole column how its values name classes; returns value key → class index.

    A value equal to a label name (as text) is that class. Integers are class indices only when the names are
    exactly "0".."C-1" (then both readings agree), when `as_index` (data.label_is_index), or when no value is a
    name and the names are not numbers. A column whose values could be read both ways, with different results,
    is an error: the user must choose.
    """
    n = len(labels)
    index = {name: i for i, name in enumerate(labels)}
    stripped: dict[str, int] = {}
    for i, name in enumerate(labels):
        stripped.setdefault(name.strip(), i)
    raw: dict[tuple[str, Optional[int]], Any] = {}
    for v in values:
        k = _key(v, column, where)
        if k is None:
            raise EnmpError(f"label column '{column}' has empty values", where=where,
                            fix="fill them in, or drop those rows with data.skip_labels: ['']")
        raw.setdefault(k, v)
    if as_index:
        bad = next((k for k in raw if k[1] is None or not 0 <= k[1] < n), None)
        if bad is not None:
            raise EnmpError(f"label {_show(raw[bad])} in column '{column}' is not a class index 0..{n - 1} "
                            f"(the head has {n} classes)", where=where,
                            fix="data.label_is_index is true: use indices 0..C-1, or set it to false to match "
                                "the head's label names")
        return {k: k[1] for k in raw}
    named = {k: index.get(k[0], stripped.get(k[0].strip())) for k in raw}
    unnamed = [k for k in raw if named[k] is None]
    if not unnamed:
        return named  # every value is a label name: names win
    bad = next((k for k in unnamed if k[1] is None or not 0 <= k[1] < n), None)
    if bad is not None:
        nor = f" nor a class index 0..{n - 1} ({n} classes)" if bad[1] is not None else ""
        shown = list(labels) if n <= 20 else [*labels[:20], "..."]
        raise EnmpError(f"label {_show(raw[bad])} in column '{column}' is not one of the head's classes "
                        f"{shown}{nor}", where=where,
                        fix="fix the data or the task's labels list (or drop such rows with data.skip_labels)")
    # every value that is no label name is a valid class index
    u = unnamed[0]
    two_way = next((k for k in raw if named[k] is not None and k[1] is not None and named[k] != k[1]), None)
    if two_way is not None:
        k = two_way
        raise EnmpError(f"label column '{column}' mixes label names and class indices: {_show(raw[k])} read as "
                        f"the label name '{labels[named[k]]}' is class {named[k]}, read as a class index it is "
                        f"class {k[1]} ('{labels[k[1]]}'), and {_show(raw[u])} is no label name, only an index",
                        where=where, fix=_CHOOSE)
    if all(_INT.fullmatch(name.strip()) for name in labels) and list(labels) != [str(i) for i in range(n)]:
        raise EnmpError(f"label {_show(raw[u])} in column '{column}' is none of the head's label names "
                        f"(numbers, e.g. '{labels[0]}'); read as a class index it would be class "
                        f"'{labels[u[1]]}'", where=where, fix=_CHOOSE)
    word = next((k for k in raw if named[k] is not None and k[1] is None), None)
    if word is not None:
        raise EnmpError(f"label column '{column}' mixes label names ({_show(raw[word])}) and class indices "
                        f"({_show(raw[u])})", where=where,
                        fix="write all labels as the head's label names, or all as indices 0..C-1 with "
                            "data.label_is_index: true")
    return {k: k[1] for k in raw}  # class indices (any value that is also a name reads the same both ways)


def _skipped(v: Any, skip: list, column: str, where: str) -> bool:
    k = _key(v, column, where)
    if k is None:
        return None in skip
    return any(s is not None and (s[0].strip() == k[0].strip() or (s[1] is not None and s[1] == k[1]))
               for s in skip)


def _class_label_names(ds, column: str) -> Optional[list[str]]:
    """The names of a `datasets.ClassLabel` column (its integers are indices into them), else None."""
    feature = ds.features.get(column) if getattr(ds, "features", None) else None
    return [str(x) for x in feature.names] if type(feature).__name__ == "ClassLabel" else None


def load_examples(cfg: DataConfig, split: str, labels: Sequence[str], *, max_samples: Optional[int],
                  seed: int, where: str) -> Examples:
    """Load one split, check its columns, draw `max_samples` with a fixed seed, map labels to indices."""
    ds = _load_split(cfg, split, where)
    src = f"{where} ({split})"
    if len(ds) == 0:
        raise EnmpError(f"the {split} split is empty", where=src, fix="provide labelled examples")
    column = _column(ds, cfg.label, src, "label")
    if cfg.skip_labels:
        skip = [_key(v, cfg.label, f"{where}.data.skip_labels") for v in cfg.skip_labels]
        keep = [i for i, v in enumerate(column) if not _skipped(v, skip, cfg.label, src)]
        if not keep:
            raise EnmpError(f"the {split} split is empty after dropping labels {cfg.skip_labels}", where=src,
                            fix="check data.skip_labels")
        if len(keep) < len(column):
            ds, column = ds.select(keep), [column[i] for i in keep]
    as_index, decode = cfg.label_is_index, (lambda v: v)
    class_names = _class_label_names(ds, cfg.label)
    if class_names is not None and not as_index:  # datasets says these integers index its own class names
        known = {name.strip() for name in labels}
        if all(name.strip() in known for name in class_names):
            def decode(v, _names=class_names):
                ok = isinstance(v, numbers.Integral) and not isinstance(v, bool) and 0 <= v < len(_names)
                return _names[v] if ok else v
        else:
            as_index = True
    mapping = _label_mapping([decode(v) for v in column], labels, column=cfg.label, as_index=as_index, where=src)
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
    classes = [mapping[_key(decode(v), cfg.label, src)] for v in label_values]
    return Examples(texts, pairs, images, classes)
