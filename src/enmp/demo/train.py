"""Train the demo's LoRA experts (and the frozen-base linear probe they are compared with) on CPU.

Model contract shared with the rest of enmp: BertModel backbone → mean pooling of last_hidden_state over the
attention mask → Linear(hidden, n_classes). An expert dir is a plain PEFT adapter dir (safetensors) plus
`head.safetensors` (`weight` [C, H], `bias` [C], float32) and `head.json` (labels in class-index order,
pooling, pair, task). Speed on 2 shared cores comes from short max_len, length-bucketed batches with dynamic
padding, and tokenising once.
"""

from __future__ import annotations

import json
import os
import random
import time
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from ..atomic_files import atomic_dir, atomic_write_json
from .data import read_split

TARGET_MODULES = ["query", "key", "value", "attention.output.dense"]


def set_threads() -> int:
    """Use the cores this process may run on (ENMP_THREADS overrides), never more than os.cpu_count()."""
    try:
        n = len(os.sched_getaffinity(0))
    except AttributeError:
        n = os.cpu_count() or 1
    n = int(os.environ.get("ENMP_THREADS", n))
    n = max(1, min(n, os.cpu_count() or n))
    torch.set_num_threads(n)
    return n


def load_base(base_dir: str | Path):
    """(tokenizer, BertModel) from a local dir, offline."""
    from transformers import AutoModel, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(str(base_dir), local_files_only=True)
    model = AutoModel.from_pretrained(str(base_dir), local_files_only=True)
    model.eval()
    return tok, model


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1e-9)


def task_labels(task_dir: Path) -> list[str]:
    """Label names in class-index order: the manifest's order when present, else sorted."""
    man = Path(task_dir).parent / "manifest.json"
    if man.is_file():
        for t in json.loads(man.read_text()).get("tasks", []):
            if t.get("name") == Path(task_dir).name:
                return list(t["labels"])
    labs: set[str] = set()
    for s in ("train", "val", "test"):
        labs.update(read_split(task_dir, s)[2])
    return sorted(labs)


class Encoded:
    """One split tokenised once: unpadded id lists and class indices."""

    def __init__(self, tok, task_dir: Path, split: str, labels: Sequence[str], max_len: int):
        texts, pairs, labs = read_split(task_dir, split)
        enc = tok(texts, pairs, truncation=True, max_length=max_len)
        self.ids: list[list[int]] = enc["input_ids"]
        self.types: list[list[int]] = enc.get("token_type_ids") or [[0] * len(i) for i in self.ids]
        index = {l: i for i, l in enumerate(labels)}
        self.y = torch.tensor([index[l] for l in labs])
        self.pad = tok.pad_token_id or 0

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, idx: Sequence[int]) -> dict[str, torch.Tensor]:
        n = max(len(self.ids[i]) for i in idx)
        ids = torch.full((len(idx), n), self.pad, dtype=torch.long)
        types = torch.zeros((len(idx), n), dtype=torch.long)
        mask = torch.zeros((len(idx), n), dtype=torch.long)
        for r, i in enumerate(idx):
            k = len(self.ids[i])
            ids[r, :k] = torch.tensor(self.ids[i])
            types[r, :k] = torch.tensor(self.types[i])
            mask[r, :k] = 1
        return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}

    def eval_batches(self, batch_size: int) -> list[list[int]]:
        order = sorted(range(len(self)), key=lambda i: len(self.ids[i]))
        return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]

    def train_batches(self, batch_size: int, rng: random.Random) -> list[list[int]]:
        """Shuffle, sort by length inside chunks of 20 batches, shuffle the batches: random yet little padding."""
        order = list(range(len(self)))
        rng.shuffle(order)
        chunk = 20 * batch_size
        out = []
        for c in range(0, len(order), chunk):
            part = sorted(order[c:c + chunk], key=lambda i: len(self.ids[i]))
            out += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
        rng.shuffle(out)
        return out


def pooled(model, enc: Encoded, idx: Sequence[int], pool=mean_pool) -> torch.Tensor:
    b = enc.batch(idx)
    return pool(model(**b).last_hidden_state, b["attention_mask"])


@torch.no_grad()
def accuracy(model, head: nn.Module, enc: Encoded, batch_size: int = 64) -> float:
    """Percent correct of backbone+head on one encoded split."""
    model.eval()
    correct = 0
    for idx in enc.eval_batches(batch_size):
        correct += int((head(pooled(model, enc, idx)).argmax(-1) == enc.y[idx]).sum())
    return 100.0 * correct / max(1, len(enc))


def schedule(opt, total: int, warmup: float = 0.06):
    """Linear warm-up over the first `warmup` of `total` steps, then linear decay to 0."""
    w = max(1, int(total * warmup))
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda s: (s + 1) / w if s < w else max(0.0, (total - s) / max(1, total - w)))


