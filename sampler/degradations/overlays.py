"""Things laid over the image: inpainting strokes, rain, frost.

Positions, angles and textures all come from the recorded seed, in coordinates
relative to the image, so the same params draw the same scene at any cell size.
Frost is procedural: dendritic six-armed ice crystals and loose needles drawn as
anti-aliased lines, over a patchy fractal haze that thickens towards the edges
of the pane, tinted ice-blue and mixed in with ImageNet-C's frost weights.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .registry import Params, degradation
from .warp import smooth_field

RAIN_BLUR = (3, 5, 7, 9, 11)  # px at 512
FROST_MIX = ((1.0, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75))  # (image, frost), ImageNet-C
FROST_COVERAGE = (0.35, 0.45, 0.55, 0.65, 0.75)  # share of the pane under frost
FROST_TINT = np.array([0.86, 0.93, 1.0], dtype=np.float32)  # RGB, ice blue-white


def _reference_area(h: int, w: int, p: Params) -> float:
    """The image's area in pixels at the reference size (counts of drawn things follow it)."""
    return h * w / max(p.scale, 1e-6) ** 2


@degradation("inpainting", severities=5, table=(
    "randint(20,50) lines in five bins, thickness randint(10,20) px at 512 in five bins, all white or all black"))
def inpainting(image: np.ndarray, p: Params) -> np.ndarray:
    h, w = image.shape[:2]
    count = int(round(p.binned("lines", 19.51, 50.49)))
    thick_lo = 9.51 + (p.severity - 1) * 11 / 5
    colour = p.choice("colour", ("black", "white"))
    rng = p.generator()
    ends = rng.random((count, 4)) * [w, h, w, h]
    thickness = rng.uniform(thick_lo, thick_lo + 11 / 5, size=count)
    out = image.copy()
    value = (255, 255, 255) if colour == "white" else (0, 0, 0)
    for (x1, y1, x2, y2), t in zip(ends, thickness):
        cv2.line(out, (int(x1), int(y1)), (int(x2), int(y2)), value, max(1, int(round(t * p.scale))), cv2.LINE_AA)
    return out


def _segments(canvas: np.ndarray, starts: np.ndarray, ends: np.ndarray, value: int, thickness: int) -> None:
    """Line segments in one call; plain 8-connected lines, the callers blur them afterwards."""
    if len(starts):
        pts = np.stack([starts, ends], axis=1).round().astype(np.int32)
        cv2.polylines(canvas, list(pts), False, int(value), thickness, cv2.LINE_8)


@degradation("rain", severities=5, table=(
    "streak density U(40,200)/100/256 per pixel at 512 in five bins, length randint(30,40) px, "
    "angle randint(-45,44) degrees, blur width 3, 5, 7, 9, 11 px by severity"))
def rain(image: np.ndarray, p: Params) -> np.ndarray:
    h, w = image.shape[:2]
    density = p.binned("density", 40 / 100 / 256, 200 / 100 / 256)
    length = p.px(p.integers("length", 30, 40), 3)
    angle = math.radians(p.integers("angle", -45, 44))
    rng = p.generator()
    n = int(density * _reference_area(h, w, p))
    direction = np.array([math.sin(angle), math.cos(angle)]) * length
    layer = np.zeros((h, w), dtype=np.uint8)
    thickness = max(1, int(round(p.scale)))
    for value, share in ((255, 0.4), (190, 0.35), (130, 0.25)):
        k = int(n * share)
        starts = rng.random((k, 2)) * [w + length, h + length] - [length, length]
        stretch = rng.uniform(0.7, 1.0, size=(k, 1))
        _segments(layer, starts, starts + direction * stretch, value, thickness)
    width = p.odd_px(RAIN_BLUR[p.severity - 1], 3)
    soft = cv2.GaussianBlur(layer, (width, width), 0)
    peak = max(1, int(soft.max()))
    soft = cv2.LUT(soft, np.clip(np.arange(256) * (255.0 / peak), 0, 255).astype(np.uint8))
    return cv2.add(image, cv2.cvtColor(soft, cv2.COLOR_GRAY2RGB))


