"""Blur and resolution loss: blur (six kinds), defocus, gaussian_blur, oversharpen,
sr_x2, sr_x4, pixelate.

Wide kernels are where the reference spends its time; here every kernel is cheap
at any size: motion blur is a 1-D filter along a rotated axis, a wide disk runs
at reduced resolution (it removes the frequencies that reduction drops), and
zoom blur averages 2^m zoomed copies with m warps by repeated doubling.
"""

from __future__ import annotations

import math
from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

from .registry import Params, degradation
from .warp import base_grid

BLUR_METHODS = ("gaussian", "motion", "glass", "lens", "zoom", "jitter")
GAUSSIAN_SIGMA = (1.0, 2.0, 3.0, 4.0, 5.0)
MOTION = ((5, 3), (10, 5), (15, 7), (15, 9), (20, 12))  # (radius, sigma)
GLASS = ((0.7, 1, 1), (0.9, 2, 1), (1.0, 2, 2), (1.2, 3, 2), (1.6, 4, 2))  # (sigma, shift, iterations)
LENS_RADIUS = (2.0, 3.0, 4.0, 6.0, 8.0)
ZOOM_MAX = (1.04, 1.08, 1.12, 1.16, 1.20)
JITTER_SHIFT = (1.0, 2.0, 3.0, 4.0, 5.0)
DEFOCUS_RADIUS = (2.0, 2.5, 3.0, 3.5, 4.0)
SHARPEN_AMOUNT = (2.0, 2.8, 4.0, 6.0, 8.0)
PIXELATE_BLOCK = (2.0, 2.5, 10 / 3, 4.0, 5.0)  # 1 / the reference's size factors 0.5 ... 0.2
DISK_DIRECT_MAX = 4.0  # px; a wider disk runs at reduced resolution


@lru_cache(maxsize=64)
def disk_kernel(radius: float) -> np.ndarray:
    """A normalised anti-aliased disk (area coverage by 4x4 supersampling)."""
    r = int(math.ceil(radius))
    sub = (np.arange(4 * (2 * r + 1), dtype=np.float32) + 0.5) / 4 - (r + 0.5)
    inside = (sub[:, None] ** 2 + sub[None, :] ** 2) <= radius**2
    kernel = inside.reshape(2 * r + 1, 4, 2 * r + 1, 4).mean(axis=(1, 3)).astype(np.float32)
    return kernel / kernel.sum()


def disk_blur(image: np.ndarray, radius: float) -> np.ndarray:
    """Defocus by a disk of `radius` px; beyond `DISK_DIRECT_MAX` px at 1/f resolution."""
    if radius <= DISK_DIRECT_MAX:
        return cv2.filter2D(image, -1, disk_kernel(radius), borderType=cv2.BORDER_REFLECT_101)
    h, w = image.shape[:2]
    f = radius / DISK_DIRECT_MAX
    small = cv2.resize(image, (max(1, round(w / f)), max(1, round(h / f))), interpolation=cv2.INTER_AREA)
    small = cv2.filter2D(small, -1, disk_kernel(DISK_DIRECT_MAX), borderType=cv2.BORDER_REFLECT_101)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


