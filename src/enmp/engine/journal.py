"""Crash-safe run state: after every generation the journal is rewritten atomically.

Commit protocol: the strategy state goes to `state/strategy-<gen>.pkl` first, then `state/journal.json`
(which names that file) replaces the old journal. A kill at any point leaves the previous generation's
journal and its strategy file intact, so `--resume` continues exactly where the journal says.
The strategy pickle is written by enmp itself (pycma's state has no other format); never resume a run
directory you did not create.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np

from ..errors import EnmpError
from ..io import atomic_write_bytes, atomic_write_json, atomic_write_text, read_json

STATE_DIR = "state"


def keep_to_str(keep: np.ndarray) -> str:
    return ";".join("".join("1" if v else "0" for v in row) for row in np.asarray(keep, dtype=bool))


def keep_from_str(text: str) -> np.ndarray:
    return np.array([[c == "1" for c in row] for row in text.split(";")], dtype=bool)


@dataclass
class Journal:
    run_dir: Path
    generation: int = 0
    evaluations: list[dict] = field(default_factory=list)  # every evaluated candidate, in order
    history: list[dict] = field(default_factory=list)  # one line per generation
    expert: dict = field(default_factory=dict)  # split → task → accuracy
    base: dict = field(default_factory=dict)  # split → task → accuracy of the full merge
    seconds: float = 0.0
    strategy_file: Optional[str] = None

    @property
    def state_dir(self) -> Path:
        return self.run_dir / STATE_DIR

    def save(self, strategy_state: Optional[bytes]) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        previous = self.strategy_file
        if strategy_state is not None:
            self.strategy_file = f"strategy-{self.generation:05d}.pkl"
            atomic_write_bytes(self.state_dir / self.strategy_file, strategy_state)
        atomic_write_json(self.state_dir / "journal.json", {
            "generation": self.generation, "seconds": self.seconds, "strategy_file": self.strategy_file,
            "expert": self.expert, "base": self.base, "history": self.history,
            "evaluations": self.evaluations})
        if previous and previous != self.strategy_file:
            (self.state_dir / previous).unlink(missing_ok=True)
        self.write_history()

    def write_history(self) -> None:
        atomic_write_text(self.run_dir / "history.jsonl", "".join(json.dumps(h) + "\n" for h in self.history))
        atomic_write_text(self.run_dir / "evaluations.jsonl",
                          "".join(json.dumps(e) + "\n" for e in self.evaluations))

    def strategy_state(self) -> Optional[bytes]:
        if not self.strategy_file:
            return None
        return (self.state_dir / self.strategy_file).read_bytes()

    @classmethod
    def load(cls, run_dir: Path) -> "Journal":
        path = run_dir / STATE_DIR / "journal.json"
        data = read_json(path, missing=EnmpError(
            f"{run_dir} has no saved search state ({STATE_DIR}/journal.json)", where="--resume",
            fix="pass a run directory of an interrupted `enmp search`, or start a new run"),
            corrupt=EnmpError("the search journal is corrupt", where=str(path),
                              fix="start the run again without --resume"))
        journal = cls(run_dir, data["generation"], data["evaluations"], data["history"], data["expert"],
                      data["base"], data["seconds"], data["strategy_file"])
        if journal.strategy_file and not (journal.state_dir / journal.strategy_file).is_file():
            raise EnmpError(f"strategy state {journal.strategy_file} is missing", where=str(path),
                            fix="start the run again without --resume")
        return journal
