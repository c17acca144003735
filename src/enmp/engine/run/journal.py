"""Crash-safe run state: append-only logs plus a small commit record (the model of Optuna's journal storage).

After each generation its evaluation lines are appended to `evaluations.jsonl` and its line to
`history.jsonl` (visible at once to a reader of the logs). A commit makes them durable: the logs are fsynced,
then `state/journal.json` — generation, time, reference scores and the committed length of each log —
atomically replaces the old one: O(one generation) of writing, not a rewrite. Commits are grouped in time
(`COMMIT_EVERY_S`, as databases group their commits): a round slower than that is committed on its own, while
a run of fast rounds shares one commit instead of paying four fsyncs each, and `flush` commits what is left.
A kill leaves a tail past the committed lengths; loading cuts it off, so a resumed run ends with the very
logs of an uninterrupted one (at most the last `COMMIT_EVERY_S` of search is done again). Nothing else is
saved: every strategy is seeded, so `--resume` rebuilds it from config.yaml and replays the logged fitnesses
(`loop.search`); nothing is unpickled.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import EnmpError
from ...atomic_files import atomic_write_json, read_json

STATE_DIR = "state"
FORMAT = "enmp.journal/3"
LOGS = {"evaluations": "evaluations.jsonl", "history": "history.jsonl"}  # journal field → log file


COMMIT_EVERY_S = 1.0  # seconds of finished search a kill may cost, traded for fsyncs on fast rounds
_FIX = "start the run again without --resume (or in a new directory)"


@dataclass
class Journal:
    run_dir: Path
    generation: int = 0
    evaluations: list[dict] = field(default_factory=list)  # every evaluated candidate, in order
    history: list[dict] = field(default_factory=list)  # one line per generation
    expert: dict = field(default_factory=dict)  # split → task → accuracy
    base: dict = field(default_factory=dict)  # split → task → accuracy of the full merge
    base_correct: list = field(default_factory=list)  # the full merge's right/wrong per validation example (packed)
    seconds: float = 0.0
    sizes: dict = field(default_factory=lambda: dict.fromkeys(LOGS, 0))  # appended bytes per log
    pending: bool = False  # rounds appended since the last commit
    committed_at: float = field(default_factory=time.monotonic)

    @property
    def state_dir(self) -> Path:
        return self.run_dir / STATE_DIR

    def start(self) -> None:
        """A new run: empty logs and the generation-0 commit (expert and base scores)."""
        for name in LOGS.values():
            (self.run_dir / name).write_bytes(b"")
        self.commit()

    def append(self, evaluations: list[dict], line: dict) -> None:
        """One finished generation: append it to the logs; commit when `COMMIT_EVERY_S` has passed since the
        last commit (only a commit makes it count)."""
        for key, rows in (("evaluations", evaluations), ("history", [line])):
            with open(self.run_dir / LOGS[key], "ab") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in rows).encode("utf-8"))
                self.sizes[key] = fh.tell()
        self.evaluations.extend(evaluations)
        self.history.append(line)
        self.generation, self.seconds = line["generation"], line["elapsed"]
        self.pending = True
        if time.monotonic() - self.committed_at >= COMMIT_EVERY_S:
            self.commit()

    def flush(self) -> None:
        """Commit the rounds appended since the last commit (the end of a search, or its interruption)."""
        if self.pending:
            self.commit()

    def __enter__(self) -> "Journal":
        return self

    def __exit__(self, *exc) -> None:  # what finished is kept, also when the search is interrupted
        self.flush()

    def commit(self) -> None:
        """Make every appended round durable: the logs first, then the record that says how far they count."""
        for name in LOGS.values():
            with open(self.run_dir / name, "rb") as fh:
                os.fsync(fh.fileno())
        atomic_write_json(self.state_dir / "journal.json", {
            "format": FORMAT, "generation": self.generation, "seconds": self.seconds, "expert": self.expert,
            "base": self.base, "base_correct": self.base_correct,
            "logs": {k: {"bytes": self.sizes[k], "lines": len(getattr(self, k))} for k in LOGS}})
        self.pending, self.committed_at = False, time.monotonic()

    def rewind(self, generation: int) -> None:
        """Forget every round after `generation`: commit the logs' prefix up to it, so that loading cuts off
        the rest as it cuts off an uncommitted tail."""
        kept = {"evaluations": sum(e["generation"] <= generation for e in self.evaluations), "history": generation}
        for key, name in LOGS.items():
            with open(self.run_dir / name, "rb") as fh:
                self.sizes[key] = sum(map(len, fh.read().splitlines(keepends=True)[: kept[key]]))
            setattr(self, key, getattr(self, key)[: kept[key]])
        self.generation = generation
        self.seconds = self.history[-1]["elapsed"] if self.history else 0.0
        self.commit()

    def mismatch(self, generation: int, what: str) -> EnmpError:
        """The journal and a replay of the rebuilt strategy disagree: edited, or from another version."""
        return EnmpError(f"the journal disagrees with a replay of the search at generation {generation} ({what})",
                         where=f"--resume {self.run_dir}",
                         fix="it was written by another enmp/pycma version or edited; " + _FIX)

    @classmethod
    def load(cls, run_dir: Path) -> "Journal":
        """The committed state; a log's uncommitted tail (a kill between append and commit) is cut off."""
        path = run_dir / STATE_DIR / "journal.json"
        corrupt = EnmpError("the search journal is corrupt", where=str(path), fix=_FIX)
        data = read_json(path, missing=EnmpError(
            f"{run_dir} has no saved search state ({STATE_DIR}/journal.json)", where="--resume",
            fix="pass a run directory of an interrupted `enmp search`, or start a new run"), corrupt=corrupt)
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise EnmpError("the search journal is from another enmp version", where=str(path), fix=_FIX)
        try:
            journal = cls(run_dir, int(data["generation"]), expert=data["expert"], base=data["base"],
                          base_correct=list(data["base_correct"]), seconds=float(data["seconds"]))
            committed_logs = {key: (int(data["logs"][key]["bytes"]), int(data["logs"][key]["lines"])) for key in LOGS}
        except (KeyError, TypeError, ValueError):
            raise corrupt from None
        for key, name in LOGS.items():
            log, (size, lines) = run_dir / name, committed_logs[key]
            if not log.is_file() or log.stat().st_size < size:
                raise EnmpError(f"{name} is shorter than its journal says", where=str(run_dir), fix=_FIX)
            with open(log, "r+b") as fh:
                fh.truncate(size)
                os.fsync(fh.fileno())
                fh.seek(0)
                text = fh.read().decode("utf-8", errors="replace")
            try:
                rows = [json.loads(row) for row in text.splitlines()]
            except json.JSONDecodeError:
                raise EnmpError(f"{name} is corrupt", where=str(run_dir), fix=_FIX) from None
            if len(rows) != lines:
                raise corrupt
            setattr(journal, key, rows)
            journal.sizes[key] = size
        if len(journal.history) != journal.generation:
            raise corrupt
        return journal
