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
from typing import Sequence

import torch

from .base import SampleInput
from .detector_maps import fit_to_target, short_side
from .hed import LLLYASVIEL_ANNOTATORS, LLLYASVIEL_LICENSE, LLLYASVIEL_REVISION
from .model_backed import ModelBackedAnnotator
from .torch_runtime import inference
from .weights import ModelSpec

BODY_FILE = "body_pose_model.pth"
OPENPOSE_WEIGHTS = ModelSpec(LLLYASVIEL_ANNOTATORS, LLLYASVIEL_REVISION, LLLYASVIEL_LICENSE,
                             required=(BODY_FILE,), patterns=(BODY_FILE,))


class OpenposeAnnotator(ModelBackedAnnotator):
    """controlnet_aux OpenposeDetector, body only (no hands, no face), detection at the image's own size."""

    name = "openpose"
    produces = ("openpose",)
    models = (OPENPOSE_WEIGHTS,)
    version = "1"
    batch_size = 8
    num_gpus = 0.2

    def load(self) -> None:
        from controlnet_aux import OpenposeDetector
        from controlnet_aux.open_pose.body import Body

        body = Body(os.path.join(self.weights_path(OPENPOSE_WEIGHTS), BODY_FILE)).to(self.device)
        self.detector = OpenposeDetector(body)

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        out = []
        with inference(self.device, torch.float16):
            for sample in batch:
                h, w = sample.target.shape[:2]
                full = short_side(sample.target)
                pose = self.detector(sample.target, detect_resolution=full, image_resolution=full,
                                     include_body=True, include_hand=False, include_face=False, output_type="np")
                out.append({"openpose": fit_to_target(pose, h, w, "RGB")})
        return out
