"""Tiny, deterministic, offline fixtures shared by all enmp tests.

Every builder writes a real Hugging Face directory (config.json + model.safetensors [+ tokenizer]) or a real
PEFT adapter (adapter_config.json + adapter_model.safetensors) so tests exercise the same file formats as
real checkpoints, in well under a second each. Families:

* ``"bert"``  – BertModel (hidden 32, 4 heads, intermediate 64) + a WordPiece tokenizer over ``WORDS``.
  ``head="seq_cls"`` trains adapters on BertForSequenceClassification, so module paths gain ``bert.``.
* ``"llama"`` – LlamaForCausalLM (hidden 32, 4 heads, 2 KV heads, so k/v_proj are 16×32 while q_proj is
  32×32) + a word-level tokenizer.
* ``"clip"``  – CLIPVisionModelWithProjection (hidden 32, image 32, patch 8) + a CLIP image processor.

Builders fork the torch RNG, so they never disturb a test's own random state. Import as
``from tiny import ...`` (pytest puts tests/ on sys.path).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Iterator, Sequence

import torch

FAMILIES = ("bert", "llama", "clip")

# Small vocabulary, enough for toy sentiment / topic tasks over short sentences.
WORDS: tuple[str, ...] = (
    "the", "a", "an", "is", "was", "and", "or", "not", "very", "this", "that", "it", "movie", "film", "book",
    "food", "service", "good", "great", "bad", "awful", "fine", "love", "hate", "like", "boring", "fun",
    "sports", "game", "team", "win", "lose", "money", "market", "stock", "bank", "science", "space", "cell",
    "data", "yes", "no", "true", "false", "question", "answer", "cat", "dog", "red", "blue",
    *[str(i) for i in range(10)], *[chr(c) for c in range(ord("a"), ord("z") + 1)], ".", ",", "!", "?",
)
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")
LLAMA_SPECIALS = ("<unk>", "<s>", "</s>", "<pad>")

DEFAULT_TARGETS = {
    "bert": ["query", "key", "value", "attention.output.dense"],
    "llama": ["q_proj", "k_proj", "v_proj", "o_proj"],
    "clip": ["q_proj", "k_proj", "v_proj", "out_proj"],
}
MODEL_CLASSES = {
    ("bert", None): "BertModel",
    ("bert", "seq_cls"): "BertForSequenceClassification",
    ("llama", None): "LlamaForCausalLM",
    ("clip", None): "CLIPVisionModelWithProjection",
}


@contextlib.contextmanager
def _quiet_seeded(seed: int) -> Iterator[None]:
    """Seed torch inside a forked RNG and silence transformers' load reports / progress bars."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        hf_logging.enable_progress_bar()


def make_tiny_bert(dir: str | Path, seed: int = 0, *, hidden_size: int = 32, num_layers: int = 2,
                   num_heads: int = 4, intermediate_size: int = 64, max_shard_size: str | None = None) -> Path:
    """BertModel with random weights + vocab.txt + a fast WordPiece tokenizer. Returns `dir`.

    `hidden_size` lets tests build an incompatible base; `max_shard_size` (e.g. "20KB") writes a sharded
    checkpoint with model.safetensors.index.json.
    """
    import inspect

    from transformers import BertConfig, BertModel, BertTokenizerFast

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    vocab = [*BERT_SPECIALS, *WORDS]
    (dir / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden_size, num_hidden_layers=num_layers,
                     num_attention_heads=num_heads, intermediate_size=intermediate_size,
                     max_position_embeddings=64, type_vocab_size=2, pad_token_id=0)
    with _quiet_seeded(seed):
        model = BertModel(cfg).eval()
        kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
        model.save_pretrained(dir, **kwargs)
    # transformers 5 takes `vocab`, 4.x takes `vocab_file`.
    params = inspect.signature(BertTokenizerFast.__init__).parameters
    key = "vocab" if "vocab" in params else "vocab_file"
    tok = BertTokenizerFast(**{key: str(dir / "vocab.txt")}, do_lower_case=True)
    tok.save_pretrained(dir)
    return dir


