"""Annotators used only by the tests: one that needs weights that are absent, one that reads another node.

They live in an importable module because Ray actors import annotators by
`module:qualname`."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from annotators.base import Annotator, Availability, hub_weights_available
from annotators.perception.canny import CannyAnnotator


class MissingWeightsHed(Annotator):
    """Declares a Hub model that is not in the cache, so availability says no."""

    name = "hed_missing_weights"
    produces = ("hed",)
    model_id = "lllyasviel/Annotators"
    revision = "982e7edaec38759d914a963c48c4726685de7d96"

    @classmethod
    def is_available(cls) -> Availability:
        return hub_weights_available(cls.model_id, cls.revision, ["ControlNetHED.pth"])

    def annotate(self, batch):
        raise RuntimeError("never runs: weights are not available")


@dataclass(frozen=True)
class HoughSettings:
    threshold: int = 40
    model_dir: str | None = None  # a placement setting: never changes the output


class HoughLines(Annotator):
    """Straight lines (probabilistic Hough) over the stored canny map: reads a node another annotator wrote."""

    name = "hough_lines"
    produces = ("mlsd",)
    extra_needs = ("canny",)
    batch_size = 4
    Settings = HoughSettings

    def annotate(self, batch):
        out = []
        for sample in batch:
            edges = sample.nodes["canny"]
            lines = cv2.HoughLinesP(edges, 1, np.pi / 180, threshold=self.settings.threshold, minLineLength=20,
                                    maxLineGap=3)
            canvas = np.zeros(edges.shape, np.uint8)
            for x1, y1, x2, y2 in ([] if lines is None else lines[:, 0]):
                cv2.line(canvas, (int(x1), int(y1)), (int(x2), int(y2)), 255, 1)
            out.append({"mlsd": canvas})
        return out


class FailsOnGrey(CannyAnnotator):
    """Canny that raises for grey images: exercises batch isolation and the errors record."""

    name = "canny_fails_on_grey"

    def annotate(self, batch):
        for sample in batch:
            t = sample.target
            if (t[..., 0] == t[..., 1]).all() and (t[..., 1] == t[..., 2]).all():
                raise ValueError("grey image refused")
        return super().annotate(batch)


class LoadFails(Annotator):
    """Its model cannot load (as with corrupt weights): the run must report it and go on."""

    name = "load_fails"
    produces = ("normal",)

    def load(self):
        raise OSError("weights file is corrupt: normal.safetensors")

    def annotate(self, batch):
        raise RuntimeError("never runs: load() failed")
