"""The one definition of a run's report (`report.json`): what `enmp search` found and the scores behind it.

Every score block has, per split, raw accuracies (%), normalized accuracies (merged ÷ expert × 100) and
their means; `mean_normalized` on `val` is the fitness the search maximises. The engine builds a
`RunReport`, `report.json` is its JSON, and tables, plots, the demo and benchmarks read its fields.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from ...errors import EnmpError
from ...atomic_files import atomic_write_json, read_json


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scores(_Model):
    """One merge on one split (see `evaluation.summary`); `std` only for the random baseline's mean."""

    raw: dict[str, float]
    normalized: dict[str, float]
    mean_raw: float
    mean_normalized: float
    std: Optional[float] = None


class SplitScores(_Model):
    val: Scores
    test: Scores


class Baseline(SplitScores):
    """A comparison merge: random masks at the search's sparsity (mean over repeats), or greedy pruning."""

    n_pruned: int
    repeats: Optional[int] = None


class ExpectedGain(_Model):
    """The gain (mean normalized accuracy points over the full merge) to expect on new data, with a `level`
    interval, from validation examples the decision did not fit (`basis` says which)."""

    value: float
    low: float
    high: float
    level: float
    basis: str


class RunReport(_Model):
    tasks: list[str]
    method: str
    strategy: str
    params: dict[str, Union[float, int, str, bool, None]]
    layers: list[Union[int, str]]
    pruned: list[tuple[str, Union[int, str]]]  # (task, layer or group label) of every pruned module
    evaluations: int  # candidates the strategy asked for
    forward_evaluations: int  # of those, the ones that ran the model (the rest came from the cache)
    cost: dict[str, int]  # the search's work: {"examples", "layer_examples"} (see `engine.evaluator.Cost`)
    seconds: float  # search loop
    total_seconds: float  # with reference scores and baselines
    expert: dict[str, dict[str, float]]  # split → task → each expert alone
    base: SplitScores  # the full merge
    enmp: SplitScores  # the merge with the found mask
    random: Optional[Baseline] = None
    greedy: Optional[Baseline] = None
    decision: Optional[str] = None  # how the strategy chose its answer, when it says (e.g. `fast`'s final check)
    expected_gain: Optional[ExpectedGain] = None  # strategies that estimate it from data the decision did not fit
    evidence: Optional[dict] = None  # what the strategy decided on (e.g. crossfit's held-out gain and folds)

    def gain(self, split: str) -> float:
        """The found mask's mean normalized accuracy on `split` minus the full merge's."""
        return getattr(self.enmp, split).mean_normalized - getattr(self.base, split).mean_normalized

    def save(self, path: Path) -> None:
        atomic_write_json(path, self.model_dump(mode="json", exclude_none=True))

    @classmethod
    def load(cls, run_dir: Union[str, Path]) -> "RunReport":
        path = Path(run_dir) / "report.json"
        data = read_json(path, missing=EnmpError(
            f"{path} not found", where="enmp report",
            fix="pass a run directory written by `enmp search` (it may still be running)"),
            corrupt=EnmpError("report.json is not valid JSON", where=str(path),
                              fix="re-run `enmp search --resume` on the run directory to rewrite it"))
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            first = e.errors()[0]
            where = ".".join(str(x) for x in first["loc"]) or "(top level)"
            raise EnmpError(f"report.json is not an enmp run report ({where}: {first['msg']})", where=str(path),
                            fix="pass a run directory written by `enmp search`") from None
