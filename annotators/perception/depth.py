"""Depth as Graph200K made it (`depth-anything-v2_Large`): transformers `DepthAnythingForDepthEstimation`.

Output: (H, W) uint8 at the target's size, near is bright, min-max normalised
per image (`annotators.perception.depth_map`). The default weights are
Depth-Anything-V2-Large (CC-BY-NC-4.0, non-commercial); for a permissive
dataset use `--set depth.model=LiheYoung/depth-anything-large-hf` (V1 Large,
Apache-2.0, same class). Same-size images are batched through the processor;
bf16 on CUDA, fp32 on CPU.
"""

from __future__ import annotations

from .depth_map import normalise_depth
from .image_to_map import ImageToMapAnnotator
from ..models.weights import TRANSFORMERS_WEIGHTS, ModelSpec

DEPTH_ANYTHING_V2_LARGE = ModelSpec(
    "depth-anything/Depth-Anything-V2-Large-hf", "7581137eff8d4e94f6e796d3baea0e9fa79b22d2", "CC-BY-NC-4.0",
    required=("config.json", "preprocessor_config.json"), any_of=TRANSFORMERS_WEIGHTS)
PERMISSIVE_DEPTH_MODEL = "LiheYoung/depth-anything-large-hf"
"""Depth Anything V1 Large, Apache-2.0: the documented permissive option (`--set depth.model=...`)."""


class DepthAnnotator(ImageToMapAnnotator):
    """Depth Anything (V2 Large by default) relative depth, resized to the target and min-max normalised."""

    name = "depth"
    produces = ("depth",)
    models = (DEPTH_ANYTHING_V2_LARGE,)
    version = "1"
    batch_size = 8
    num_gpus = 0.25
    model_class = "DepthAnythingForDepthEstimation"

    def to_maps(self, outputs, sizes):
        predictions = self.processor.post_process_depth_estimation(outputs, target_sizes=sizes)
        return [normalise_depth(p["predicted_depth"].float().cpu().numpy()) for p in predictions]
