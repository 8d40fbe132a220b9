"""quantization: fewer colour levels, by multi-Otsu, median cut or uniform bins.

The reference's multi-Otsu (scikit-image, exhaustive over threshold sets) takes
2-13 s for 15 classes; the same optimum (maximal between-class variance over a
30-bin histogram) comes from dynamic programming over the bins in well under a
millisecond. Median cut picks its palette on a 128-px copy with PIL and maps the
full image to it with PIL, so its cost barely depends on image size.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from .registry import Params, degradation

METHODS = ("otsu", "median_cut", "histogram")
OTSU_CLASSES = (15, 11, 8)
OTSU_BINS = 30
MEDIAN_CUT_COLOURS = (20, 15, 10)
HISTOGRAM_BINS = (24, 16, 8)
PALETTE_SIDE = 128


def multi_otsu_edges(hist: np.ndarray, classes: int) -> list[int]:
    """Bin indices that split `hist` into `classes` runs maximising between-class variance."""
    n = len(hist)
    centres = np.arange(n, dtype=np.float64)
    count = np.concatenate([[0.0], np.cumsum(hist)])
    total = np.concatenate([[0.0], np.cumsum(hist * centres)])

    def gain(i: np.ndarray, j: int) -> np.ndarray:  # w * mu^2 of bins [i, j)
        w = count[j] - count[i]
        return np.where(w > 0, (total[j] - total[i]) ** 2 / np.maximum(w, 1e-12), 0.0)

    best = np.array([gain(np.array([0]), j)[0] for j in range(n + 1)])
    back = np.zeros((classes, n + 1), dtype=int)
    for k in range(1, classes):
        new = np.full(n + 1, -np.inf)
        for j in range(k + 1, n + 1):
            i = np.arange(k, j)
            scores = best[i] + gain(i, j)
            arg = int(np.argmax(scores))
            new[j], back[k, j] = scores[arg], i[arg]
        best = new
    edges, j = [], n
    for k in range(classes - 1, 0, -1):
        j = back[k, j]
        edges.append(int(j))
    return sorted(edges)


def _otsu_lut(channel: np.ndarray, classes: int) -> np.ndarray:
    hist256 = cv2.calcHist([channel], [0], None, [256], [0, 256]).ravel().astype(np.float64)
    nonzero = np.flatnonzero(hist256)
    lo, hi = int(nonzero[0]), int(nonzero[-1]) + 1
    bin_of = np.minimum(((np.arange(256) - lo) * OTSU_BINS) // max(1, hi - lo), OTSU_BINS - 1).clip(0)
    hist = np.bincount(bin_of, weights=hist256, minlength=OTSU_BINS)
    edges = [0, *multi_otsu_edges(hist, classes), OTSU_BINS]
    lut = np.zeros(256, dtype=np.uint8)
    values = np.arange(256, dtype=np.float64)
    for a, b in zip(edges[:-1], edges[1:]):
        members = (bin_of >= a) & (bin_of < b)
        weight = hist256[members].sum()
        if weight > 0:
            lut[members] = np.uint8(round((hist256[members] * values[members]).sum() / weight))
    return lut


@degradation("quantization", severities=3, methods=METHODS, table=(
    "per-channel multi-Otsu with 15, 11, 8 classes (30 bins); median cut to 20, 15, 10 colours; "
    "uniform 24, 16, 8 levels per channel"))
def quantization(image: np.ndarray, p: Params) -> np.ndarray:
    method = p.choice("method", METHODS)
    s = p.severity - 1
    if method == "otsu":
        return cv2.merge([cv2.LUT(c, _otsu_lut(c, OTSU_CLASSES[s])) for c in cv2.split(image)])
    if method == "median_cut":
        pil = Image.fromarray(image)
        small = pil.resize((PALETTE_SIDE, PALETTE_SIDE), Image.BOX)
        palette = small.quantize(MEDIAN_CUT_COLOURS[s], method=Image.Quantize.MEDIANCUT)
        return np.asarray(pil.quantize(palette=palette, dither=Image.Dither.NONE).convert("RGB"))
    n = HISTOGRAM_BINS[s]
    centres = (np.floor(np.arange(256) * n / 256) + 0.5) * 256 / n
    return cv2.LUT(image, np.clip(np.rint(centres), 0, 255).astype(np.uint8))
