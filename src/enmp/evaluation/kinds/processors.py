"""How a kind's inputs are preprocessed: the base's tokenizer or its image processor, by the name a kind
declares (`TaskKind.processor`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ...errors import EnmpError

if TYPE_CHECKING:
    from ...adapters import BaseCheckpoint


def load_tokenizer(base: "BaseCheckpoint", trust_remote_code: bool) -> Any:
    """The base's tokenizer: from its directory, or from inside the .gguf file a GGUF base is."""
    if base.gguf is not None:
        return base.gguf.tokenizer(trust_remote_code)
    import transformers

    try:
        return transformers.AutoTokenizer.from_pretrained(str(base.dir), trust_remote_code=trust_remote_code)
    except Exception as e:
        raise EnmpError(f"cannot load the base model's tokenizer ({type(e).__name__})", where=str(base.dir),
                        fix="the base directory needs tokenizer files") from None


def load_image_processor(base: "BaseCheckpoint", trust_remote_code: bool) -> Any:
    """The base's image processor, or CLIP's built from its config for a bare vision checkpoint."""
    import transformers

    try:
        return transformers.AutoImageProcessor.from_pretrained(str(base.dir))
    except Exception:  # a bare vision checkpoint: build CLIP's processor from the config
        size = (base.config.get("vision_config") or base.config).get("image_size", 224)
        return transformers.CLIPImageProcessor(size={"shortest_edge": size},
                                               crop_size={"height": size, "width": size})


PROCESSORS: dict[str, Callable[["BaseCheckpoint", bool], Any]] = {
    "tokenizer": load_tokenizer, "image_processor": load_image_processor}
