"""`classification`: shared backbone + this task's own linear head on pooled token features (the paper's NLP
setting; decoder LLMs too, with `pooling: last`)."""

from __future__ import annotations

import torch

from ...errors import EnmpError
from ...options import Option, Options
from ..heads import load_head
from .base import PreparedSplit, TaskKind, check_finite, length_batches

POOLING = Option("pooling", str, None, "how token features become one vector per example: mean, cls or last "
                 "(the last real token, for decoder models); null: the head's head.json, else mean",
                 choices=("mean", "cls", "last"), nullable=True)


def _hidden(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    out = model(**batch) if not _is_lm(model) else model(**batch, output_hidden_states=True)
    h = getattr(out, "last_hidden_state", None)
    return h if h is not None else out.hidden_states[-1]


def _is_lm(model: torch.nn.Module) -> bool:
    return hasattr(model, "get_output_embeddings") and model.get_output_embeddings() is not None


class ClassificationTask(TaskKind):
    """Shared backbone + this task's own linear head (the paper's NLP setting)."""

    kind = "classification"
    options = Options(POOLING)
    model_class = "AutoModel"
    also_runs_on = ("AutoModelForCausalLM",)  # a causal LM's last hidden states serve as well (_hidden)
    processor = "tokenizer"

    @classmethod
    def from_config(cls, tc, adapter_dir, extra):
        pooling = tc.kind_options()["pooling"]
        return cls(tc.name, load_head(tc.name, adapter_dir, tc.head, tc.labels, pooling, extra))

    def prepare(self, ex, tokenizer, *, batch_size, max_length):
        if ex.texts is None:
            raise EnmpError("classification needs a text column", where=f"task '{self.name}'")
        if tokenizer.pad_token_id is None:  # decoder tokenizers (Llama-3) ship without a pad token
            tokenizer.pad_token = tokenizer.eos_token
        tokenizer.padding_side = "right"  # "last" pooling reads the last real token of right-padded rows
        enc = tokenizer(ex.texts, ex.pairs, truncation=True, max_length=max_length)
        lengths = [len(ids) for ids in enc["input_ids"]]
        batches, labels, order = [], [], []
        for idx in length_batches(lengths, batch_size):
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
        check_finite(logits, self.name)
        return logits.argmax(-1)
