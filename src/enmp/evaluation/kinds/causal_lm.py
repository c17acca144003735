"""`causal_lm`: prompt + label words on a causal LM; the predicted class is the label word with the highest
log-likelihood after the prompt (summed over its tokens). No head file: the label words are the classes."""

from __future__ import annotations

import torch

from ...errors import EnmpError
from ...options import Options
from ..data import Examples
from ..heads import Head
from .base import PreparedSplit, Required, TaskKind, check_finite, length_batches

PROMPT = Required("prompt", str, None, "template filled from the data with {text} (and {text_pair})",
                  example='"{text}\\nAnswer:"')
LABEL_WORDS = Required("label_words", str, None, "one word per class, scored after the prompt",
                       sequence=True, example='[" yes", " no"]')


class CausalLMTask(TaskKind):
    """Prompt + label words: the predicted class is the label word with the highest log-likelihood."""

    kind = "causal_lm"
    options = Options(PROMPT, LABEL_WORDS)
    model_class = "AutoModelForCausalLM"
    processor = "tokenizer"

    def __init__(self, name, head, *, prompt: str, label_words: list[str]):
        super().__init__(name, head)
        self.prompt, self.label_words = prompt, label_words

    @classmethod
    def check_config(cls, tc, options, where):
        if tc.labels and len(tc.labels) != len(options["label_words"]):
            raise EnmpError("labels and label_words differ in length", where=f"{where}.labels",
                            fix="give one label per label word (or leave labels out: the stripped label words)")

    @classmethod
    def from_config(cls, tc, adapter_dir, extra):
        options = tc.kind_options()
        words = list(options["label_words"])
        labels = tc.labels or [w.strip() for w in words]
        head = Head(torch.zeros(len(labels), 1), None, labels)
        return cls(tc.name, head, prompt=options["prompt"], label_words=words)

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
        for idx in length_batches(lengths, per_batch):
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
        check_finite(logits, self.name)
        logp = torch.log_softmax(logits[:, :-1], -1)
        target = inputs["input_ids"][:, 1:]
        tok_lp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        pos = torch.arange(target.shape[1], device=target.device).unsqueeze(0)
        span = (pos >= batch["_starts"].unsqueeze(1) - 1) & (pos < batch["_ends"].unsqueeze(1) - 1)
        scores = (tok_lp * span).sum(1).view(-1, int(batch["_ncls"]))
        return scores.argmax(-1)