def make_tiny_llama(dir: str | Path, seed: int = 0, *, hidden_size: int = 32, num_layers: int = 2,
                    num_heads: int = 4, num_kv_heads: int = 2, intermediate_size: int = 64) -> Path:
    """LlamaForCausalLM (grouped-query attention: k/v_proj are narrower than q_proj) + word-level tokenizer."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    vocab = [*LLAMA_SPECIALS, *WORDS]
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=intermediate_size,
                      num_hidden_layers=num_layers, num_attention_heads=num_heads,
                      num_key_value_heads=num_kv_heads, max_position_embeddings=64,
                      bos_token_id=1, eos_token_id=2, pad_token_id=3)
    with _quiet_seeded(seed):
        LlamaForCausalLM(cfg).eval().save_pretrained(dir)
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Whitespace()])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token="<s>",
                                  eos_token="</s>", pad_token="<pad>")
    tok.save_pretrained(dir)
    return dir


def make_tiny_clip_vision(dir: str | Path, seed: int = 0, *, hidden_size: int = 32, num_layers: int = 2,
                          num_heads: int = 4, image_size: int = 32, patch_size: int = 8) -> Path:
    """CLIPVisionModelWithProjection + preprocessor_config.json (resize/crop to `image_size`)."""
    import transformers
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    # transformers 5 without torchvision warns on CLIPImageProcessor; the PIL backend is what it falls back to.
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    cfg = CLIPVisionConfig(hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                           num_hidden_layers=num_layers, num_attention_heads=num_heads,
                           image_size=image_size, patch_size=patch_size, projection_dim=16)
    with _quiet_seeded(seed):
        CLIPVisionModelWithProjection(cfg).eval().save_pretrained(dir)
    processor_cls(size={"shortest_edge": image_size},
                       crop_size={"height": image_size, "width": image_size}).save_pretrained(dir)
    return dir


MAKE_BASE = {"bert": make_tiny_bert, "llama": make_tiny_llama, "clip": make_tiny_clip_vision}


def load_tiny_model(base_dir: str | Path, family: str, *, head: str | None = None, num_labels: int = 2,
                    seed: int = 0):
    """Instantiate the model class adapters of (`family`, `head`) are trained on (new heads seeded)."""
    import transformers

    if (family, head) not in MODEL_CLASSES:
        raise ValueError(f"unknown family/head {family!r}/{head!r}; known: {sorted(MODEL_CLASSES, key=str)}")
    cls = getattr(transformers, MODEL_CLASSES[(family, head)])
    kwargs = {"num_labels": num_labels} if head == "seq_cls" else {}
    with _quiet_seeded(seed):
        return cls.from_pretrained(str(base_dir), **kwargs).eval()


def make_lora_adapter(base_dir: str | Path, out_dir: str | Path, *, family: str, r: int = 4, alpha: float = 8,
                      rslora: bool = False, seed: int = 0, target_modules: Sequence[str] | None = None,
                      rank_pattern: dict | None = None, alpha_pattern: dict | None = None,
                      modules_to_save: Sequence[str] | None = None, head: str | None = None) -> Path:
    """A PEFT LoRA adapter with random non-zero A and B (init_lora_weights=False), saved as safetensors.

    Defaults target the attention projections of `family` (see DEFAULT_TARGETS). With `head="seq_cls"`
    (BERT only) the adapter wraps BertForSequenceClassification, typically with modules_to_save=["classifier"].
    """
    from peft import LoraConfig, get_peft_model

    model = load_tiny_model(base_dir, family, head=head, seed=seed)
    cfg = LoraConfig(r=r, lora_alpha=alpha, use_rslora=rslora, init_lora_weights=False, lora_dropout=0.0,
                     target_modules=list(target_modules or DEFAULT_TARGETS[family]),
                     rank_pattern=dict(rank_pattern or {}), alpha_pattern=dict(alpha_pattern or {}),
                     modules_to_save=list(modules_to_save) if modules_to_save else None)
    with _quiet_seeded(seed + 1):
        peft_model = get_peft_model(model, cfg)
        peft_model.save_pretrained(str(out_dir), safe_serialization=True)
    return Path(out_dir)


def make_task_set(tmp_path: str | Path, family: str, n_tasks: int = 3, ranks: Sequence[int] = (4, 2, 6),
                  alphas: Sequence[float] = (8, 4, 12), rslora: Sequence[bool] = (False, False, True),
                  *, head: str | None = None, base_seed: int = 0, **adapter_kwargs) -> tuple[Path, dict[str, Path]]:
    """Base model at tmp_path/"base" plus `n_tasks` adapters "task0".. with varied rank / alpha / rsLoRA.

    Per-task settings cycle through `ranks`, `alphas`, `rslora`; extra kwargs go to make_lora_adapter.
    Returns (base_dir, {task name: adapter dir}) in task order.
    """
    tmp_path = Path(tmp_path)
    base = MAKE_BASE[family](tmp_path / "base", seed=base_seed)
    adapters = {}
    for i in range(n_tasks):
        name = f"task{i}"
        adapters[name] = make_lora_adapter(
            base, tmp_path / name, family=family, r=ranks[i % len(ranks)], alpha=alphas[i % len(alphas)],
            rslora=rslora[i % len(rslora)], seed=100 + i, head=head, **adapter_kwargs)
    return base, adapters


def peft_merged_state(base_dir: str | Path, adapter_dir: str | Path, family: str, *,
                      head: str | None = None) -> dict[str, torch.Tensor]:
    """Reference: PEFT's own merge_and_unload of one adapter, as a state dict (model's own naming)."""
    from peft import PeftModel

    model = load_tiny_model(base_dir, family, head=head)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    return {k: v.detach().clone() for k, v in merged.state_dict().items()}
