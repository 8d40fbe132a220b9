"""The shape every controlnet_aux annotator shares: load the detector once, then one image per call.

controlnet_aux detectors take a single image per call, so a batch runs image by
image on the loaded net (fp16 autocast on CUDA). Each map comes back at the
detector's size (a multiple of 64) and is brought to the target's exact size and
storage mode (`detector_maps.fit_to_target`). A subclass names its detector and
says how to call it (`detect`) and, if needed, how to finish the map (`finish`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar, Sequence

import numpy as np
import torch

from ..base import SampleInput
from .detector_maps import fit_to_target
from ..models.model_backed import DetectorSettings, ModelBackedAnnotator
from ..models.torch_runtime import inference


class DetectorAnnotator(ModelBackedAnnotator):
    """A controlnet_aux detector producing one map node (`produces[0]`) from the target image."""

    Settings: ClassVar[type] = DetectorSettings
    detector_class: ClassVar[str] = ""
    """The controlnet_aux class loaded with `from_pretrained(<weights folder>)`."""
    mode: ClassVar[str] = "L"
    """Storage mode of the map: "L" (single channel) or "RGB"."""
    batch_size = 8

    def build_detector(self, folder: str) -> Any:
        import controlnet_aux

        return getattr(controlnet_aux, self.detector_class).from_pretrained(folder).to(self.device)

    @abstractmethod
    def detect(self, rgb: np.ndarray) -> np.ndarray:
        """The detector's uint8 map for one (H, W, 3) image, at the detector's own size."""

    def finish(self, fitted: np.ndarray) -> np.ndarray:
        """The map at the target's size, as stored (default: as is)."""
        return fitted

    def load(self) -> None:
        self.detector = self.build_detector(self.weights_path(self.models[0]))

    def annotate(self, batch: Sequence[SampleInput]) -> list[dict]:
        out = []
        with inference(self.device, torch.float16):
            for sample in batch:
                h, w = sample.target.shape[:2]
                out.append({self.produces[0]: self.finish(fit_to_target(self.detect(sample.target), h, w, self.mode))})
        return out
