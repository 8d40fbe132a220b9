"""SAM2 automatic masks as Graph200K's `sam2_mask`: transformers `Sam2Model` through the `mask-generation` pipeline.

The pipeline does the automatic mask generation: a points grid over the
image, batched prompts (`points_per_batch`), the predicted-IoU and stability
filters and NMS between masks. Masks smaller than `min_area_fraction` of the
image are dropped, then every mask is painted in its own colour, larger masks
first, black where none (`annotators.perception.colour_masks`).
Output: (H, W, 3) uint8 at the target's size. fp32 weights under bf16 autocast
on CUDA (as SAM2's own code runs), fp32 on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from ..base import SampleInput
from .colour_masks import render_masks
from ..models.model_backed import ModelBackedAnnotator, ModelSettings
from ..models.torch_runtime import inference
from ..models.weights import TRANSFORMERS_WEIGHTS, ModelSpec

SAM2_LARGE = ModelSpec(
    "facebook/sam2.1-hiera-large", "665f8e2ad61cf5f53d65644ff27c8ee525124610", "Apache-2.0",
    required=("config.json",), any_of=TRANSFORMERS_WEIGHTS)


@dataclass(frozen=True)
class Sam2MaskSettings(ModelSettings):
    """SAM2 automatic-mask-generator defaults (the `SAM2AutomaticMaskGenerator` ones), plus an area floor."""

    points_per_side: int = 32
    points_per_batch: int = 64
    pred_iou_thresh: float = 0.8
    stability_score_thresh: float = 0.95
    nms_thresh: float = 0.7
    min_area_fraction: float = 0.0005


def automatic_masks(generator, image: np.ndarray, settings: Sam2MaskSettings) -> list[np.ndarray]:
    """Boolean (H, W) masks of `image` from a `mask-generation` pipeline, small ones dropped."""
    h, w = image.shape[:2]
    result = generator(Image.fromarray(image), points_per_crop=settings.points_per_side,
                       points_per_batch=settings.points_per_batch, pred_iou_thresh=settings.pred_iou_thresh,
                       stability_score_thresh=settings.stability_score_thresh,
                       crops_nms_thresh=settings.nms_thresh)
    masks = [np.asarray(m.cpu() if hasattr(m, "cpu") else m, dtype=bool) for m in result["masks"]]
    floor = settings.min_area_fraction * h * w
    return [m for m in masks if m.shape == (h, w) and np.count_nonzero(m) >= max(1.0, floor)]


class Sam2MaskAnnotator(ModelBackedAnnotator):
    """SAM 2.1 Hiera-Large automatic masks, one flat colour per mask."""

    name = "sam2_mask"
    produces = ("sam2_mask",)
    models = (SAM2_LARGE,)
    Settings = Sam2MaskSettings
    version = "1"
    batch_size = 4
    num_gpus = 0.5

    def load(self) -> None:
        from transformers import AutoProcessor, Sam2Model, pipeline

        path = self.weights_path(SAM2_LARGE)
        processor = AutoProcessor.from_pretrained(path)
        model = Sam2Model.from_pretrained(path).to(self.device).eval()
        self.generator = pipeline("mask-generation", model=model, image_processor=processor.image_processor,
                                  device=self.device)

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        out = []
        with inference(self.device, torch.bfloat16):
            for sample in batch:
                h, w = sample.target.shape[:2]
                canvas, _ = render_masks(automatic_masks(self.generator, sample.target, self.settings), h, w)
                out.append({"sam2_mask": canvas})
        return out
