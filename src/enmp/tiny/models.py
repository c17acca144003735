"""Tiny random base checkpoints with their tokenizer or image processor: BERT, Llama and CLIP.

Each builder writes a real Hugging Face directory (config.json + model.safetensors + tokenizer or image
processor files), so the engine, PEFT and transformers' Auto classes read the same file formats as real
checkpoints, in well under a second. Sizes are arguments: the dry run mirrors a real architecture's shape
(k/v narrower than q under grouped-query attention, CLIP's text tower beside the vision tower, Llama-3's
missing pad token), benchmarks scale width and depth, tests build incompatible bases.

Weights are seeded inside a forked torch RNG: the same arguments give the same files, and the caller's own
random state is untouched.
"""

from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional

import torch

FAMILIES = ("bert", "llama", "clip")

#: every tokenizer's vocabulary (after its special tokens): enough for toy sentiment / topic / NLI sentences
WORDS: tuple[str, ...] = (
    "the", "a", "an", "is", "was", "and", "or", "not", "very", "this", "that", "it", "movie", "film", "book",
    "food", "service", "good", "great", "bad", "awful", "fine", "love", "hate", "like", "boring", "fun",
    "sports", "game", "team", "win", "lose", "money", "market", "stock", "bank", "science", "space", "cell",
    "data", "yes", "no", "true", "false", "question", "answer", "cat", "dog", "red", "blue",
    *[str(i) for i in range(10)], *[chr(c) for c in range(ord("a"), ord("z") + 1)], ".", ",", "!", "?",
)
BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


@dataclass(frozen=True)
class LlamaTokens:
    """A Llama tokenizer's special tokens; BOS is prepended to every text, as real Llama tokenizers do."""

    bos: str
    eos: str
    pad: Optional[str]  # None: the tokenizer has none (enmp then pads with eos); may be `eos` itself


#: a vocabulary with its own pad token (the tests' default)
LLAMA_TOKENS = LlamaTokens("<s>", "</s>", "<pad>")
#: Llama-3's names, and no pad token: the case enmp's task kinds must handle
LLAMA3_TOKENS = LlamaTokens("<|begin_of_text|>", "<|end_of_text|>", None)


@contextlib.contextmanager
def quiet_seeded(seed: int) -> Iterator[None]:
    """Seed torch inside a forked RNG; silence transformers' load reports, progress bars and PEFT's
    deprecation notes (each restored afterwards)."""
    from transformers.utils import logging as hf_logging

    verbosity, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        with torch.random.fork_rng(devices=[]), warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            torch.manual_seed(seed)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def make_tiny_bert(dir: str | Path, seed: int = 0, *, hidden_size: int = 32, num_layers: int = 2,
                   num_heads: int = 4, intermediate_size: int = 64, max_shard_size: str | None = None) -> Path:
    """BertModel with random weights + vocab.txt + a fast WordPiece tokenizer. Returns `dir`.

    `max_shard_size` (e.g. "20KB") writes a sharded checkpoint with model.safetensors.index.json.
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
    with quiet_seeded(seed):
        kwargs = {"max_shard_size": max_shard_size} if max_shard_size else {}
        BertModel(cfg).eval().save_pretrained(dir, **kwargs)
    # transformers 5 takes `vocab`, 4.x takes `vocab_file`.
    key = "vocab" if "vocab" in inspect.signature(BertTokenizerFast.__init__).parameters else "vocab_file"
    BertTokenizerFast(**{key: str(dir / "vocab.txt")}, do_lower_case=True).save_pretrained(dir)
    return dir


def make_tiny_llama(dir: str | Path, seed: int = 0, *, hidden_size: int = 32, num_layers: int = 2,
                    num_heads: int = 4, num_kv_heads: int = 2, intermediate_size: int = 64,
                    tokens: LlamaTokens = LLAMA_TOKENS) -> Path:
    """LlamaForCausalLM (the real checkpoints' class; with fewer KV heads than heads, k/v_proj are narrower
    than q_proj) + a word-level tokenizer with `tokens` as its special tokens. Returns `dir`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    own_pad = [tokens.pad] if tokens.pad and tokens.pad not in (tokens.bos, tokens.eos) else []
    vocab = ["<unk>", tokens.bos, tokens.eos, *own_pad, *WORDS]
    cfg = LlamaConfig(vocab_size=len(vocab), hidden_size=hidden_size, intermediate_size=intermediate_size,
                      num_hidden_layers=num_layers, num_attention_heads=num_heads,
                      num_key_value_heads=num_kv_heads, max_position_embeddings=256,
                      bos_token_id=1, eos_token_id=2, pad_token_id=vocab.index(tokens.pad) if tokens.pad else None)
    with quiet_seeded(seed):
        LlamaForCausalLM(cfg).eval().save_pretrained(dir)
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = processors.TemplateProcessing(
        single=f"{tokens.bos} $A", pair=f"{tokens.bos} $A $B:1", special_tokens=[(tokens.bos, 1)])
    pad = {"pad_token": tokens.pad} if tokens.pad else {}
    PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", bos_token=tokens.bos,
                            eos_token=tokens.eos, **pad).save_pretrained(dir)
    return dir


def make_tiny_clip(dir: str | Path, seed: int = 0, *, hidden_size: int = 32, num_layers: int = 2,
                   num_heads: int = 4, image_size: int = 32, patch_size: int = 8, projection_dim: int = 16,
                   text_tower: bool = False) -> Path:
    """CLIPVisionModelWithProjection, or with `text_tower` the full CLIPModel (as the hub's CLIP checkpoints
    are: a narrower text tower beside the vision tower), + preprocessor_config.json resizing to `image_size`."""
    import transformers
    from transformers import CLIPConfig, CLIPModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    # transformers 5 without torchvision warns on CLIPImageProcessor; the PIL backend is what it falls back to.
    processor_cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    dir = Path(dir)
    dir.mkdir(parents=True, exist_ok=True)
    vision = dict(hidden_size=hidden_size, intermediate_size=2 * hidden_size, num_hidden_layers=num_layers,
                  num_attention_heads=num_heads, image_size=image_size, patch_size=patch_size,
                  projection_dim=projection_dim)  # the sub-config repeats projection_dim, as on the hub
    with quiet_seeded(seed):
        if text_tower:
            text = dict(hidden_size=24, intermediate_size=48, num_hidden_layers=num_layers, num_attention_heads=4,
                        vocab_size=64, max_position_embeddings=16, projection_dim=projection_dim)
            model = CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim))
        else:
            model = CLIPVisionModelWithProjection(CLIPVisionConfig(**vision))
        model.eval().save_pretrained(dir)
    processor_cls(size={"shortest_edge": image_size},
                  crop_size={"height": image_size, "width": image_size}).save_pretrained(dir)
    return dir


MAKE_BASE = {"bert": make_tiny_bert, "llama": make_tiny_llama, "clip": make_tiny_clip}


def feature_dim(base_dir: str | Path) -> int:
    """Width of the features a task head reads from this base: CLIP's projection, else the hidden size."""
    cfg = json.loads((Path(base_dir) / "config.json").read_text())
    return int(cfg.get("projection_dim") or cfg["hidden_size"])
