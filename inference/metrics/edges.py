"""Canny F1: how well the generated image keeps the edges it was conditioned on.

The generated image is re-annotated with the data's own canny annotator
(`annotators.perception.canny.canny_edges`: thresholds 100/200, detection with the short side
at 512, as Graph200K made the maps) at the condition's size, and compared with the
input edge map pixel by pixel. With `tolerance=0` (the default) this is
OminiControl's plain per-pixel F1 over edge pixels: F1 = 2 TP / (|predicted| +
|reference|). With `tolerance=t`, an edge pixel counts as matched when an edge of
the other map lies within t pixels (Chebyshev distance, a (2t+1)-square window).
Two maps without edges score 1; one without edges against one with edges, 0.
"""

from __future__ import annotations

from typing import Iterable

import cv2
import numpy as np

from ..errors import InferenceError
from .pixels import ImageLike, as_gray, as_rgb, check_same_shape, resize_to


def _binary(edge_map: ImageLike, what: str) -> np.ndarray:
    return (as_gray(edge_map, what) > 127).astype(np.uint8)


def edge_f1(predicted: ImageLike, reference: ImageLike, tolerance: int = 0) -> float:
    """F1 over edge pixels (values > 127) of two same-size edge maps; see the module docstring."""
    if tolerance < 0:
        raise InferenceError(f"edge_f1: tolerance must be >= 0 pixels, got {tolerance}; 0 is the plain per-pixel F1")
    pred, ref = _binary(predicted, "edge_f1 predicted"), _binary(reference, "edge_f1 reference")
    check_same_shape(pred, ref, "edge_f1")
    n_pred, n_ref = int(pred.sum()), int(ref.sum())
    if n_pred == 0 or n_ref == 0:
        return 1.0 if n_pred == n_ref else 0.0
    if tolerance:
        kernel = np.ones((2 * tolerance + 1, 2 * tolerance + 1), np.uint8)
        matched_pred = int((pred & cv2.dilate(ref, kernel)).sum())
        matched_ref = int((ref & cv2.dilate(pred, kernel)).sum())
    else:
        matched_pred = matched_ref = int((pred & ref).sum())
    precision, recall = matched_pred / n_pred, matched_ref / n_ref
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def canny_f1(condition_edges: ImageLike, generated: ImageLike, tolerance: int = 0) -> float:
    """F1 between the input edge map and the canny edges of `generated` (scaled to the map's size first)."""
    from annotators.perception.canny import canny_edges

    reference = as_gray(condition_edges, "canny_f1 condition edges")
    rgb = resize_to(as_rgb(generated, "canny_f1 generated"), reference.shape[:2])
    return edge_f1(canny_edges(rgb), reference, tolerance)


def canny_f1_pairs(pairs: Iterable[tuple[ImageLike, ImageLike]], tolerance: int = 0) -> list[float]:
    """`canny_f1` of each (condition edges, generated image) pair: a few ms each at 512, no model."""
    return [canny_f1(condition, generated, tolerance) for condition, generated in pairs]
