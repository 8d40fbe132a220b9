"""Grid cells: their size, and turning an encoded image into one.

Training cells keep the aspect ratio of the row's first image: area close to
`resolution`^2, both sides multiples of 16 (rounded to the nearest multiple,
so the area stays within a few percent of resolution^2). Other images of the
row are cover-resized and centre-cropped to that size, never squashed.

Speed: a JPEG is decoded at the smallest libjpeg scale (1/2, 1/4, 1/8) that
still covers the cell (`PIL.Image.draft`), and the crop is taken before the
one resize, so a 1024^2 photo shown at 384^2 costs a fraction of a full decode.
"""

from __future__ import annotations

import io
import math

import cv2
import numpy as np
from PIL import Image

MULTIPLE = 16  # FLUX packs 2x2 latents of an 8x VAE: 16 pixels per token side


def _round_multiple(x: float, multiple: int = MULTIPLE) -> int:
    return max(multiple, int(round(x / multiple)) * multiple)


def cell_size(width: int, height: int, resolution: int, *, square: bool = False) -> tuple[int, int]:
    """(w, h) of a cell showing an image of `width` x `height`: area ~ resolution^2,
    aspect kept, sides multiples of 16. `square=True` gives the reference's
    resolution x resolution cells."""
    if resolution % MULTIPLE:
        raise ValueError(f"resolution must be a multiple of {MULTIPLE}, got {resolution}")
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if square:
        return resolution, resolution
    aspect = width / height
    h = math.sqrt(resolution * resolution / aspect)
    return _round_multiple(h * aspect), _round_multiple(h)


def image_size(data: bytes) -> tuple[int, int]:
    """(w, h) of an encoded image, read from its header only."""
    with Image.open(io.BytesIO(data)) as im:
        return im.size


def cover_box(src_w: int, src_h: int, dst_w: int, dst_h: int) -> tuple[int, int, int, int]:
    """The centred region of a src image with the aspect ratio of dst (cover-resize + centre-crop)."""
    scale = max(dst_w / src_w, dst_h / src_h)
    crop_w = min(src_w, max(1, round(dst_w / scale)))
    crop_h = min(src_h, max(1, round(dst_h / scale)))
    left, top = (src_w - crop_w) // 2, (src_h - crop_h) // 2
    return left, top, left + crop_w, top + crop_h


def fit_array(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """Cover-resize + centre-crop an (H, W[, C]) uint8 array to (height, width)."""
    src_h, src_w = image.shape[:2]
    if (src_w, src_h) == (width, height):
        return image
    l, t, r, b = cover_box(src_w, src_h, width, height)
    crop = image[t:b, l:r]
    shrink = (r - l) >= width and (b - t) >= height
    out = cv2.resize(np.ascontiguousarray(crop), (width, height),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC)
    return out


def decode_for_cell(data: bytes, width: int, height: int, mode: str = "RGB") -> np.ndarray:
    """Decode an encoded image at the smallest size that still covers a width x height cell."""
    with Image.open(io.BytesIO(data)) as im:
        if im.format == "JPEG":
            src_w, src_h = im.size
            scale = max(width / src_w, height / src_h)
            im.draft(mode, (math.ceil(src_w * scale), math.ceil(src_h * scale)))
        return np.asarray(im.convert(mode))


def decode_cell(data: bytes, width: int, height: int, mode: str = "RGB") -> np.ndarray:
    """Decode an encoded image straight into a (height, width[, 3]) uint8 cell."""
    return fit_array(decode_for_cell(data, width, height, mode), width, height)


def decode_full(data: bytes, mode: str = "RGB") -> np.ndarray:
    """Decode an encoded image at full size."""
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert(mode))
