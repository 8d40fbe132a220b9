"""Metric inputs as uint8 arrays: the one place images are checked and converted.

Every per-pair metric takes numpy uint8 arrays ((H, W) or (H, W, 3)) or PIL images
and works on 0-255 values; floats are refused rather than guessed at (0-1 or 0-255?).
"""

from __future__ import annotations

from typing import Union

import numpy as np
from PIL import Image

from ..errors import InferenceError

ImageLike = Union[np.ndarray, Image.Image]


def as_array(image: ImageLike, what: str = "image") -> np.ndarray:
    """(H, W) for a one-channel input (PIL "L", a 2-D array), else (H, W, 3) RGB; uint8."""
    if isinstance(image, Image.Image):
        image = image if image.mode in ("L", "RGB") else image.convert("RGB")
        return np.array(image)  # a writable copy (torch warns on read-only buffers)
    if not isinstance(image, np.ndarray):
        raise InferenceError(f"{what}: expected a numpy uint8 array or a PIL image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise InferenceError(f"{what}: expected uint8 pixels 0-255, got {image.dtype}; "
                             "convert with np.clip(x * 255, 0, 255).round().astype(np.uint8) for 0-1 floats")
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    if image.ndim == 3 and image.shape[2] == 4:
        return image[:, :, :3]
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3):
        return image
    raise InferenceError(f"{what}: expected (H, W) or (H, W, 3) pixels, got shape {image.shape}")


def as_rgb(image: ImageLike, what: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB; a one-channel input is repeated over the three channels."""
    pixels = as_array(image, what)
    return np.repeat(pixels[:, :, None], 3, axis=2) if pixels.ndim == 2 else pixels


def as_gray(image: ImageLike, what: str = "map") -> np.ndarray:
    """(H, W) uint8: a gray map stored as RGB (three equal channels) keeps its values; colour goes through
    PIL's luma conversion (ITU-R 601-2), as `Image.convert("L")` does when a map is saved as L."""
    pixels = as_array(image, what)
    if pixels.ndim == 2:
        return pixels
    if (pixels[:, :, 0] == pixels[:, :, 1]).all() and (pixels[:, :, 0] == pixels[:, :, 2]).all():
        return pixels[:, :, 0]
    return np.asarray(Image.fromarray(pixels).convert("L"))


def check_same_shape(generated: np.ndarray, reference: np.ndarray, metric: str) -> None:
    """Pixel metrics compare pixel by pixel: both inputs must have the same size and channels."""
    if generated.shape != reference.shape:
        raise InferenceError(f"{metric}: generated image {generated.shape} and reference {reference.shape} differ; "
                             "resize the generated image to the reference's size (e.g. PIL resize with LANCZOS) "
                             "and pass both as RGB or both as one-channel maps")


def resize_to(pixels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`pixels` at (height, width) `size`: area interpolation down, Lanczos up (as `annotators.perception.canny` does)."""
    import cv2

    height, width = size
    if pixels.shape[:2] == (height, width):
        return pixels
    upscale = height * width > pixels.shape[0] * pixels.shape[1]
    return cv2.resize(pixels, (width, height), interpolation=cv2.INTER_LANCZOS4 if upscale else cv2.INTER_AREA)