def save_head(out_dir: Path, head: nn.Linear, labels: Sequence[str], pair: bool, task: str) -> None:
    from safetensors.torch import save_file

    save_file({"weight": head.weight.detach().float().contiguous().clone(),
               "bias": head.bias.detach().float().contiguous().clone()}, str(out_dir / "head.safetensors"))
    atomic_write_json(out_dir / "head.json", {"labels": list(labels), "pooling": "mean", "pair": pair,
                                              "task": task})


def train_expert(base_dir: str | Path, task_dir: str | Path, out_dir: str | Path, *, r: int = 8,
                 alpha: int = 16, epochs: int = 2, lr: float = 2e-3, head_lr: float | None = None,
                 batch_size: int = 32, max_len: int = 48, seed: int = 0, dropout: float = 0.0) -> dict:
    """LoRA (q, k, v, attention.output.dense) + linear head trained jointly; saves the expert dir atomically
    and returns its metrics (val/test accuracy, seconds). Same seed → same data order and init."""
    from peft import LoraConfig, get_peft_model

    t0, c0 = time.perf_counter(), time.process_time()
    set_threads()
    torch.manual_seed(seed)
    task_dir, out_dir = Path(task_dir), Path(out_dir)
    labels = task_labels(task_dir)
    tok, base = load_base(base_dir)
    pair = read_split(task_dir, "val")[1] is not None
    train, val, test = (Encoded(tok, task_dir, s, labels, max_len) for s in ("train", "val", "test"))
    model = get_peft_model(base, LoraConfig(r=r, lora_alpha=alpha, target_modules=TARGET_MODULES,
                                            lora_dropout=dropout, bias="none"))
    head = nn.Linear(base.config.hidden_size, len(labels))
    lora_params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW([{"params": lora_params, "lr": lr},
                             {"params": head.parameters(), "lr": head_lr or lr}], weight_decay=0.0)
    rng = random.Random(seed)
    plan = [train.train_batches(batch_size, rng) for _ in range(epochs)]
    sched = schedule(opt, sum(map(len, plan)))
    loss_fn = nn.CrossEntropyLoss()
    last = 0.0
    for ep in plan:
        model.train()
        for idx in ep:
            loss = loss_fn(head(pooled(model, train, idx)), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            last = loss.detach().item()
    t_train = time.perf_counter() - t0
    metrics = {"task": task_dir.name, "val_acc": accuracy(model, head, val),
               "test_acc": accuracy(model, head, test), "final_loss": last, "n_train": len(train),
               "epochs": epochs, "lr": lr, "head_lr": head_lr, "batch_size": batch_size, "max_len": max_len, "r": r,
               "alpha": alpha, "seed": seed, "train_s": round(t_train, 2),
               "train_cpu_s": round(time.process_time() - c0, 2)}
    with atomic_dir(out_dir, overwrite=True) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        save_head(tmp, head, labels, pair, task_dir.name)
        metrics["total_s"] = round(time.perf_counter() - t0, 2)
        atomic_write_json(tmp / "metrics.json", metrics)
    return metrics


@torch.no_grad()
def features(model, enc: Encoded, batch_size: int = 64, pool=mean_pool) -> torch.Tensor:
    """Pooled last hidden states of one encoded split, one row per example (float32)."""
    out = torch.empty(len(enc), model.config.hidden_size)
    for idx in enc.eval_batches(batch_size):
        out[idx] = pooled(model, enc, idx, pool)
    return out


def linear_probe(base_dir: str | Path, task_dir: str | Path, *, epochs: int = 100, lr: float = 1e-2,
                 batch_size: int = 64, max_len: int = 48, seed: int = 0, base=None) -> dict:
    """Head alone on the frozen base (features computed once): the bar an expert must clearly beat, else
    its LoRA carries no task knowledge and normalized accuracy means nothing. Model chosen by val acc."""
    set_threads()
    torch.manual_seed(seed)
    task_dir = Path(task_dir)
    labels = task_labels(task_dir)
    tok, model = base if base is not None else load_base(base_dir)
    feats = {s: (features(model, e), e.y) for s in ("train", "val", "test")
             for e in [Encoded(tok, task_dir, s, labels, max_len)]}
    head = nn.Linear(model.config.hidden_size, len(labels))
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=1e-4)
    x, y = feats["train"]
    g = torch.Generator().manual_seed(seed)
    best = (-1.0, 0.0)
    for ep in range(epochs):
        for idx in torch.randperm(len(y), generator=g).split(batch_size):
            loss = nn.functional.cross_entropy(head(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        if ep % 5 == 4 or ep == epochs - 1:
            with torch.no_grad():
                acc = {s: 100.0 * float((head(f).argmax(-1) == t).float().mean()) for s, (f, t) in feats.items()
                       if s != "train"}
            if acc["val"] > best[0]:
                best = (acc["val"], acc["test"])
    return {"task": task_dir.name, "val_acc": best[0], "test_acc": best[1]}
