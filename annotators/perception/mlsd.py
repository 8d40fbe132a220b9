"""M-LSD straight lines: controlnet_aux's `MLSDdetector` (mlsd_large_512_fp32.pth), thr_v 0.1, thr_d 0.1, at 512.

Output: (H, W) uint8, white line segments on black, at the target's size.
One image per detector call (controlnet_aux's API); fp16 autocast on CUDA.
"""

from __future__ import annotations

import numpy as np

from .detector_annotator import DetectorAnnotator
from .detector_maps import short_side
from .hed import LLLYASVIEL_ANNOTATORS, LLLYASVIEL_LICENSE, LLLYASVIEL_REVISION
from ..models.weights import ModelSpec

MLSD_WEIGHTS = ModelSpec(LLLYASVIEL_ANNOTATORS, LLLYASVIEL_REVISION, LLLYASVIEL_LICENSE,
                         required=("mlsd_large_512_fp32.pth",), patterns=("mlsd_large_512_fp32.pth",))
SCORE_THRESHOLD = 0.1  # thr_v
DISTANCE_THRESHOLD = 0.1  # thr_d


class MlsdAnnotator(DetectorAnnotator):
    """controlnet_aux MLSDdetector with the ControlNet defaults Graph200K used."""

    name = "mlsd"
    produces = ("mlsd",)
    models = (MLSD_WEIGHTS,)
    detector_class = "MLSDdetector"
    version = "1"
    num_gpus = 0.1

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        return self.detector(rgb, thr_v=SCORE_THRESHOLD, thr_d=DISTANCE_THRESHOLD,
                             detect_resolution=self.settings.detect_resolution, image_resolution=short_side(rgb),
                             output_type="np")