def _crystals(layer: np.ndarray, rng: np.random.Generator, centres: np.ndarray, size: np.ndarray,
              thickness: int) -> None:
    """Six-armed dendrites: each arm carries side branches at +-60 degrees."""
    n = len(centres)
    if n == 0:
        return
    spin = rng.uniform(0, math.pi / 3, size=n)
    arms = spin[:, None] + np.arange(6)[None, :] * math.pi / 3 + rng.normal(0, 0.25, size=(n, 6))  # (n, 6)
    unit = np.stack([np.cos(arms), np.sin(arms)], axis=-1)  # (n, 6, 2)
    arm_len = size[:, None, None] * rng.uniform(0.6, 1.0, size=(n, 6, 1))
    tips = centres[:, None, :] + unit * arm_len
    starts, ends = [np.repeat(centres[:, None, :], 6, axis=1).reshape(-1, 2)], [tips.reshape(-1, 2)]
    for pos, rel in ((0.35, 0.45), (0.6, 0.3), (0.8, 0.18)):
        base = centres[:, None, :] + unit * arm_len * pos
        for turn in (-math.pi / 3, math.pi / 3):
            side = np.stack([np.cos(arms + turn), np.sin(arms + turn)], axis=-1) * arm_len * rel
            starts.append(base.reshape(-1, 2))
            ends.append((base + side).reshape(-1, 2))
    _segments(layer, np.concatenate(starts), np.concatenate(ends), 255, thickness)


@degradation("frost", severities=5, table=(
    "image x frost weights (1, 0.4), (0.8, 0.6), (0.7, 0.7), (0.65, 0.7), (0.6, 0.75) (ImageNet-C; "
    "the reference: severity 4), frost covering 35, 45, 55, 65, 75% of the pane"))
def frost(image: np.ndarray, p: Params) -> np.ndarray:
    h, w = image.shape[:2]
    keep, add = FROST_MIX[p.severity - 1]
    coverage = FROST_COVERAGE[p.severity - 1]
    rng = p.generator()
    # Where the pane is frozen: fractal noise pushed up towards the edges, at half
    # resolution (it is smooth), as is the haze.
    hh, hw = (h + 1) // 2, (w + 1) // 2
    short = min(hh, hw)
    patches = 0.6 * smooth_field(rng, hh, hw, 0.12 * short) + 0.4 * smooth_field(rng, hh, hw, 0.04 * short)
    ys = np.minimum(np.arange(hh), np.arange(hh)[::-1]).astype(np.float32) / short
    xs = np.minimum(np.arange(hw), np.arange(hw)[::-1]).astype(np.float32) / short
    frozen = patches - 3.0 * np.minimum(ys[:, None], xs[None, :]) + (coverage - 0.5) * 3.0 + 0.6
    frozen = np.clip(frozen, 0.0, 1.0)
    haze = frozen * (0.6 + 0.2 * smooth_field(rng, hh, hw, 0.02 * short)
                     + 0.15 * smooth_field(rng, hh, hw, 0.006 * short)) * (0.85 * 255)
    haze = cv2.resize(np.clip(haze, 0, 255).astype(np.uint8), (w, h), interpolation=cv2.INTER_LINEAR)

    def frozen_at(xy: np.ndarray) -> np.ndarray:
        return frozen[np.minimum(xy[:, 1] / 2, hh - 1).astype(int), np.minimum(xy[:, 0] / 2, hw - 1).astype(int)]

    # Crystals and needles, in the frozen part, at full resolution.
    thickness = max(1, int(round(p.scale)))
    layer = np.zeros((h, w), dtype=np.uint8)
    area = _reference_area(h, w, p)
    n = int(area / 5000)
    centres = rng.random((n, 2)) * [w, h]
    inside = frozen_at(centres) > rng.random(n)
    _crystals(layer, rng, centres[inside], p.px(1.0) * rng.uniform(6, 22, size=int(inside.sum())), thickness)
    m = int(area / 70)
    starts = rng.random((m, 2)) * [w, h]
    starts = starts[frozen_at(starts) > rng.random(m)]
    theta = rng.uniform(0, 2 * math.pi, size=len(starts))
    needle = p.px(1.0) * rng.uniform(2, 8, size=(len(starts), 1))
    _segments(layer, starts, starts + np.stack([np.cos(theta), np.sin(theta)], axis=1) * needle, 150, thickness)
    sparkle = cv2.GaussianBlur(layer, (0, 0), p.px(0.6, 0.5))
    texture = cv2.addWeighted(cv2.max(haze, sparkle), 1.0, sparkle, 0.3, 0.0)
    levels = np.arange(256, dtype=np.float32)
    ice = cv2.merge([cv2.LUT(texture, np.clip(np.rint(levels * add * t), 0, 255).astype(np.uint8))
                     for t in FROST_TINT])
    return cv2.add(cv2.LUT(image, np.clip(np.rint(levels * keep), 0, 255).astype(np.uint8)), ice)
