"""Bringing a controlnet_aux detector's map back to the target's exact size and storage mode.

controlnet_aux returns maps at a size rounded to a multiple of 64; Graph200K
stores every map at the target's size."""

from __future__ import annotations

import cv2
import numpy as np


def fit_to_target(detected: np.ndarray, height: int, width: int, mode: str) -> np.ndarray:
    """(H, W) uint8 for mode "L" (the detector's replicated channels folded to one), (H, W, 3) for "RGB"."""
    detected = np.asarray(detected)
    if detected.dtype != np.uint8:
        raise ValueError(f"detector map must be uint8, got {detected.dtype}")
    if detected.shape[:2] != (height, width):
        detected = cv2.resize(detected, (width, height), interpolation=cv2.INTER_LINEAR)
    if mode == "L":
        return detected if detected.ndim == 2 else detected.max(axis=2)
    if mode == "RGB":
        return np.repeat(detected[..., None], 3, axis=2) if detected.ndim == 2 else detected[..., :3]
    raise ValueError(f"unsupported mode {mode!r}")


def short_side(image: np.ndarray) -> int:
    return int(min(image.shape[:2]))
