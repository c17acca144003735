"""The offline demo's expert training and run settings: PEFT format, determinism, cache reuse, configs.

Training tests use a tiny random BERT from `enmp.tiny` and hand-written toy tasks, so they need no package
data and run in seconds on CPU.
"""

from __future__ import annotations

import csv
import io
import json
import random
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from enmp import tiny
from enmp.demo.data import SPLITS, DemoTask, read_split
from enmp.demo.run import DemoSettings, demo_config, ensure_experts
from enmp.demo.train import TARGET_MODULES, linear_probe, load_base, train_expert


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
    from enmp.engine.run.search_run import make_strategy
    from enmp.search import ValidationData

    s = DemoSettings().quick() if quick else DemoSettings()
    tasks = [DemoTask("single", "", ["a", "b"], False, "p", "1", "MIT", "f")]
    for method in s.searched:
        extra, _ = BASE_METHODS[method]
        cfg = demo_config(tmp_path / "base", tmp_path / "data", tasks, tmp_path / "experts", s, method,
                          {"lam": 0.5, **extra})
        strategy = make_strategy(cfg, (6, 6))
        assert strategy.popsize == s.popsize and strategy.generations == s.generations
        strategy.validate(ValidationData((s.val_samples,) * 6, 0))  # enough examples for its folds, if any
