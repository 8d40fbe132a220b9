"""Surface normals: controlnet_aux's `NormalBaeDetector` (scannet.pt) in Graph200K's colour convention.

Graph200K used DSINE, which has no maintained library route and a
non-commercial licence; NormalBae is the permissive stand-in. Its map is
taken as it comes (see `annotators.perception.normal_map` for the convention, red left,
green up, blue toward the camera, and what was checked); after resizing to the
target, vectors are renormalised to unit length. Output: (H, W, 3) uint8 at
the target's size. One image per call.
"""

from __future__ import annotations

import numpy as np

from .detector_annotator import DetectorAnnotator
from .detector_maps import short_side
from .hed import LLLYASVIEL_ANNOTATORS, LLLYASVIEL_LICENSE, LLLYASVIEL_REVISION
from .normal_map import renormalise
from ..models.weights import ModelSpec

NORMALBAE_WEIGHTS = ModelSpec(LLLYASVIEL_ANNOTATORS, LLLYASVIEL_REVISION, LLLYASVIEL_LICENSE,
                              required=("scannet.pt",), patterns=("scannet.pt",))


class NormalAnnotator(DetectorAnnotator):
    """controlnet_aux NormalBaeDetector at 512, renormalised at the target's size."""

    name = "normal"
    produces = ("normal",)
    models = (NORMALBAE_WEIGHTS,)
    detector_class = "NormalBaeDetector"
    mode = "RGB"
    version = "1"
    num_gpus = 0.2

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        return self.detector(rgb, detect_resolution=self.settings.detect_resolution, image_resolution=short_side(rgb),
                             output_type="np")

    def finish(self, fitted: np.ndarray) -> np.ndarray:
        return renormalise(fitted)
