"""The foreground mask behind Graph200K's `foreground` and `background` nodes: BiRefNet background removal.

Graph200K used BEN2 (its doc says RMBG-2.0, which is non-commercial).
transformers has no native salient-object model, so the route is BiRefNet
(`ZhengPeng7/BiRefNet`, MIT) through `AutoModelForImageSegmentation`, which
runs the model's own code from its hub repo: it stays off unless
`--trust-remote-code` is given, and loads at a pinned revision.
Output: `foreground_mask.png`, (H, W) uint8, white foreground on black (soft
edges: the model's probability x 255). The `foreground` and `background`
nodes are derived from it when a grid is sampled (target x mask, target x
(1 - mask); see their declarations in graph200k.catalog).
Batched at the model's fixed 1024x1024 input; fp16 on CUDA, fp32 on CPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from ..base import Availability, SampleInput
from ..models.model_backed import ModelBackedAnnotator, ModelSettings
from ..models.torch_runtime import inference, weights_dtype
from ..models.weights import ModelSpec

BIREFNET = ModelSpec(
    "ZhengPeng7/BiRefNet", "e2bf8e4460fc8fa32bba5ea4d94b3233d367b0e4", "MIT",
    required=("config.json", "model.safetensors"), patterns=("*.json", "*.safetensors", "*.py"))
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class ForegroundSettings(ModelSettings):
    trust_remote_code: bool = False
    """Run the model repo's own code (BiRefNet has no transformers class); `--trust-remote-code` sets it."""
    resolution: int = 1024


class ForegroundMaskAnnotator(ModelBackedAnnotator):
    """BiRefNet foreground probability at 1024x1024, resized to the target, as a white-on-black mask."""

    name = "foreground_mask"
    produces = ("foreground",)
    models = (BIREFNET,)
    Settings = ForegroundSettings
    version = "1"
    batch_size = 8
    num_gpus = 0.25

    def availability(self) -> Availability:
        if not self.settings.trust_remote_code:
            return Availability(False, f"{BIREFNET.repo_id} runs its own code from the hub repo",
                                f"pass --trust-remote-code (runs that code at revision {BIREFNET.revision[:12]})")
        return super().availability()

    def load(self) -> None:
        from transformers import AutoModelForImageSegmentation

        self.dtype = weights_dtype(self.device, torch.float16)
        model = AutoModelForImageSegmentation.from_pretrained(self.weights_path(BIREFNET), trust_remote_code=True)
        self.model = model.to(self.device, self.dtype).eval()
        self.mean = torch.tensor(IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def preprocess(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """(N, 3, R, R) normalised input, as BiRefNet's own inference code prepares it."""
        size = self.settings.resolution
        tensors = [torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float() / 255
                   for image in images]
        resized = torch.cat([torch.nn.functional.interpolate(t, size=(size, size), mode="bilinear",
                                                             align_corners=False) for t in tensors])
        return ((resized - self.mean) / self.std).to(self.dtype)

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        with inference(self.device):
            logits = self.model(self.preprocess([s.target for s in batch]))[-1]
            probabilities = logits.float().sigmoid()
            out = []
            for sample, prob in zip(batch, probabilities):
                h, w = sample.target.shape[:2]
                mask = torch.nn.functional.interpolate(prob[None], size=(h, w), mode="bilinear", align_corners=False)
                out.append({"foreground": (mask[0, 0].clamp(0, 1) * 255).round().byte().cpu().numpy()})
        return out
