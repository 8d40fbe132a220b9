"""HED soft edges as Graph200K made them (`hed_512`): controlnet_aux's `HEDdetector` at a detection resolution of 512.

Output: (H, W) uint8, soft white edges on black, at the target's size.
controlnet_aux detectors take one image per call, so a batch runs image by
image on the loaded net (fp16 autocast on CUDA).
"""

from __future__ import annotations

import numpy as np

from .detector_annotator import DetectorAnnotator
from .detector_maps import short_side
from ..models.weights import ModelSpec

LLLYASVIEL_ANNOTATORS = "lllyasviel/Annotators"
LLLYASVIEL_REVISION = "982e7edaec38759d914a963c48c4726685de7d96"
LLLYASVIEL_LICENSE = "other (see the lllyasviel/Annotators card)"

HED_WEIGHTS = ModelSpec(LLLYASVIEL_ANNOTATORS, LLLYASVIEL_REVISION, LLLYASVIEL_LICENSE,
                        required=("ControlNetHED.pth",), patterns=("ControlNetHED.pth",))


class HedAnnotator(DetectorAnnotator):
    """controlnet_aux HEDdetector (ControlNetHED.pth), detection at 512, soft (not safe-stepped) edges."""

    name = "hed"
    produces = ("hed",)
    models = (HED_WEIGHTS,)
    detector_class = "HEDdetector"
    version = "1"
    num_gpus = 0.1

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        return self.detector(rgb, detect_resolution=self.settings.detect_resolution, image_resolution=short_side(rgb),
                             safe=False, output_type="np")
