"""`clip_zero_shot`: CLIP's image encoder + this task's zero-shot head (its class prompts' text embeddings,
one unit row per class): the paper's vision setting."""

from __future__ import annotations

import torch

from ...errors import EnmpError
from .base import PreparedSplit, TaskKind, check_finite


class ClipZeroShotTask(TaskKind):
    """Image encoder + per-task zero-shot text-embedding head (the paper's vision setting)."""

    kind = "clip_zero_shot"
    model_class = "CLIPVisionModelWithProjection"
    processor = "image_processor"
    unit_head_rows = True

    def prepare(self, ex, image_processor, *, batch_size, max_length):
        if ex.images is None:
            raise EnmpError("clip_zero_shot needs an image column (data.image)", where=f"task '{self.name}'")
        from PIL import Image

        batches, labels = [], []
        for start in range(0, len(ex), batch_size):
            imgs = []
            for img in ex.images[start:start + batch_size]:
                if isinstance(img, dict) and img.get("path"):
                    img = img["path"]
                if isinstance(img, str):  # a file path column (csv/json data)
                    img = Image.open(img)
                imgs.append(img.convert("RGB") if hasattr(img, "convert") else img)
            pix = image_processor(images=imgs, return_tensors="pt")["pixel_values"]
            batches.append({"pixel_values": pix})
            labels.append(torch.tensor(ex.labels[start:start + batch_size]))
        return PreparedSplit(batches, labels, list(range(len(ex))))

    def predict(self, model, batch):
        out = model(pixel_values=batch["pixel_values"].to(next(model.parameters()).dtype))
        emb = getattr(out, "image_embeds", None)
        if emb is None:
            emb = out.pooler_output
        emb = torch.nn.functional.normalize(emb.float(), dim=-1)
        logits = self.head.logits(emb)
        check_finite(logits, self.name)
        return logits.argmax(-1)
