"""Base of the annotators that run a transformers image model and turn its output into a map.

Depth Anything and UperNet share everything but the class and the post-processing:
the processor and model load once per worker (bf16 on CUDA, fp32 on CPU), same-size
targets go through the processor as one batch, and `to_maps` turns the batch's
outputs into one map per image at the target's size.
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Sequence

import numpy as np

from ..base import SampleInput
from ..models.model_backed import ModelBackedAnnotator
from ..models.torch_runtime import inference, same_size_groups, weights_dtype


class ImageToMapAnnotator(ModelBackedAnnotator):
    """One transformers model (`models[0]`, class `model_class`) producing the single node in `produces`."""

    model_class: ClassVar[str]
    """Name of the transformers class, e.g. "DepthAnythingForDepthEstimation"."""

    def load(self) -> None:
        import transformers

        path = self.weights_path(self.models[0])
        self.dtype = weights_dtype(self.device)
        self.processor = transformers.AutoImageProcessor.from_pretrained(path)
        model_class = getattr(transformers, self.model_class)
        self.model = model_class.from_pretrained(path, dtype=self.dtype).to(self.device).eval()

    @abstractmethod
    def to_maps(self, outputs: Any, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        """One uint8 map per image of the batch, each at its (height, width) in `sizes`."""

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        (node,) = self.produces
        out: list[dict | None] = [None] * len(batch)
        images = [s.target for s in batch]
        with inference(self.device):
            for group in same_size_groups(images):
                inputs = self.processor(images=[images[i] for i in group], return_tensors="pt")
                outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device, self.dtype))
                for i, image_map in zip(group, self.to_maps(outputs, [images[i].shape[:2] for i in group])):
                    out[i] = {node: image_map}
        return out
