"""Read-only view of a base model checkpoint (config + safetensors), without instantiating the model.

Shapes and dtypes come from the safetensors headers so validating adapters against a multi-GB base costs
almost nothing; tensors are read one at a time only when a caller asks for them. A `.gguf` file is the
other kind of base (see gguf.py): the same view, with shapes from a weightless model and dequantised tensors.
"""

from __future__ import annotations

import json
import os
from functools import cached_property
from pathlib import Path
from typing import Iterator

import torch
from safetensors import safe_open

from ..errors import EnmpError
from .gguf import GGUFFile, is_gguf
from .hub import resolve_dir

_CONVERT_FIX = ("convert with `transformers`: AutoModel.from_pretrained(path).save_pretrained(out, "
                "safe_serialization=True)")
_TOKENIZER_NAMES = (
    "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
    "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model", "tokenizer.model",
    "preprocessor_config.json", "processor_config.json", "image_processor_config.json", "chat_template.jinja",
    "chat_template.json", "generation_config.json",
)
_PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


class BaseCheckpoint:
    """A Hugging Face model directory (local path or Hub id) with safetensors weights, or a local .gguf file."""

    def __init__(self, path_or_id: str | os.PathLike, *, revision: str | None = None):
        self.source = str(path_or_id)
        self.gguf: GGUFFile | None = GGUFFile(path_or_id) if is_gguf(path_or_id) else None
        if self.gguf is not None:
            self.dir, self.config, self.weight_files = self.gguf.path.parent, self.gguf.config, [self.gguf.path]
            return
        self.dir = resolve_dir(path_or_id, what="base model", revision=revision)
        cfg_path = self.dir / "config.json"
        if not cfg_path.is_file() and (self.dir / "adapter_config.json").is_file():
            raise EnmpError(f"{self.dir} is a LoRA adapter, not a base model", where="base model",
                            fix="pass the base model the adapters were trained on")
        if not cfg_path.is_file():
            raise EnmpError(f"no config.json in base model directory {self.dir}", where="base model",
                            fix="pass a directory written by transformers save_pretrained (config.json + "
                                "model.safetensors)")
        try:
            self.config: dict = json.loads(cfg_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise EnmpError(f"config.json is not valid JSON ({exc})", where=str(cfg_path),
                            fix="re-save the base model with save_pretrained") from exc
        if not isinstance(self.config, dict):
            raise EnmpError("config.json must hold a JSON object", where=str(cfg_path))
        self.weight_files: list[Path] = self._find_weight_files()

    def __repr__(self) -> str:
        return f"BaseCheckpoint({self.source!r}, architecture={self.architecture!r})"

    @property
    def architecture(self) -> str | None:
        archs = self.config.get("architectures") or []
        return archs[0] if archs else None

    # ----------------------------------------------------------------------------------------- files
    def _find_weight_files(self) -> list[Path]:
        index = self.dir / "model.safetensors.index.json"
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError, TypeError) as exc:
                raise EnmpError("cannot read the shard index (no 'weight_map')", where=str(index),
                                fix="re-save the base model with save_pretrained") from exc
            files = [self.dir / name for name in sorted(set(weight_map.values()))]
            missing = [f.name for f in files if not f.is_file()]
            if missing:
                raise EnmpError(f"shard index lists missing files: {', '.join(missing[:3])}", where=str(index),
                                fix="download the complete checkpoint")
            return files
        single = self.dir / "model.safetensors"
        if single.is_file():
            return [single]
        others = sorted(p for p in self.dir.glob("*.safetensors") if p.name != "adapter_model.safetensors")
        if others:
            return others
        if (self.dir / "adapter_config.json").is_file():
            raise EnmpError(f"{self.dir} is a LoRA adapter, not a base model", where="base model",
                            fix="pass the base model the adapters were trained on")
        if any(p.suffix in _PICKLE_SUFFIXES for p in self.dir.iterdir()):
            raise EnmpError(f"base model {self.dir} has only pickled weights; enmp loads safetensors only",
                            where="base model", fix=_CONVERT_FIX)
        raise EnmpError(f"no safetensors weights in base model directory {self.dir}", where="base model",
                        fix="pass a directory with model.safetensors (Hub downloads skip pickled *.bin files; "
                            + _CONVERT_FIX + ")")

    @cached_property
    def tokenizer_files(self) -> list[Path]:
        """Tokenizer / processor files present next to the weights (copied into merged outputs).

        None for a GGUF base: its tokenizer lives inside the file (`gguf.save_tokenizer` writes it out)."""
        if self.gguf is not None:
            return []
        return [self.dir / n for n in _TOKENIZER_NAMES if (self.dir / n).is_file()]

    # --------------------------------------------------------------------------------------- headers
    @cached_property
    def _header(self) -> dict[str, tuple[Path, tuple[int, ...], str]]:
        if self.gguf is not None:
            return {name: (self.gguf.path, shape, "F32") for name, shape in self.gguf.shapes.items()}
        out: dict[str, tuple[Path, tuple[int, ...], str]] = {}
        for file in self.weight_files:
            try:
                with safe_open(file, framework="pt") as fh:
                    for name in fh.keys():
                        sl = fh.get_slice(name)
                        out[name] = (file, tuple(int(d) for d in sl.get_shape()), str(sl.get_dtype()))
            except Exception as exc:  # truncated or non-safetensors file
                raise EnmpError(f"cannot read safetensors header ({type(exc).__name__}: {exc})", where=str(file),
                                fix="re-download or re-save the base model") from exc
        return out

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: v[1] for k, v in self._header.items()}

    @property
    def dtypes(self) -> dict[str, str]:
        """safetensors dtype codes, e.g. "F32", "BF16"."""
        return {k: v[2] for k, v in self._header.items()}

    def read(self, name: str) -> torch.Tensor:
        """Load one tensor (in its stored dtype; a GGUF base dequantises the whole file for it)."""
        if name not in self._header:
            raise EnmpError(f"tensor '{name}' not in base model", where=str(self.dir))
        if self.gguf is not None:
            return self.gguf.state_dict()[name]
        with safe_open(self._header[name][0], framework="pt") as fh:
            return fh.get_tensor(name)

    def iter_tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Yield (name, tensor) shard by shard."""
        for _file, tensors in self.shards():
            yield from tensors.items()

    def shards(self) -> Iterator[tuple[str, dict[str, torch.Tensor]]]:
        """(output file name, its tensors) per weight file, so memory stays at one shard.

        A GGUF base is one shard, model.safetensors, of its dequantised tensors under Hugging Face names."""
        if self.gguf is not None:
            yield "model.safetensors", self.gguf.state_dict()
            return
        for file in self.weight_files:
            with safe_open(file, framework="pt") as fh:
                yield file.name, {name: fh.get_tensor(name) for name in fh.keys()}

    # ------------------------------------------------------------------------------- name matching
    @cached_property
    def _modules_by_leaf(self) -> dict[str, list[str]]:
        index: dict[str, list[str]] = {}
        for name in self._header:
            if name.endswith(".weight"):
                module = name[: -len(".weight")]
                index.setdefault(module.rsplit(".", 1)[-1], []).append(module)
        return index

    def find_weight(self, module_path: str, shape: tuple[int, int] | None = None) -> str | None:
        """Base tensor name (``<module>.weight``) for a PEFT module path, or None if there is none.

        Model heads wrap the backbone under a prefix (``bert.``, ``model.``, ``vision_model.``) that the
        checkpoint may or may not have, so a base module matches when either path is a dotted suffix of the
        other. Preference: exact match, then the longest base path that is a suffix of the module, then a
        unique base path that ends with the module. When several are equally good, `shape` (the adapter's
        d_out × d_in) picks the one that fits: a CLIP image-tower adapter (``encoder.layers.N...``) names
        both towers of a full CLIP checkpoint. Still ambiguous → EnmpError.
        """
        candidates = self._modules_by_leaf.get(module_path.rsplit(".", 1)[-1], [])
        if module_path in candidates:
            return module_path + ".weight"
        shorter = [m for m in candidates if module_path.endswith("." + m) and m.count(".") >= 1]
        longer = [m for m in candidates if m.endswith("." + module_path)]
        if shorter and not longer:
            return max(shorter, key=len) + ".weight"
        if len(longer) == 1 and not shorter:
            return longer[0] + ".weight"
        if not shorter and not longer:
            return None
        options = sorted(longer + shorter)
        if shape is not None:
            fitting = [m for m in options if self.shapes.get(m + ".weight") == tuple(shape)]
            if len(fitting) == 1:
                return fitting[0] + ".weight"
        raise EnmpError(f"module '{module_path}' matches several base weights: {', '.join(options[:4])}",
                        where=str(self.dir), fix="use a base checkpoint whose tensor names match the adapter")
