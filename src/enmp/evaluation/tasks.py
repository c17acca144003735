"""Task kinds: turn examples into model inputs once, then score a (patched) model on them.

Inputs are tokenised/preprocessed a single time per run and grouped into batches of similar length,
so evaluating a candidate costs only the forward passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import torch

from .. import metrics
from ..errors import EnmpError, NumericalError
from .data import Examples
from .heads import Head


@dataclass
class PreparedSplit:
    """Model inputs of one split in batches of similar length; `order` is the example index of each label
    in batch order, so that results can be put back in the examples' own order."""

    batches: list[dict[str, torch.Tensor]]
    labels: list[torch.Tensor]
    order: list[int]

    @property
    def n(self) -> int:
        return sum(len(y) for y in self.labels)

    @property
    def rows(self) -> int:
        """Sequences (or images) the model runs: `n`, or n × classes for label-word scoring."""
        return sum(next(v for k, v in b.items() if not k.startswith("_")).shape[0] for b in self.batches)

    def to(self, device: torch.device) -> "PreparedSplit":
        return PreparedSplit([{k: v.to(device) for k, v in b.items()} for b in self.batches],
                             [y.to(device) for y in self.labels], self.order)


def _length_batches(lengths: list[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (stable), cut into batches: padding stays minimal."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def _check_finite(logits: torch.Tensor, task: str) -> None:
    if not torch.isfinite(logits).all():
        raise NumericalError("non-finite logits", where=f"task '{task}'")


class TaskKind:
    kind = ""

    def __init__(self, name: str, head: Optional[Head]):
        self.name, self.head = name, head

    def prepare(self, ex: Examples, processor: Any, *, batch_size: int, max_length: int) -> PreparedSplit:
        raise NotImplementedError

    def predict(self, model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


def _hidden(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**batch) if not _is_lm(model) else model(**batch, output_hidden_states=True)
    h = getattr(out, "last_hidden_state", None)
    return h if h is not None else out.hidden_states[-1]


def _is_lm(model: torch.nn.Module) -> bool:
    return hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None


class ClassificationTask(TaskKind):
    """Shared backbone + this task's own linear head (the paper's NLP setting)."""

    kind = "classification"

    def prepare(self, ex, tokenizer, *, batch_size, max_length):
        if ex.texts is None:
            raise EnmpError("classification needs a text column", where=f"task '{self.name}'")
        if tokenizer.pad_token_id is None:  # decoder tokenizers (Llama-3) ship without a pad token
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"  # "last" pooling reads the last real token of right-padded rows
        enc = tokenizer(ex.texts, ex.pairs, truncation=True, max_length=max_length)
        lengths = [len(ids) for ids in enc["input_ids"]]
        batches, labels, order = [], [], []
        for idx in _length_batches(lengths, batch_size):
            feats = [{k: enc[k][i] for k in enc.keys()} for i in idx]
            batches.append(dict(tokenizer.pad(feats, return_tensors="pt")))
            labels.append(torch.tensor([ex.labels[i] for i in idx]))
            order += idx
        return PreparedSplit(batches, labels, order)

    def predict(self, model, batch):
        h = _hidden(model, batch)
        mask = batch.get("attention_mask")
        if mask is None:
            mask = torch.ones(h.shape[:2], dtype=torch.long, device=h.device)
        if self.head.pooling == "cls":
            pooled = h[:, 0]
        elif self.head.pooling == "last":
            last = mask.sum(1) - 1  # right padding: the last real token
            pooled = h[torch.arange(h.shape[0], device=h.device), last]
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp(min=1)
        logits = self.head.logits(pooled)
        _check_finite(logits, self.name)
        return logits.argmax(-1)


class ClipZeroShotTask(TaskKind):
    """Image encoder + per-task zero-shot text-embedding head (the paper's vision setting)."""

    kind = "clip_zero_shot"

    def prepare(self, ex, image_processor, *, batch_size, max_length):
        if ex.images is None:
            raise EnmpError("clip_zero_shot needs an image column (data.image)", where=f"task '{self.name}'")
        from PIL import Image

        batches, labels = [], []
        for start in range(0, len(ex), batch_size):
            imgs = []
            for img in ex.images[start:start + batch_size]:
                if isinstance(img, dict) and img.get("path"):
                    img = img["path"]
                if isinstance(img, str):  # a file path column (csv/json data)
                    img = Image.open(img)
                imgs.append(img.convert("RGB") if hasattr(img, "convert") else img)
            pix = image_processor(images=imgs, return_tensors="pt")["pixel_values"]
            batches.append({"pixel_values": pix})
            labels.append(torch.tensor(ex.labels[start:start + batch_size]))
        return PreparedSplit(batches, labels, list(range(len(ex))))

    def predict(self, model, batch):
        out = model(pixel_values=batch["pixel_values"].to(next(model.parameters()).dtype))
        emb = getattr(out, "image_embeds", None)
        if emb is None:
            emb = out.pooler_output
        emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        logits = self.head.logits(emb)
        _check_finite(logits, self.name)
        return logits.argmax(-1)


class CausalLMTask(TaskKind):
    """Prompt + label words: the predicted class is the label word with the highest log-likelihood."""

    kind = "causal_lm"

    def __init__(self, name, head, *, prompt: str, label_words: list[str]):
        super().__init__(name, head)
        self.prompt, self.label_words = prompt, label_words

    def _prompts(self, ex: Examples) -> list[str]:
        pairs = ex.pairs or [""] * len(ex)
        try:
            return [self.prompt.format(text=t, text_pair=p) for t, p in zip(ex.texts, pairs)]
        except (KeyError, IndexError) as e:
            raise EnmpError(f"prompt template has an unknown field {e}", where=f"task '{self.name}'.prompt",
                            fix="use only {text} and {text_pair}") from None

    def prepare(self, ex, tokenizer, *, batch_size, max_length):
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"
        prompts = self._prompts(ex)
        words = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in self.label_words]
        if any(len(w) == 0 for w in words):
            raise EnmpError("a label word tokenises to nothing", where=f"task '{self.name}'.label_words")
        enc = tokenizer(prompts, truncation=True, max_length=max_length)
        # Every (prompt, label word) pair becomes one row; scores are summed label-token log-probs.
        n_cls = len(words)
        lengths = [len(p) for p in enc["input_ids"]]
        batches, labels, order = [], [], []
        per_batch = max(1, batch_size // n_cls)
        for idx in _length_batches(lengths, per_batch):
            rows, starts, ends = [], [], []
            for i in idx:
                for w in words:
                    ids = enc["input_ids"][i] + w
                    rows.append({"input_ids": ids, "attention_mask": [1] * len(ids)})
                    starts.append(len(enc["input_ids"][i]))
                    ends.append(len(ids))
            padded = dict(tokenizer.pad(rows, return_tensors="pt"))
            padded["_starts"], padded["_ends"] = torch.tensor(starts), torch.tensor(ends)
            padded["_ncls"] = torch.tensor(n_cls)
            batches.append(padded)
            labels.append(torch.tensor([ex.labels[i] for i in idx]))
            order += idx
        return PreparedSplit(batches, labels, order)

    def predict(self, model, batch):
        inputs = {k: v for k, v in batch.items() if not k.startswith("_")}
        logits = model(**inputs).logits.float()
        _check_finite(logits, self.name)
        logp = torch.log_softmax(logits[:, :-1], -1)
        target = inputs["input_ids"][:, 1:]
        tok_lp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        pos = torch.arange(target.shape[1], device=target.device).unsqueeze(0)
        span = (pos >= batch["_starts"].unsqueeze(1) - 1) & (pos < batch["_ends"].unsqueeze(1) - 1)
        scores = (tok_lp * span).sum(1).view(-1, int(batch["_ncls"]))
        return scores.argmax(-1)


def correct(task: TaskKind, model: torch.nn.Module, split: PreparedSplit,
            before_batch: Optional[Callable[[int], None]] = None) -> torch.Tensor:
    """Whether each example is predicted right (bool, in the examples' own order)."""
    out = []
    with torch.inference_mode():
        for i, (batch, y) in enumerate(zip(split.batches, split.labels)):
            if before_batch is not None:
                before_batch(i)
            out.append((task.predict(model, batch) == y).cpu())
    if not out:
        return torch.zeros(0, dtype=torch.bool)
    right = torch.empty(split.n, dtype=torch.bool)
    right[torch.tensor(split.order, dtype=torch.long)] = torch.cat(out)
    return right


def accuracy(task: TaskKind, model: torch.nn.Module, split: PreparedSplit,
             before_batch: Optional[Callable[[int], None]] = None) -> float:
    return metrics.accuracy(correct(task, model, split, before_batch))
