"""Where a task's labelled examples come from (the `data:` section of a task in a run config).

It sits below both the config and the evaluation layer: the config validates it, the evaluation layer loads
examples with it, and neither has to import the other for that.
"""

from __future__ import annotations

from typing import Optional, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StrictModel(BaseModel):
    """Config sections: unknown keys and wrong types are errors, assignments are validated too."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(StrictModel):
    """Where a task's labelled examples come from: local files per split, or a hub/`datasets` id."""

    files: Optional[dict[str, str]] = None  # split name → csv/json/jsonl/parquet file
    hub: Optional[str] = None  # dataset id (or local dataset dir) for datasets.load_dataset
    subset: Optional[str] = None
    splits: dict[str, str] = Field(default_factory=lambda: {"val": "val", "test": "test"})
    text: Optional[str] = "text"
    text_pair: Optional[str] = None
    image: Optional[str] = None
    label: str = "label"
    label_is_index: bool = False  # true: integer labels are class indices 0..C-1, never label names
    skip_labels: Optional[list[Union[int, str]]] = None  # rows to drop before sampling (e.g. SNLI's −1)

    @model_validator(mode="after")
    def _one_source(self):
        if (self.files is None) == (self.hub is None):
            raise ValueError("give exactly one of data.files (local files per split) or data.hub")
        return self


