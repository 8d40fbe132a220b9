"""`dino`: subject fidelity as 100 x cosine of DINOv2 CLS embeddings (the paper's Table 2, ~80).

DreamBooth's DINO metric is the cosine of ViT CLS embeddings of the reference subject
and the generated image; with DINOv2 the CLS embedding is the model's `pooler_output`
(the layer-normed CLS token). The same features serve FID/KID when the Inception
weights are absent (Stein et al. 2023's FD_DINOv2 uses DINOv2 CLS features too).
"""

from __future__ import annotations

import torch

from .embedding import ImageEmbedder
from .metric_models import DINOV2_BASE


class DinoScorer(ImageEmbedder):
    """DINOv2 (any `AutoModel` with a CLS `pooler_output`) loaded once; `.image(a, b)` gives `dino`."""

    spec = DINOV2_BASE
    metric = "dino"

    @classmethod
    def from_folder(cls, path: str):
        from transformers import AutoImageProcessor, AutoModel

        return AutoModel.from_pretrained(path, dtype=torch.float32), AutoImageProcessor.from_pretrained(path)

    @property
    def features_name(self) -> str:
        return f"dinov2 {self.source} CLS embedding"

    def embed_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=pixel_values).pooler_output
