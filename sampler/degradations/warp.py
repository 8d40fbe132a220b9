"""Pixel-grid helpers shared by the geometric degradations (cached per image size)."""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np


@lru_cache(maxsize=8)
def base_grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Identity remap coordinates (x, y), float32, read-only."""
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
    gx.flags.writeable = False
    gy.flags.writeable = False
    return gx, gy


@lru_cache(maxsize=16)
def radial_maps(h: int, w: int, k1: float, k2: float) -> tuple[np.ndarray, np.ndarray]:
    """Remap for r' = r (1 + k1 r^2 + k2 r^4), r in coordinates normalised to [-1, 1]
    per axis: k > 0 samples further out (barrel), k < 0 further in (pincushion)."""
    gx, gy = base_grid(h, w)
    cx, cy = (w - 1) / 2, (h - 1) / 2
    nx, ny = (gx - cx) / cx, (gy - cy) / cy
    r2 = nx * nx + ny * ny
    gain = 1 + k1 * r2 + k2 * r2 * r2
    map_x, map_y = cv2.convertMaps(nx * gain * cx + cx, ny * gain * cy + cy, cv2.CV_16SC2)
    map_x.flags.writeable = False
    map_y.flags.writeable = False
    return map_x, map_y


def smooth_field(rng: np.random.Generator, h: int, w: int, correlation_px: float) -> np.ndarray:
    """A zero-mean, unit-RMS random field of size (h, w) with Gaussian correlation length
    `correlation_px`, drawn on a coarse grid (2 cells per correlation length) and
    upsampled: the same seed gives the same pattern at any image size."""
    cells = 2.0 / max(correlation_px, 1e-3)
    gh, gw = max(4, round(h * cells)), max(4, round(w * cells))
    coarse = rng.uniform(-1.0, 1.0, size=(gh, gw)).astype(np.float32)
    coarse = cv2.GaussianBlur(coarse, (0, 0), 2.0, borderType=cv2.BORDER_REFLECT_101)
    coarse -= coarse.mean()
    coarse /= max(float(coarse.std()), 1e-6)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
