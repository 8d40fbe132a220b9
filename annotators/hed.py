"""HED soft edges as Graph200K made them (`hed_512`): controlnet_aux's `HEDdetector` at a detection resolution of 512.

Output: (H, W) uint8, soft white edges on black, at the target's size.
controlnet_aux detectors take one image per call, so a batch runs image by
image on the loaded net (fp16 autocast on CUDA).
"""

from __future__ import annotations

from typing import Sequence

import torch

from .base import SampleInput
from .detector_maps import fit_to_target, short_side
from .model_backed import DetectorSettings, ModelBackedAnnotator
from .torch_runtime import inference
from .weights import ModelSpec

LLLYASVIEL_ANNOTATORS = "lllyasviel/Annotators"
LLLYASVIEL_REVISION = "982e7edaec38759d914a963c48c4726685de7d96"
LLLYASVIEL_LICENSE = "other (see the lllyasviel/Annotators card)"

HED_WEIGHTS = ModelSpec(LLLYASVIEL_ANNOTATORS, LLLYASVIEL_REVISION, LLLYASVIEL_LICENSE,
                        required=("ControlNetHED.pth",), patterns=("ControlNetHED.pth",))


class HedAnnotator(ModelBackedAnnotator):
    """controlnet_aux HEDdetector (ControlNetHED.pth), detection at 512, soft (not safe-stepped) edges."""

    name = "hed"
    produces = ("hed",)
    models = (HED_WEIGHTS,)
    Settings = DetectorSettings
    version = "1"
    batch_size = 8
    num_gpus = 0.1

    def load(self) -> None:
        from controlnet_aux import HEDdetector

        self.detector = HEDdetector.from_pretrained(self.weights_path(HED_WEIGHTS)).to(self.device)

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        out = []
        with inference(self.device, torch.float16):
            for sample in batch:
                h, w = sample.target.shape[:2]
                edges = self.detector(sample.target, detect_resolution=self.settings.detect_resolution,
                                      image_resolution=short_side(sample.target), safe=False, output_type="np")
                out.append({"hed": fit_to_target(edges, h, w, "L")})
        return out
