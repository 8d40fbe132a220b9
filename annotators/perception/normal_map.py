"""Surface normals as RGB, in the convention of Graph200K's (DSINE) normal maps.

Each pixel's unit normal (nx, ny, nz) is stored as round((n + 1) / 2 * 255),
with red = pointing left, green = pointing up, blue = facing the camera
(a surface facing the viewer is (128, 128, 255), lavender-blue). The axes were
checked on the fixtures' real maps against their depth maps
(tests/test_perception.py: red rises where depth gets nearer to the right,
green where it gets nearer downwards, decoded vectors have unit length).
controlnet_aux's NormalBae writes (n + 1) / 2 of its prediction without axis
flips; DSINE and NormalBae are by the same authors and share the ScanNet
camera frame, so the conventions should agree, but that was not checked on a
real NormalBae map (no weights here): compare one with `python -m annotators
sheet --model-dir DIR` on first use.
"""

from __future__ import annotations

import numpy as np

AXES = ("left", "up", "toward the camera")


def rgb_to_normals(rgb: np.ndarray) -> np.ndarray:
    """(H, W, 3) float unit normals (left, up, front) from a uint8 normal map."""
    n = np.asarray(rgb, dtype=np.float64)[..., :3] / 127.5 - 1.0
    length = np.linalg.norm(n, axis=-1, keepdims=True)
    facing = np.zeros_like(n)
    facing[..., 2] = 1.0
    return np.where(length > 1e-6, n / np.maximum(length, 1e-6), facing)


def normals_to_rgb(normals: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 normal map of (H, W, 3) normals (normalised to unit length first)."""
    n = np.asarray(normals, dtype=np.float64)
    n = n / np.maximum(np.linalg.norm(n, axis=-1, keepdims=True), 1e-6)
    return np.clip(np.round((n + 1.0) * 127.5), 0, 255).astype(np.uint8)


def renormalise(rgb: np.ndarray) -> np.ndarray:
    """A normal map whose vectors were shortened by resizing (interpolation), back to unit length."""
    return normals_to_rgb(rgb_to_normals(rgb))
