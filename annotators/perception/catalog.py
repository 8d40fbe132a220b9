"""The model-backed perception annotators, in the order `python -m annotators list` shows them."""

from __future__ import annotations

from .depth import DepthAnnotator
from .foreground import ForegroundMaskAnnotator
from .grounding import GroundedSegmentationAnnotator
from .hed import HedAnnotator
from .mlsd import MlsdAnnotator
from .normal import NormalAnnotator
from .openpose import OpenposeAnnotator
from .sam2_masks import Sam2MaskAnnotator
from .semantic import SemanticSegmentationAnnotator

PERCEPTION_ANNOTATORS = (
    HedAnnotator,
    MlsdAnnotator,
    OpenposeAnnotator,
    DepthAnnotator,
    NormalAnnotator,
    SemanticSegmentationAnnotator,
    Sam2MaskAnnotator,
    ForegroundMaskAnnotator,
    GroundedSegmentationAnnotator,
)
