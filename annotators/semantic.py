"""Semantic segmentation in the place of Graph200K's `uniformer` maps: transformers `UperNetForSemanticSegmentation`.

UniFormer (ControlNet's mmcv annotator) is not packaged; UperNet with a
ConvNeXt backbone trained on ADE20K (`openmmlab/upernet-convnext-small`, MIT)
predicts the same 150 classes. Output: (H, W, 3) uint8 at the target's size,
each class in the ADE20K palette ControlNet's seg maps use
(`annotators.segmentation_palette`). Same-size images are batched; bf16 on
CUDA, fp32 on CPU.
"""

from __future__ import annotations

from typing import Sequence

from .base import SampleInput
from .model_backed import ModelBackedAnnotator
from .segmentation_palette import colourise_labels
from .torch_runtime import inference, same_size_groups, weights_dtype
from .weights import TRANSFORMERS_WEIGHTS, ModelSpec

UPERNET_CONVNEXT_ADE20K = ModelSpec(
    "openmmlab/upernet-convnext-small", "main", "MIT",
    required=("config.json", "preprocessor_config.json"), any_of=TRANSFORMERS_WEIGHTS,
    patterns=("*.json", "*.safetensors", "pytorch_model.bin"))
"""Revision "main": pin it to the commit `python -m annotators download semantic_segmentation` prints."""


class SemanticSegmentationAnnotator(ModelBackedAnnotator):
    """UperNet-ConvNeXt (ADE20K, 150 classes) labels, coloured with the ADE20K palette."""

    name = "semantic_segmentation"
    produces = ("semantic_map",)
    models = (UPERNET_CONVNEXT_ADE20K,)
    version = "1"
    batch_size = 8
    num_gpus = 0.25

    def load(self) -> None:
        from transformers import AutoImageProcessor, UperNetForSemanticSegmentation

        path = self.weights_path(UPERNET_CONVNEXT_ADE20K)
        self.dtype = weights_dtype(self.device)
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.model = UperNetForSemanticSegmentation.from_pretrained(path, dtype=self.dtype).to(self.device).eval()

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        out: list[dict | None] = [None] * len(batch)
        images = [s.target for s in batch]
        with inference(self.device):
            for group in same_size_groups(images):
                inputs = self.processor(images=[images[i] for i in group], return_tensors="pt")
                outputs = self.model(pixel_values=inputs["pixel_values"].to(self.device, self.dtype))
                sizes = [images[i].shape[:2] for i in group]
                labels = self.processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
                for i, label_map in zip(group, labels):
                    out[i] = {"semantic_map": colourise_labels(label_map.cpu().numpy())}
        return out