def motion_blur(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """One-sided Gaussian-weighted streak of length 2*radius+1 along `angle` degrees
    (the ImageNet-C kernel), as a 1-D filter on the image rotated to that axis. The
    filter runs on a copy shrunk along the streak by `sigma / 3` (the streak is
    smooth at that scale), the cross-streak resolution is kept."""
    h, w = image.shape[:2]
    shrink = max(1.0, sigma / 3.0)
    width = int(round((2 * radius + 1) / shrink)) or 1
    taps = np.exp(-(np.arange(width, dtype=np.float32) * shrink) ** 2 / (2 * sigma**2))
    taps = (taps / taps.sum())[None, :]
    theta = math.radians(angle)
    margin = int(math.ceil(2 * radius + 1))  # room for the streak past the image's end
    cw = int(math.ceil(w * abs(math.cos(theta)) + h * abs(math.sin(theta)))) + 2 * margin
    ch = int(math.ceil(w * abs(math.sin(theta)) + h * abs(math.cos(theta)))) + 2
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    m[:, 2] += (cw / 2 - w / 2, ch / 2 - h / 2)
    rotated = cv2.warpAffine(image, m, (cw, ch), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if shrink > 1:
        small = cv2.resize(rotated, (max(1, round(cw / shrink)), ch), interpolation=cv2.INTER_AREA)
        small = cv2.filter2D(small, -1, taps, anchor=(0, 0), borderType=cv2.BORDER_REFLECT_101)
        streaked = cv2.resize(small, (cw, ch), interpolation=cv2.INTER_LINEAR)
    else:
        streaked = cv2.filter2D(rotated, -1, taps, anchor=(0, 0), borderType=cv2.BORDER_REFLECT_101)
    return cv2.warpAffine(streaked, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REFLECT_101)


def zoom_blur(image: np.ndarray, max_zoom: float) -> np.ndarray:
    """Mean of the image zoomed about its centre by factors 1 ... max_zoom.

    With N = 2^m geometrically spaced factors, A_{j+1} = (A_j + zoom(A_j, step^(2^j))) / 2
    gives the mean of all N copies after m warps. N is chosen so that adjacent
    copies are at most ~3 px apart at the corners (no visible ghosting).
    """
    h, w = image.shape[:2]
    corner_shift = 0.5 * math.hypot(h, w) * (max_zoom - 1)
    m = min(7, max(2, math.ceil(math.log2(corner_shift / 3 + 1))))
    step = max_zoom ** (1 / (2**m - 1))
    acc = image
    for j in range(m):
        z = step ** (2**j)
        mat = np.float32([[z, 0, (1 - z) * w / 2], [0, z, (1 - z) * h / 2]])
        zoomed = cv2.warpAffine(acc, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
        acc = cv2.addWeighted(acc, 0.5, zoomed, 0.5, 0)
    return acc


def local_shuffle(image: np.ndarray, shift: float, rng: np.random.Generator) -> np.ndarray:
    """Every pixel takes the value of a random neighbour at most `shift` px away."""
    h, w = image.shape[:2]
    gx, gy = base_grid(h, w)
    dx = rng.random((h, w), dtype=np.float32)
    dy = rng.random((h, w), dtype=np.float32)
    map_x = cv2.scaleAdd(dx, 2 * shift, gx - shift)
    map_y = cv2.scaleAdd(dy, 2 * shift, gy - shift)
    return cv2.remap(image, map_x, map_y, cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT_101)


@degradation("blur", severities=5, methods=BLUR_METHODS, table=(
    "gaussian sigma 1,2,3,4,5; motion (radius, sigma) (5,3),(10,5),(15,7),(15,9),(20,12), angle U(-90,90); "
    "glass (sigma, shift, iterations) (0.7,1,1) ... (1.6,4,2); lens disk radius 2,3,4,6,8; "
    "zoom to 1.04,1.08,1.12,1.16,1.20; jitter shift 1,2,3,4,5 (px at 512)"))
def blur(image: np.ndarray, p: Params) -> np.ndarray:
    method = p.choice("method", BLUR_METHODS)
    s = p.severity - 1
    if method == "gaussian":
        return cv2.GaussianBlur(image, (0, 0), p.px(GAUSSIAN_SIGMA[s], 0.5), borderType=cv2.BORDER_REFLECT_101)
    if method == "motion":
        radius, sigma = MOTION[s]
        return motion_blur(image, p.px(radius, 1), p.px(sigma, 0.5), p.uniform("angle", -90.0, 90.0))
    if method == "glass":
        sigma, shift, iterations = GLASS[s]
        rng = p.generator()
        out = cv2.GaussianBlur(image, (0, 0), p.px(sigma, 0.3))
        for _ in range(iterations):
            out = local_shuffle(out, p.px(shift, 0.75), rng)
        return cv2.GaussianBlur(out, (0, 0), p.px(sigma, 0.3))
    if method == "lens":
        return disk_blur(image, p.px(LENS_RADIUS[s], 1))
    if method == "zoom":
        return zoom_blur(image, ZOOM_MAX[s])
    return local_shuffle(image, p.px(JITTER_SHIFT[s], 0.75), p.generator())


@degradation("defocus", severities=5, table="disk radius 2, 2.5, 3, 3.5, 4 px at 512 (the reference: 3)")
def defocus(image: np.ndarray, p: Params) -> np.ndarray:
    return disk_blur(image, p.px(DEFOCUS_RADIUS[p.severity - 1], 1))


@degradation("gaussian_blur", severities=5, table="sigma U(2,4) in five bins, kernel 15 px at 512")
def gaussian_blur(image: np.ndarray, p: Params) -> np.ndarray:
    sigma = p.binned("sigma", 2.0, 4.0)
    return cv2.GaussianBlur(image, (p.odd_px(15, 3),) * 2, p.px(sigma, 0.5), borderType=cv2.BORDER_REFLECT_101)


@degradation("oversharpen", severities=5, table="unsharp mask, 5x5 Gaussian at 512, amount 2, 2.8, 4, 6, 8")
def oversharpen(image: np.ndarray, p: Params) -> np.ndarray:
    amount = SHARPEN_AMOUNT[p.severity - 1]
    soft = cv2.GaussianBlur(image, (p.odd_px(5, 3),) * 2, p.px(1.1, 0.6))
    return cv2.addWeighted(image, 1 + amount, soft, -amount, 0)


def _down_up(image: np.ndarray, factor: int) -> np.ndarray:
    h, w = image.shape[:2]
    small = Image.fromarray(image).resize((max(1, round(w / factor)), max(1, round(h / factor))), Image.BICUBIC)
    return cv2.resize(np.asarray(small), (w, h), interpolation=cv2.INTER_CUBIC)


@degradation("sr_x2", table="none: bicubic down by 2 and back up (the factor is the node's meaning)")
def sr_x2(image: np.ndarray, p: Params) -> np.ndarray:
    return _down_up(image, 2)


@degradation("sr_x4", table="none: bicubic down by 4 and back up")
def sr_x4(image: np.ndarray, p: Params) -> np.ndarray:
    return _down_up(image, 4)


@degradation("pixelate", severities=5, table=(
    "block 2, 2.5, 3.3, 4, 5 px at 512; not shrunk on smaller cells (1.5-px blocks do not look pixelated)"))
def pixelate(image: np.ndarray, p: Params) -> np.ndarray:
    h, w = image.shape[:2]
    block = PIXELATE_BLOCK[p.severity - 1] * max(1.0, p.scale)
    small = cv2.resize(image, (max(1, round(w / block)), max(1, round(h / block))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)
