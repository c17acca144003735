"""Build the demo's train / val / test CSVs from the task readers in `sources`, deterministically.

Splits: every text gets a bucket from a seeded hash of its normalised form, shared by all tasks, so no text
(nor a duplicate of it inside another source, e.g. a WordNet gloss reused by two tasks) is ever in two
splits. Each split is then sampled class-balanced (round robin over shuffled classes) up to its cap.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import random
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

from ..errors import EnmpError
from ..atomic_files import atomic_write_json, atomic_write_text
from .sources import TASKS, WORDNET_PROVENANCE, Row, provenance, wordnet_available

__all__ = ["DEFAULT_SIZES", "DEFAULT_TASKS", "FALLBACK_TASKS", "FORMAT", "SPLITS", "TASKS", "DemoTask",
           "build_demo_data", "csv_text", "default_tasks", "read_split", "wordnet_available"]

FORMAT = 1
SPLITS = ("train", "val", "test")
DEFAULT_SIZES: dict[str, int] = {"train": 1600, "val": 150, "test": 400}
#: cumulative bucket bounds: 70 % of texts may go to train, 10 % to val, 20 % to test.
_BOUNDS = {"train": (0.0, 0.7), "val": (0.7, 0.8), "test": (0.8, 1.0)}

#: with WordNet: three WordNet tasks whose skill (part of speech out of context and in context, word ↔
#: definition match) lives in the LoRA rather than in the frozen embedding (expert ≫ frozen-base probe),
#: plus three tasks from other domains. Measured (benchmarks/demo_probe.py): the TA merge loses ~14 points
#: of normalized accuracy and single negative modules cost up to 1.5 of them.
DEFAULT_TASKS = ("tweet_sentiment", "question_type", "movie_review", "wn_pos", "wn_match", "wn_example_pos")
#: without WordNet (no apt): package-only tasks.
FALLBACK_TASKS = ("tweet_sentiment", "question_type", "movie_review", "amazon_sentiment", "sms_spam")


@dataclass
class DemoTask:
    """One task of the demo, with the provenance of its text."""

    name: str
    description: str
    labels: list[str]
    pair: bool
    package: str
    version: str
    license: str
    source_file: str
    sizes: dict[str, int] = field(default_factory=dict)


def _bucket(key: str, seed: int) -> float:
    h = hashlib.sha1(f"{seed}\0{key}".encode("utf-8")).digest()
    return int.from_bytes(h[:8], "big") / 2.0**64


def default_tasks(wn_dir: Path | None = None) -> tuple[str, ...]:
    return DEFAULT_TASKS if wordnet_available(wn_dir) else FALLBACK_TASKS


def _split_rows(rows: Iterable[Row], seed: int, sizes: Mapping[str, int], task: str) -> dict[str, list[Row]]:
    seen: dict[str, Row | None] = {}
    for r in rows:
        if len(r[3]) < 3:
            continue
        prev = seen.get(r[3], r)
        seen[r[3]] = r if prev is r or (prev is not None and prev[2] == r[2]) else None  # label clash → drop
    pools: dict[str, dict[str, list[Row]]] = {s: defaultdict(list) for s in SPLITS}
    for k in sorted(seen):
        r = seen[k]
        if r is None:
            continue
        u = _bucket(k, seed)
        split = next(s for s, (lo, hi) in _BOUNDS.items() if lo <= u < hi)
        pools[split][r[2]].append(r)
    out = {}
    for split in SPLITS:
        rng = random.Random(f"{seed}:{task}:{split}")
        classes = [pools[split][c] for c in sorted(pools[split])]
        for c in classes:
            rng.shuffle(c)
        picked: list[Row] = []
        i = 0
        while len(picked) < sizes[split] and any(i < len(c) for c in classes):
            picked += [c[i] for c in classes if i < len(c)][: sizes[split] - len(picked)]
            i += 1
        rng.shuffle(picked)
        out[split] = picked
    return out


def csv_text(rows: list[Row], pair: bool) -> str:
    """A split's CSV (header text[,text_pair],label), as the demo writes it and `read_split` reads it."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["text", "text_pair", "label"] if pair else ["text", "label"])
    for t, p, lab, _ in rows:
        w.writerow([t, p, lab] if pair else [t, lab])
    return buf.getvalue()


def build_demo_data(data_dir: Path, seed: int = 0, sizes: Mapping[str, int] | None = None,
                    tasks: Iterable[str] | None = None) -> list[DemoTask]:
    """Write `<data_dir>/<task>/{train,val,test}.csv` and `manifest.json`; return the tasks.

    Idempotent: when the manifest records the same seed, sizes and task list (and the CSVs exist) nothing is
    rebuilt. The manifest is written last, so an interrupted build is simply redone.
    """
    data_dir = Path(data_dir)
    sizes = {**DEFAULT_SIZES, **(sizes or {})}
    names = list(tasks) if tasks is not None else list(default_tasks())
    unknown = [n for n in names if n not in TASKS]
    if unknown:
        raise EnmpError(f"unknown demo task(s) {unknown}", where="demo data", fix=f"choose from {sorted(TASKS)}")
    want = {"format": FORMAT, "seed": seed, "sizes": sizes, "task_names": names}
    man_path = data_dir / "manifest.json"
    if man_path.is_file():
        try:
            man = json.loads(man_path.read_text())
            if all(man.get(k) == v for k, v in want.items()) and all(
                    (data_dir / n / f"{s}.csv").is_file() for n in names for s in SPLITS):
                return [DemoTask(**t) for t in man["tasks"]]
        except (ValueError, KeyError, TypeError):
            pass
        # the old manifest must not vouch for CSVs this build is about to replace (an interrupted rebuild
        # with other settings would otherwise pass as the old data on the next call)
        man_path.unlink()
    out = []
    for name in names:
        fn, desc, pair, dist, src = TASKS[name]
        splits = _split_rows(fn(), seed, sizes, name)
        labels = sorted({r[2] for rows in splits.values() for r in rows})
        if len(labels) < 2 or any(not splits[s] for s in SPLITS):
            raise EnmpError(f"demo task {name} produced too little data", where="demo data")
        for s in SPLITS:
            atomic_write_text(data_dir / name / f"{s}.csv", csv_text(splits[s], pair))
        pkg, ver, lic = WORDNET_PROVENANCE if dist is None else (dist, *provenance(dist))
        out.append(DemoTask(name, desc, labels, pair, pkg, ver, lic, src,
                            {s: len(splits[s]) for s in SPLITS}))
    atomic_write_json(man_path, {**want, "tasks": [asdict(t) for t in out]})
    return out


def read_split(task_dir: Path, split: str) -> tuple[list[str], list[str] | None, list[str]]:
    """(texts, text_pairs or None, label names) of one split CSV."""
    with open(Path(task_dir) / f"{split}.csv", encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    pairs = [r["text_pair"] for r in rows] if rows and "text_pair" in rows[0] else None
    return [r["text"] for r in rows], pairs, [r["label"] for r in rows]
