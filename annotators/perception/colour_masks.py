"""Instance masks drawn as one flat colour per instance on black, as Graph200K's SAM2 and grounded masks are.

Larger masks are painted first so a small instance inside a large one stays
visible; colours are distinct (no two instances share one) and never black.
"""

from __future__ import annotations

import colorsys
from typing import Sequence

import numpy as np

GOLDEN_RATIO = 0.618033988749895


def distinct_colours(n: int) -> np.ndarray:
    """(n, 3) uint8 colours, pairwise different and far from black: hues stepped by the golden ratio,
    saturation and brightness alternating so neighbouring instances contrast."""
    colours: list[tuple[int, int, int]] = []
    seen: set[tuple[int, int, int]] = set()
    i = 0
    while len(colours) < n:
        hue = (i * GOLDEN_RATIO) % 1.0
        saturation = (0.95, 0.7, 0.5)[(i // 5) % 3]
        value = (1.0, 0.8)[(i // 3) % 2]
        rgb = tuple(int(round(c * 255)) for c in colorsys.hsv_to_rgb(hue, saturation, value))
        if rgb not in seen:
            seen.add(rgb)
            colours.append(rgb)
        i += 1
    return np.array(colours, dtype=np.uint8).reshape(n, 3)


def render_masks(masks: Sequence[np.ndarray], height: int, width: int,
                 colours: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(H, W, 3) uint8 colour map of boolean (H, W) `masks`, and the colour given to each mask (input order).

    Masks are painted largest first; by default the largest mask gets the
    first of `distinct_colours`, so the colouring does not depend on the
    order a model returned the masks in."""
    canvas = np.zeros((height, width, 3), np.uint8)
    if colours is None:
        colours = distinct_colours(len(masks))
    if len(colours) < len(masks):
        raise ValueError(f"{len(masks)} masks but only {len(colours)} colours")
    areas = [int(np.count_nonzero(m)) for m in masks]
    order = sorted(range(len(masks)), key=lambda i: -areas[i])
    assigned = np.zeros((len(masks), 3), np.uint8)
    for rank, i in enumerate(order):
        mask = np.asarray(masks[i], dtype=bool)
        if mask.shape != (height, width):
            raise ValueError(f"mask {i} is {mask.shape[1]}x{mask.shape[0]}, expected {width}x{height}")
        assigned[i] = colours[rank]
        canvas[mask] = colours[rank]
    return canvas, assigned
