"""Geometric degradations: rotate90/180/270, barrel, pincushion, elastic.

Rotation direction and angle are read from each node's declaration in
`graph200k.catalog` (`details={"rotation": "clockwise", "degrees": N}`), so the
pixels always agree with the prompts. np.rot90 turns counter-clockwise for a
positive k, hence k = -N/90 for a clockwise declaration.
"""

from __future__ import annotations

import cv2
import numpy as np

from graph200k import DEFAULT_NODES

from .registry import Params, degradation
from .warp import base_grid, radial_maps, smooth_field

LENS_GAIN = (0.5, 0.75, 1.0, 1.25, 1.5)  # times the reference's (k1, k2) = (0.1, 0.05)
ELASTIC_RMS = (1.2, 1.8, 2.5, 3.3, 4.2)  # px at 512
ELASTIC_CORRELATION = 0.015  # of the short side


def rotation_turns(name: str) -> int:
    """np.rot90's k for the rotation node `name`, from its declaration."""
    details = DEFAULT_NODES.get(name).details
    quarter_turns = int(details["degrees"]) // 90
    if details["rotation"] == "clockwise":
        return -quarter_turns
    if details["rotation"] == "counter-clockwise":
        return quarter_turns
    raise ValueError(f"node {name!r} declares rotation {details['rotation']!r}; "
                     f"expected 'clockwise' or 'counter-clockwise'")


def _rotate(image: np.ndarray, p: Params) -> np.ndarray:
    return np.ascontiguousarray(np.rot90(image, k=rotation_turns(p.name)))


for _name in ("rotate90", "rotate180", "rotate270"):
    degradation(_name, table="none: turn by the declared angle and direction (clockwise)")(_rotate)


def _lens(image: np.ndarray, p: Params, sign: float) -> np.ndarray:
    gain = LENS_GAIN[p.severity - 1]
    h, w = image.shape[:2]
    map_a, map_b = radial_maps(h, w, sign * 0.1 * gain, sign * 0.05 * gain)
    return cv2.remap(image, map_a, map_b, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@degradation("barrel", severities=5, table="(k1, k2) = (0.1, 0.05) x 0.5, 0.75, 1, 1.25, 1.5; black outside")
def barrel(image: np.ndarray, p: Params) -> np.ndarray:
    return _lens(image, p, 1.0)


@degradation("pincushion", severities=5, table="(k1, k2) = (-0.1, -0.05) x 0.5, 0.75, 1, 1.25, 1.5")
def pincushion(image: np.ndarray, p: Params) -> np.ndarray:
    return _lens(image, p, -1.0)


@degradation("elastic", severities=5, table=(
    "smooth random displacement, RMS 1.2, 1.8, 2.5, 3.3, 4.2 px at 512, correlation 1.5% of the short side "
    "(the reference: about 2 px RMS, 1%; stronger levels added so the warp is visible in a 384-px cell)"))
def elastic(image: np.ndarray, p: Params) -> np.ndarray:
    h, w = image.shape[:2]
    rng = p.generator()
    amplitude = p.px(ELASTIC_RMS[p.severity - 1])
    correlation = ELASTIC_CORRELATION * min(h, w)
    gx, gy = base_grid(h, w)
    dx = smooth_field(rng, h, w, correlation)
    dy = smooth_field(rng, h, w, correlation)
    return cv2.remap(image, cv2.scaleAdd(dx, amplitude, gx), cv2.scaleAdd(dy, amplitude, gy),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
