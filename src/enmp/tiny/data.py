"""Fake run files beside the tiny models: in-vocabulary sentences, random images, CSV splits, task heads.

Labels and heads are random, so accuracies mean nothing; the files have the formats a real run reads.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Optional, Sequence

import torch

from .models import WORDS

#: sentence words: whole words of the tokenizers' vocabulary (not single letters, digits or punctuation)
SENTENCE_WORDS = tuple(w for w in WORDS if w.isalpha() and len(w) > 1)


def sentence(rng: random.Random, length: tuple[int, int] = (3, 9)) -> str:
    """Random in-vocabulary words, between `length` bounds (inclusive) of them."""
    return " ".join(rng.choice(SENTENCE_WORDS) for _ in range(rng.randint(*length)))


def write_images(root: Path, rng: random.Random, n: int, size: int = 32) -> list[str]:
    """`n` random RGB PNGs of size × size under `root` (img0.png, ...); returns their paths."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        px = bytes(rng.randrange(256) for _ in range(size * size * 3))
        path = root / f"img{i}.png"
        Image.frombytes("RGB", (size, size), px).save(path)
        paths.append(str(path))
    return paths


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows of dicts as a CSV with a header (the columns of the first row)."""
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def write_head(dir: Path, labels: Sequence[str], dim: int, *, generator: Optional[torch.Generator] = None,
               bias: bool = False, unit_rows: bool = False, pooling: Optional[str] = None) -> Path:
    """A random linear head (one row per label over `dim` features) as dir/head.safetensors + head.json.

    `unit_rows` normalises the rows, as CLIP zero-shot heads (class text embeddings) are; `pooling` goes to
    head.json (absent: the task kind's default). Returns the .safetensors path.
    """
    from safetensors.torch import save_file

    dir.mkdir(parents=True, exist_ok=True)
    weight = torch.randn(len(labels), dim, generator=generator)
    if unit_rows:
        weight = torch.nn.functional.normalize(weight, dim=-1)
    tensors = {"weight": weight.contiguous()}
    if bias:
        tensors["bias"] = torch.randn(len(labels), generator=generator)
    path = dir / "head.safetensors"
    save_file(tensors, str(path))
    (dir / "head.json").write_text(json.dumps({"labels": list(labels), **({"pooling": pooling} if pooling else {})}))
    return path
