"""Depth as Graph200K made it (`depth-anything-v2_Large`): transformers `DepthAnythingForDepthEstimation`.

Output: (H, W) uint8 at the target's size, near is bright, min-max normalised
per image (`annotators.depth_map`). The default weights are
Depth-Anything-V2-Large (CC-BY-NC-4.0, non-commercial); for a permissive
dataset use `--set depth.model=LiheYoung/depth-anything-large-hf` (V1 Large,
Apache-2.0, same class). Same-size images are batched through the processor;
bf16 on CUDA, fp32 on CPU.
"""

from __future__ import annotations

from typing import Sequence

from .base import SampleInput
from .depth_map import normalise_depth
from .model_backed import ModelBackedAnnotator
from .torch_runtime import inference, same_size_groups, weights_dtype
from .weights import TRANSFORMERS_WEIGHTS, ModelSpec

DEPTH_ANYTHING_V2_LARGE = ModelSpec(
    "depth-anything/Depth-Anything-V2-Large-hf", "7581137eff8d4e94f6e796d3baea0e9fa79b22d2", "CC-BY-NC-4.0",
    required=("config.json", "preprocessor_config.json"), any_of=TRANSFORMERS_WEIGHTS)
PERMISSIVE_DEPTH_MODEL = "LiheYoung/depth-anything-large-hf"
"""Depth Anything V1 Large, Apache-2.0: the documented permissive option (`--set depth.model=...`)."""


class DepthAnnotator(ModelBackedAnnotator):
    """Depth Anything (V2 Large by default) relative depth, resized to the target and min-max normalised."""

    name = "depth"
    produces = ("depth",)
    models = (DEPTH_ANYTHING_V2_LARGE,)
    version = "1"
    batch_size = 8
    num_gpus = 0.25

    def load(self) -> None:
        from transformers import AutoImageProcessor, DepthAnythingForDepthEstimation

        path = self.weights_path(DEPTH_ANYTHING_V2_LARGE)
        self.dtype = weights_dtype(self.device)
        self.processor = AutoImageProcessor.from_pretrained(path)
        self.model = DepthAnythingForDepthEstimation.from_pretrained(path, dtype=self.dtype).to(self.device).eval()

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        out: list[dict | None] = [None] * len(batch)
        images = [s.target for s in batch]
        with inference(self.device):
            for group in same_size_groups(images):
                inputs = self.processor(images=[images[i] for i in group], return_tensors="pt")
                pixels = inputs["pixel_values"].to(self.device, self.dtype)
                outputs = self.model(pixel_values=pixels)
                sizes = [images[i].shape[:2] for i in group]
                for i, pred in zip(group, self.processor.post_process_depth_estimation(outputs, target_sizes=sizes)):
                    out[i] = {"depth": normalise_depth(pred["predicted_depth"].float().cpu().numpy())}
        return out
