"""The dtype names configs and flags accept, and their torch types (one table for loading and export)."""

from __future__ import annotations

import torch

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
