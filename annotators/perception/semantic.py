"""Semantic segmentation in the place of Graph200K's `uniformer` maps: transformers `UperNetForSemanticSegmentation`.

UniFormer (ControlNet's mmcv annotator) is not packaged; UperNet with a
ConvNeXt backbone trained on ADE20K (`openmmlab/upernet-convnext-small`, MIT)
predicts the same 150 classes. Output: (H, W, 3) uint8 at the target's size,
each class in the ADE20K palette ControlNet's seg maps use
(`annotators.perception.segmentation_palette`). Same-size images are batched; bf16 on
CUDA, fp32 on CPU.
"""

from __future__ import annotations

from .segmentation_palette import colourise_labels
from .image_to_map import ImageToMapAnnotator
from ..models.weights import TRANSFORMERS_WEIGHTS, ModelSpec

UPERNET_CONVNEXT_ADE20K = ModelSpec(
    "openmmlab/upernet-convnext-small", "main", "MIT",
    required=("config.json", "preprocessor_config.json"), any_of=TRANSFORMERS_WEIGHTS,
    patterns=("*.json", "*.safetensors", "pytorch_model.bin"))
"""Revision "main": pin it to the commit `python -m annotators download semantic_segmentation` prints."""


class SemanticSegmentationAnnotator(ImageToMapAnnotator):
    """UperNet-ConvNeXt (ADE20K, 150 classes) labels, coloured with the ADE20K palette."""

    name = "semantic_segmentation"
    produces = ("semantic_map",)
    models = (UPERNET_CONVNEXT_ADE20K,)
    version = "1"
    batch_size = 8
    num_gpus = 0.25
    model_class = "UperNetForSemanticSegmentation"

    def to_maps(self, outputs, sizes):
        labels = self.processor.post_process_semantic_segmentation(outputs, target_sizes=sizes)
        return [colourise_labels(label_map.cpu().numpy()) for label_map in labels]
