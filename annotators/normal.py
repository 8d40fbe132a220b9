"""Surface normals: controlnet_aux's `NormalBaeDetector` (scannet.pt) in Graph200K's colour convention.

Graph200K used DSINE, which has no maintained library route and a
non-commercial licence; NormalBae is the permissive stand-in. Its map is
taken as it comes (see `annotators.normal_map` for the convention, red left,
green up, blue toward the camera, and what was checked); after resizing to the
target, vectors are renormalised to unit length. Output: (H, W, 3) uint8 at
the target's size. One image per call.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .base import SampleInput
from .detector_maps import fit_to_target, short_side
from .hed import LLLYASVIEL_ANNOTATORS, LLLYASVIEL_LICENSE, LLLYASVIEL_REVISION
from .model_backed import DetectorSettings, ModelBackedAnnotator
from .normal_map import renormalise
from .torch_runtime import inference
from .weights import ModelSpec

NORMALBAE_WEIGHTS = ModelSpec(LLLYASVIEL_ANNOTATORS, LLLYASVIEL_REVISION, LLLYASVIEL_LICENSE,
                              required=("scannet.pt",), patterns=("scannet.pt",))


class NormalAnnotator(ModelBackedAnnotator):
    """controlnet_aux NormalBaeDetector at 512, renormalised at the target's size."""

    name = "normal"
    produces = ("normal",)
    models = (NORMALBAE_WEIGHTS,)
    Settings = DetectorSettings
    version = "1"
    batch_size = 8
    num_gpus = 0.2

    def load(self) -> None:
        from controlnet_aux import NormalBaeDetector

        self.detector = NormalBaeDetector.from_pretrained(self.weights_path(NORMALBAE_WEIGHTS)).to(self.device)

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        out = []
        with inference(self.device, torch.float16):
            for sample in batch:
                h, w = sample.target.shape[:2]
                normals = self.detector(sample.target, detect_resolution=self.settings.detect_resolution,
                                        image_resolution=short_side(sample.target), output_type="np")
                out.append({"normal": renormalise(fit_to_target(normals, h, w, "RGB"))})
        return out
