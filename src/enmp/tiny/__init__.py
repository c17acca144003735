"""Tiny random models, tokenizers, PEFT adapters and fake run files, in real Hugging Face / PEFT formats.

One factory for everything that needs a model without downloading one: `enmp search --dry-run`'s
stand-ins (which mirror a real architecture), the tests' fixtures and the synthetic benchmarks.

* `models` — bases: BERT, Llama (grouped-query attention, chosen special tokens), CLIP (vision tower, with
  or without the text tower), each with its tokenizer or image processor;
* `adapters` — PEFT LoRA adapters on them (targets, rank, alpha, rsLoRA, seed, the wrapper they are saved
  from) and PEFT's own merge as a reference;
* `data` — sentences over the tokenizers' words, images, CSV splits and task heads.

A foundation: it imports nothing else from enmp, so any layer (the engine's dry run included) may use it.
"""

from .adapters import (DEFAULT_TARGETS, load_tiny_model, make_lora_adapter, make_task_set,
                       peft_merged_state)
from .data import sentence, write_csv, write_head, write_images
from .models import (FAMILIES, LLAMA3_TOKENS, LLAMA_TOKENS, MAKE_BASE, WORDS, LlamaTokens, feature_dim,
                     make_tiny_bert, make_tiny_clip, make_tiny_llama, quiet_seeded)

__all__ = ["DEFAULT_TARGETS", "FAMILIES", "LLAMA3_TOKENS", "LLAMA_TOKENS", "MAKE_BASE", "WORDS", "LlamaTokens",
           "feature_dim", "load_tiny_model", "make_lora_adapter", "make_task_set", "make_tiny_bert", "make_tiny_clip",
           "make_tiny_llama", "peft_merged_state", "quiet_seeded", "sentence", "write_csv", "write_head",
           "write_images"]
