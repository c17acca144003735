"""Label values that are numbers: a value equal to a label name is that class; indices only when unambiguous."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from enmp.config import DataConfig, TaskConfig
from enmp.engine.loading.workspace import build_task
from enmp.errors import EnmpError
from enmp.evaluation import load_examples, load_head

RATINGS = ["1", "2", "3", "4", "5"]
WORDNET = ["30", "32", "35", "38", "40", "41"]


def _csv(tmp_path: Path, labels: list, name: str = "val.csv") -> Path:
    path = tmp_path / name
    path.write_text("text,label\n" + "".join(f"row {i},{'' if v is None else v}\n" for i, v in enumerate(labels)))
    return path


def _load(tmp_path: Path, values: list, names: list[str], max_samples=None, task: str = "t", **data) -> list[int]:
    cfg = DataConfig(files={"val": str(_csv(tmp_path, values))}, **data)
    return load_examples(cfg, "val", names, max_samples=max_samples, seed=0, where=f"task '{task}'").labels


def test_ratings_named_1_to_5_map_by_name(tmp_path):
    assert _load(tmp_path, [1, 2, 3, 4, 5, 1], RATINGS) == [0, 1, 2, 3, 4, 0]
    # without a 5 in the data the value 1 is still the class named "1", never index 1 = "2"
    assert _load(tmp_path, [1, 2, 1, 3], RATINGS) == [0, 1, 0, 2]


def test_names_0_to_c_minus_1_take_integer_values_as_before(tmp_path):
    assert _load(tmp_path, [0, 2, 1, 0], ["0", "1", "2"]) == [0, 2, 1, 0]


def test_wordnet_like_numbers_map_by_name(tmp_path):
    assert _load(tmp_path, [35, 30, 41, 38, 32, 40], WORDNET) == [2, 0, 5, 3, 1, 4]


def test_integer_indices_with_word_names_still_index(tmp_path):
    assert _load(tmp_path, [0, 2, 1], ["entailment", "neutral", "contradiction"]) == [0, 2, 1]


def test_mixed_column_where_readings_differ_is_an_error(tmp_path):
    # 0 is only an index (no class "0"), 1 is both the name "1" (class 0) and the index 1 (class "2")
    with pytest.raises(EnmpError, match=r"task 'ratings'.*column 'label'.*1 read as the label name '1' is class 0, "
                                        r"read as a class index it is class 1 \('2'\).*0 is no label name.*"
                                        r"data\.label_is_index: true.*label names"):
        _load(tmp_path, [0, 1, 2, 3, 4], RATINGS, task="ratings")


def test_indices_for_numeric_names_need_label_is_index(tmp_path):
    with pytest.raises(EnmpError, match=r"task 'wn'.*label 0 in column 'label' is none of the head's label names.*"
                                        r"class '30'.*label_is_index"):
        _load(tmp_path, [0, 2, 5], WORDNET, task="wn")


def test_label_is_index_forces_the_index_reading(tmp_path):
    assert _load(tmp_path, [1, 2, 3, 4], RATINGS, label_is_index=True) == [1, 2, 3, 4]
    assert _load(tmp_path, [0, 1, 2, 3, 4], RATINGS, label_is_index=True) == [0, 1, 2, 3, 4]
    assert _load(tmp_path, [0, 5, 2], WORDNET, label_is_index=True) == [0, 5, 2]
    with pytest.raises(EnmpError, match=r"label 5 in column 'label' is not a class index 0\.\.4"):
        _load(tmp_path, [1, 5], RATINGS, label_is_index=True)
    with pytest.raises(EnmpError, match=r"'neg'.*not a class index"):
        _load(tmp_path, ["neg", "pos"], ["neg", "pos"], label_is_index=True)


def test_float_column_of_whole_numbers_behaves_like_integers(tmp_path):
    assert _load(tmp_path, ["1.0", "3.0", "5.0"], RATINGS) == [0, 2, 4]
    assert _load(tmp_path, ["35.0", "30.0"], WORDNET) == [2, 0]
    assert _load(tmp_path, ["0.0", "2.0"], ["a", "b", "c"]) == [0, 2]
    with pytest.raises(EnmpError, match="mixes label names and class indices"):
        _load(tmp_path, ["0.0", "1.0"], RATINGS)
    # a blank cell makes datasets read floats: dropping it with skip_labels: [''] leaves whole numbers
    assert _load(tmp_path, [1, None, 4], RATINGS, skip_labels=[""]) == [0, 3]
    with pytest.raises(EnmpError, match="has empty values"):
        _load(tmp_path, [1, None, 4], RATINGS)


def test_non_whole_floats_are_an_error(tmp_path):
    with pytest.raises(EnmpError, match=r"task 't'.*label 1\.5 in column 'label' is not a whole number"):
        _load(tmp_path, ["1.0", "1.5"], RATINGS)


def test_string_labels_still_work(tmp_path):
    assert _load(tmp_path, ["pos", "neg", "pos"], ["neg", "pos"]) == [1, 0, 1]
    assert _load(tmp_path, ["1 star", "5 stars"], ["1 star", "5 stars"]) == [0, 1]


def test_unknown_label_names_error_clearly(tmp_path):
    with pytest.raises(EnmpError, match=r"task 't'.*label 'maybe' in column 'label' is not one of the head's "
                                        r"classes \['neg', 'pos'\]"):
        _load(tmp_path, ["pos", "maybe"], ["neg", "pos"])
    with pytest.raises(EnmpError, match=r"label 7 in column 'label' is not one of the head's classes.*"
                                        r"nor a class index 0\.\.4"):
        _load(tmp_path, [1, 7], RATINGS)
    with pytest.raises(EnmpError, match=r"mixes label names \('neg'\) and class indices \('1'\)"):
        _load(tmp_path, ["neg", "1"], ["neg", "pos"])


def test_rule_is_decided_on_the_whole_column_not_the_sample(tmp_path):
    # a sample of 3 may miss the 0, but the column as a whole is ambiguous: always an error
    values = [1, 2, 3, 4] * 10 + [0]
    for seed in range(3):
        cfg = DataConfig(files={"val": str(_csv(tmp_path, values))})
        with pytest.raises(EnmpError, match="mixes label names and class indices"):
            load_examples(cfg, "val", RATINGS, max_samples=3, seed=seed, where="task 't'")


def test_skip_labels_compare_as_text_or_number(tmp_path):
    assert _load(tmp_path, [-1, 0, 1, -1, 2], ["e", "n", "c"], skip_labels=[-1]) == [0, 1, 2]
    assert _load(tmp_path, [-1, 0, 1, -1, 2], ["e", "n", "c"], skip_labels=["-1"]) == [0, 1, 2]
    assert _load(tmp_path, [1, 3, 3, 5], RATINGS, skip_labels=["3"]) == [0, 4]
    assert _load(tmp_path, ["1.0", "3.0", "5.0"], RATINGS, skip_labels=[3]) == [0, 4]  # floats too
    assert _load(tmp_path, ["a", "-", "b"], ["a", "b"], skip_labels=["-"]) == [0, 1]
    with pytest.raises(EnmpError, match="empty after dropping"):
        _load(tmp_path, [-1, -1], ["a", "b"], skip_labels=[-1])


def test_causal_lm_label_words_that_look_like_numbers(tmp_path):
    tc = TaskConfig(name="stars", adapter=str(tmp_path), kind="causal_lm", prompt="{text} Stars:",
                    label_words=[" 1", " 2", " 3", " 4", " 5"], data={"files": {"val": "x.csv"}})
    head = build_task(tc, tmp_path, {}).head
    assert head.labels == RATINGS  # the stripped label words
    assert _load(tmp_path, [1, 2, 5], head.labels) == [0, 1, 4]
    with pytest.raises(EnmpError, match=r"task 'stars'.*mixes label names and class indices"):
        _load(tmp_path, [0, 1, 4], head.labels, task="stars")
    assert _load(tmp_path, [0, 1, 4], head.labels, label_is_index=True) == [0, 1, 4]


def test_clip_class_names_that_look_like_numbers(tmp_path):
    adir = tmp_path / "clip"
    adir.mkdir()
    save_file({"weight": torch.nn.functional.normalize(torch.randn(6, 16), dim=-1)}, str(adir / "head.safetensors"))
    (adir / "head.json").write_text(json.dumps({"labels": WORDNET}))
    head = load_head("wn", adir, None, None, None, {})
    assert _load(tmp_path, [41, 30], head.labels) == [5, 0]
    with pytest.raises(EnmpError, match=r"task 'wn'.*is none of the head's label names"):
        _load(tmp_path, [1, 0], head.labels, task="wn")


def test_class_label_columns_are_indices_into_their_own_names(tmp_path):
    import datasets

    def parquet(names, values):
        feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
        ds = datasets.Dataset.from_dict({"text": [f"r{i}" for i in range(len(values))], "label": values},
                                        features=feats)
        path = tmp_path / f"{'_'.join(names)}.parquet"
        ds.to_parquet(str(path))
        return DataConfig(files={"val": str(path)})

    # the dataset's own class names "1".."5" in its order: integer 0 is "1"
    cfg = parquet(RATINGS, [0, 1, 4])
    assert load_examples(cfg, "val", RATINGS, max_samples=None, seed=0, where="t").labels == [0, 1, 4]
    # names the head knows, in another order: mapped by name
    cfg = parquet(["pos", "neg"], [0, 1, 0])
    assert load_examples(cfg, "val", ["neg", "pos"], max_samples=None, seed=0, where="t").labels == [1, 0, 1]
    # names the head does not know: plain indices
    cfg = parquet(["a", "b"], [1, 0])
    assert load_examples(cfg, "val", ["30", "32"], max_samples=None, seed=0, where="t").labels == [1, 0]
