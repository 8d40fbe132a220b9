"""Body pose as Graph200K made it (`openpose_fullres_nohand`): controlnet_aux's OpenPose body net at full resolution.

Output: (H, W, 3) uint8, OpenPose-coloured limbs and joints on black (controlnet_aux's
`draw_poses`), at the target's size; black when nobody is found.

Only `body_pose_model.pth` is loaded: `OpenposeDetector.from_pretrained`
would also load the hand and face nets (300 MB, ~1 GB of GPU memory) that a
body-only map never runs, so the detector is built from controlnet_aux's own
`Body` loader instead. One image per call (the library's API).
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .detector_annotator import DetectorAnnotator
from .detector_maps import short_side
from .hed import LLLYASVIEL_ANNOTATORS, LLLYASVIEL_LICENSE, LLLYASVIEL_REVISION
from ..models.model_backed import ModelSettings
from ..models.weights import ModelSpec

BODY_FILE = "body_pose_model.pth"
OPENPOSE_WEIGHTS = ModelSpec(LLLYASVIEL_ANNOTATORS, LLLYASVIEL_REVISION, LLLYASVIEL_LICENSE,
                             required=(BODY_FILE,), patterns=(BODY_FILE,))


class OpenposeAnnotator(DetectorAnnotator):
    """controlnet_aux OpenposeDetector, body only (no hands, no face), detection at the image's own size."""

    name = "openpose"
    produces = ("openpose",)
    models = (OPENPOSE_WEIGHTS,)
    Settings = ModelSettings  # detection runs at the image's own size: no detect_resolution
    mode = "RGB"
    version = "1"
    num_gpus = 0.2

    def build_detector(self, folder: str) -> Any:
        from controlnet_aux import OpenposeDetector
        from controlnet_aux.open_pose.body import Body

        return OpenposeDetector(Body(os.path.join(folder, BODY_FILE)).to(self.device))

    def detect(self, rgb: np.ndarray) -> np.ndarray:
        full = short_side(rgb)
        return self.detector(rgb, detect_resolution=full, image_resolution=full,
                             include_body=True, include_hand=False, include_face=False, output_type="np")
