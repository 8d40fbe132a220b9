"""What CLIP and DINOv2 scoring share: load once, embed images in batches, compare by cosine.

A scorer loads its transformers model and processor once through `from_pretrained`
(a local folder, `<model_dir>/<repo_id>`, or the Hugging Face cache; see
`metric_models.locate`) and runs in fp32 under `torch.inference_mode` (metric values
should not move with the precision). Images go through the model's own processor
(CLIP: shortest side to 224, centre crop; DINOv2: 256, crop 224).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Sequence

import numpy as np
import torch

from annotators.models.torch_runtime import inference_device
from annotators.models.weights import ModelSpec

from ..errors import InferenceError
from .metric_models import locate
from .pixels import ImageLike, as_rgb


def cosine_x100(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """100 x the cosine similarity of each row of `a` with the same row of `b`."""
    return (100.0 * torch.nn.functional.cosine_similarity(a.double(), b.double(), dim=-1)).tolist()


def check_pairs(a: Sequence, b: Sequence, metric: str) -> None:
    if len(a) != len(b):
        raise InferenceError(f"{metric}: {len(a)} images against {len(b)}; pass one partner per image")


class ImageEmbedder(ABC):
    """Base of `ClipScorer` and `DinoScorer`: a model, its processor, and image features in batches."""

    spec: ClassVar[ModelSpec]
    metric: ClassVar[str]
    """The metric name the scorer's own image-image score is reported under (clip_i, dino)."""

    def __init__(self, model, processor, source: str, device: torch.device, batch_size: int = 32,
                 path: str | None = None):
        self.model = model.to(device).eval()
        self.processor = processor
        self.source = source
        """The hub id or folder asked for (reported with every figure)."""
        self.path = path or source
        """The local folder the weights were loaded from (a cache snapshot names its revision)."""
        self.device = device
        self.batch_size = batch_size

    @classmethod
    def load(cls, model: str | None = None, model_dir: str | None = None, device: str | torch.device | None = None,
             batch_size: int = 32) -> "ImageEmbedder":
        """Load `model` (a hub id or a local folder; default `spec.repo_id`) without touching the network.

        Raises `MetricUnavailable` (with the reason and how to enable it) when the weights are not here."""
        path = locate(cls.spec, model, model_dir, cls.metric)
        net, processor = cls.from_folder(path)
        device = torch.device(device) if device is not None else inference_device()
        return cls(net, processor, model or cls.spec.repo_id, device, batch_size, path)

    @classmethod
    @abstractmethod
    def from_folder(cls, path: str):
        """(model, processor) loaded with `from_pretrained` from a local folder."""

    @property
    @abstractmethod
    def features_name(self) -> str:
        """What `features` returns, for the record (e.g. `dinov2 facebook/dinov2-base CLS embedding`)."""

    @abstractmethod
    def embed_pixels(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """(N, D) image features of processed `pixel_values`."""

    def features(self, images: Sequence[ImageLike]) -> torch.Tensor:
        """(N, D) float32 image features on the CPU, unnormalised (FID/KID use them as they are)."""
        out = []
        with torch.inference_mode():
            for start in range(0, len(images), self.batch_size):
                chunk = [np.require(as_rgb(image, f"{self.metric} image {start + i}"), requirements="W")
                         for i, image in enumerate(images[start:start + self.batch_size])]
                pixels = self.processor(images=chunk, return_tensors="pt")["pixel_values"]
                out.append(self.embed_pixels(pixels.to(self.device, torch.float32)).float().cpu())
        if not out:
            return torch.zeros(0, 0)
        return torch.cat(out)

    def image(self, images_a: Sequence[ImageLike], images_b: Sequence[ImageLike]) -> list[float]:
        """100 x cosine of each image's embedding with its partner's (clip_i, dino; the paper prints 89.63)."""
        check_pairs(images_a, images_b, self.metric)
        if not images_a:
            return []
        return cosine_x100(self.features(list(images_a)), self.features(list(images_b)))
