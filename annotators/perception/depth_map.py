"""Depth as Graph200K stores it: 8-bit grayscale, near is bright, min-max normalised per image."""

from __future__ import annotations

import numpy as np


def normalise_depth(prediction: np.ndarray, near_is_large: bool = True) -> np.ndarray:
    """(H, W) uint8 map of a relative depth prediction, stretched to 0..255 with the nearest point at 255.

    Depth Anything predicts relative inverse depth (large = near), hence the
    default; pass `near_is_large=False` for metric depth. A constant map
    (no depth variation) becomes all zeros; non-finite values count as farthest."""
    pred = np.asarray(prediction, dtype=np.float64)
    if pred.ndim != 2:
        raise ValueError(f"depth prediction must be (H, W), got shape {pred.shape}")
    if not near_is_large:
        pred = -pred
    finite = np.isfinite(pred)
    if not finite.any():
        return np.zeros(pred.shape, np.uint8)
    lo, hi = pred[finite].min(), pred[finite].max()
    pred = np.where(finite, pred, lo)
    if hi - lo <= 1e-12 * max(1.0, abs(hi)):
        return np.zeros(pred.shape, np.uint8)
    return np.round((pred - lo) / (hi - lo) * 255.0).astype(np.uint8)
