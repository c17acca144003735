"""GGUF base models (llama.cpp files) behind the same read-only view as a safetensors checkpoint.

A .gguf file holds quantised weights under llama.cpp tensor names. transformers already dequantises them
and maps the names to its own, so adapters trained on the Hugging Face model validate against the very
names and shapes they were trained on, and merged outputs are ordinary safetensors of the dequantised
weights (nothing is re-quantised). The weights are the GGUF's dequantised values, not the original model's.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
from functools import cached_property, lru_cache
from pathlib import Path
import torch

from ..errors import EnmpError, first_line

GGUF_SUFFIX = ".gguf"
LLM_FIX = "pip install 'enmp[llm]'"
STORED_DTYPE = "float32"  # what dequantised GGUF tensors are (and what an export without --dtype writes)


def is_gguf(path: str | os.PathLike) -> bool:
    return str(path).strip().lower().endswith(GGUF_SUFFIX)


def _missing(modules: tuple[str, ...]) -> list[str]:
    out = []
    for name in modules:
        try:
            if importlib.util.find_spec(name) is None:
                out.append(name)
        except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken install
            out.append(name)
    return out


def require_llm_extra() -> None:
    """transformers needs gguf (to read the file) and accelerate (to load it); say so in one line."""
    missing = _missing(("gguf", "accelerate"))
    if missing:
        raise EnmpError(f"GGUF bases need the {' and '.join(missing)} package{'s' * (len(missing) > 1)}",
                        where="base model", fix=LLM_FIX)


def _load_error(exc: Exception, path: Path, what: str) -> EnmpError:
    return EnmpError(f"cannot read the GGUF {what} ({first_line(exc, 240)})", where=str(path),
                     fix="pass a complete .gguf of an architecture transformers supports (llama, mistral, qwen2, ...)")


@lru_cache(maxsize=8)
def _hf_config(path: str, _stamp: tuple[int, int]):
    """transformers' config for the file. Parsing GGUF metadata takes seconds (every vocabulary string is
    read), so config and tokenizer are parsed once per file version (path, mtime, size) and process."""
    import transformers

    p = Path(path)
    cfg = transformers.AutoConfig.from_pretrained(str(p.parent), gguf_file=p.name)
    if not cfg.architectures:  # a GGUF is a causal LM; name its class so exports load with Auto classes
        from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

        arch = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(cfg.model_type)
        cfg.architectures = [arch] if arch else None
    return cfg


def _causal_lm():
    import transformers

    return transformers.AutoModelForCausalLM


@lru_cache(maxsize=8)
def _shapes(path: str, stamp: tuple[int, int]) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = _causal_lm().from_config(_hf_config(path, stamp))
    return {n: tuple(p.shape) for n, p in _unique_state(model).items()}


@lru_cache(maxsize=2)
def _tokenizer(path: str, _stamp: tuple[int, int], trust_remote_code: bool):
    import transformers

    p = Path(path)
    return transformers.AutoTokenizer.from_pretrained(str(p.parent), gguf_file=p.name,
                                                      trust_remote_code=trust_remote_code)


class GGUFFile:
    """One local .gguf file: config, name → shape table, dequantised tensors, tokenizer."""

    def __init__(self, path: str | os.PathLike):
        p = Path(str(path).strip()).expanduser()
        if not p.is_file():
            raise EnmpError(f"GGUF base '{path}' not found", where="base model",
                            fix="pass the path of a local .gguf file (download it first, e.g. `hf download "
                                "ORG/REPO FILE.gguf --local-dir DIR`)")
        require_llm_extra()
        self.path = p.resolve()
        st = self.path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size)
        try:
            self.hf_config = _hf_config(str(self.path), self._stamp)
        except Exception as exc:  # gguf raises ValueError / KeyError / struct errors on bad files
            raise _load_error(exc, self.path, "metadata") from None

    @property
    def name(self) -> str:
        return self.path.name

    @cached_property
    def config(self) -> dict:
        """config.json contents for exports: the dequantised weights are stored as float32."""
        cfg = json.loads(self.hf_config.to_json_string())
        cfg["torch_dtype"] = cfg["dtype"] = STORED_DTYPE
        return cfg

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """HF tensor name → shape, from a weightless (meta) model: no dequantisation needed to validate.

        Tied weights (lm_head = embed_tokens) appear once, as in a safetensors checkpoint.
        """
        return _shapes(str(self.path), self._stamp)

    def load_model(self, cls, dtype: torch.dtype, trust_remote_code: bool = False) -> torch.nn.Module:
        """transformers dequantises every tensor to `dtype` and maps the names to `cls`'s own.

        The parsed config is passed in (a copy: loading sets fields on it) to skip parsing the metadata again."""
        return cls.from_pretrained(str(self.path.parent), gguf_file=self.name, config=copy.deepcopy(self.hf_config),
                                   dtype=dtype, trust_remote_code=trust_remote_code)

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every dequantised tensor (float32) under the names in `shapes` (loads the whole model)."""
        try:
            model = self.load_model(_causal_lm(), torch.float32)
        except Exception as exc:
            raise _load_error(exc, self.path, "weights") from None
        return {n: t.detach() for n, t in _unique_state(model).items()}

    def tokenizer(self, trust_remote_code: bool = False):
        """A fresh copy each call: tasks set pad tokens and padding sides, exports must not inherit them."""
        try:
            return copy.deepcopy(_tokenizer(str(self.path), self._stamp, trust_remote_code))
        except Exception as exc:
            raise _load_error(exc, self.path, "tokenizer") from None

    def save_tokenizer(self, out: Path) -> None:
        self.tokenizer().save_pretrained(str(out))


def _unique_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """state_dict without the second name of tied parameters (save_pretrained drops those too)."""
    kept = {n for n, _ in model.named_parameters()}
    tied = {n for n, _ in model.named_parameters(remove_duplicate=False)} - kept
    return {n: t for n, t in model.state_dict().items() if n not in tied}

