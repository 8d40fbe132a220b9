"""M-LSD straight lines: controlnet_aux's `MLSDdetector` (mlsd_large_512_fp32.pth), thr_v 0.1, thr_d 0.1, at 512.

Output: (H, W) uint8, white line segments on black, at the target's size.
One image per detector call (controlnet_aux's API); fp16 autocast on CUDA.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .base import SampleInput
from .detector_maps import fit_to_target, short_side
from .hed import LLLYASVIEL_ANNOTATORS, LLLYASVIEL_LICENSE, LLLYASVIEL_REVISION
from .model_backed import DetectorSettings, ModelBackedAnnotator
from .torch_runtime import inference
from .weights import ModelSpec

MLSD_WEIGHTS = ModelSpec(LLLYASVIEL_ANNOTATORS, LLLYASVIEL_REVISION, LLLYASVIEL_LICENSE,
                         required=("mlsd_large_512_fp32.pth",), patterns=("mlsd_large_512_fp32.pth",))
SCORE_THRESHOLD = 0.1  # thr_v
DISTANCE_THRESHOLD = 0.1  # thr_d


class MlsdAnnotator(ModelBackedAnnotator):
    """controlnet_aux MLSDdetector with the ControlNet defaults Graph200K used."""

    name = "mlsd"
    produces = ("mlsd",)
    models = (MLSD_WEIGHTS,)
    Settings = DetectorSettings
    version = "1"
    batch_size = 8
    num_gpus = 0.1

    def load(self) -> None:
        from controlnet_aux import MLSDdetector

        self.detector = MLSDdetector.from_pretrained(self.weights_path(MLSD_WEIGHTS)).to(self.device)

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        out = []
        with inference(self.device, torch.float16):
            for sample in batch:
                h, w = sample.target.shape[:2]
                lines = self.detector(sample.target, thr_v=SCORE_THRESHOLD, thr_d=DISTANCE_THRESHOLD,
                                      detect_resolution=self.settings.detect_resolution,
                                      image_resolution=short_side(sample.target), output_type="np")
                out.append({"mlsd": fit_to_target(lines, h, w, "L")})
        return out
