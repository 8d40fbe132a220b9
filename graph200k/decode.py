"""Decoding untrusted image bytes into clean 8-bit RGB/L arrays, or a clear refusal.

Every image that enters the dataset (targets, references, imported
annotations) and every image an annotator or the sampler reads goes through
`decode_image`, so one set of rules decides what an image is:

- the file must decode completely: a truncated JPEG is an error, never a
  half-grey picture (Pillow's LOAD_TRUNCATED_IMAGES stays off);
- images above `MAX_PIXELS` are refused from the header, before any pixel is
  decoded (decompression bombs);
- EXIF orientation is applied; CMYK, palette, 16-bit and grey images become
  8-bit RGB; transparency is composited on white.

`normalise_image` keeps the original bytes when they already are a plain
8-bit RGB JPEG/PNG/WebP with no rotation to apply, and re-encodes otherwise
(JPEG stays JPEG at quality 95, anything else becomes PNG). Phone photos that
Pillow calls "MPO" (a JPEG followed by extra frames: depth, previews) are
JPEGs: every decoder shows the first frame, so they are kept or re-encoded as
JPEG, never inflated to PNG.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 8192 * 8192
"""Largest image accepted (67.1 megapixels). Larger ones are refused as
possible decompression bombs; Graph200K images are about one megapixel."""

JPEG_QUALITY = 95
_KEEP_FORMATS = {"JPEG": "jpg", "MPO": "jpg", "PNG": "png", "WEBP": "webp"}


class ImageDecodeError(ValueError):
    """The bytes are not an image we accept; the message says why."""


@dataclass(frozen=True)
class NormalisedImage:
    """Image bytes ready to store, their extension, and the decoded size."""

    data: bytes
    ext: str
    width: int
    height: int
    reencoded: bool


def _bomb_message(max_pixels: int, what: str) -> str:
    return f"refused: {what}; the limit is {max_pixels} pixels (MAX_PIXELS; possible decompression bomb)"


def _open(data: bytes, max_pixels: int) -> Image.Image:
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    if Image.MAX_IMAGE_PIXELS is not None and max_pixels > Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = max_pixels  # our limit decides; Pillow's own guard stays above it
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise ImageDecodeError(_bomb_message(max_pixels, str(err))) from None
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError...
        raise ImageDecodeError(f"not a readable image ({type(err).__name__}: {err})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(_bomb_message(max_pixels, f"{width}x{height} = {width * height} pixels"))
    if width < 1 or height < 1:
        raise ImageDecodeError(f"image has no pixels ({width}x{height})")
    try:
        image.load()
    except Exception as err:
        raise ImageDecodeError(f"incomplete or corrupt image data ({type(err).__name__}: {err})") from None
    return image


def _to_8bit(image: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer/float greys to 8-bit L (Pillow would clip them)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(image, dtype=np.float64)
        peak = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        return Image.fromarray(np.clip(arr * (255.0 if arr.max() <= 1.0 else 1.0) + 0.5, 0, 255).astype(np.uint8), "L")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB: orientation applied, alpha composited on white."""
    image = ImageOps.exif_transpose(image) or image
    image = _to_8bit(image)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode in ("RGB", "L") and "transparency" in image.info):
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    if image.mode == "CMYK":
        return image.convert("RGB")
    return image.convert("RGB") if image.mode != "RGB" else image


def decode_image(data: bytes, mode: str = "RGB", max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode bytes to an (H, W, 3) RGB or (H, W) L uint8 array; `ImageDecodeError` if refused."""
    rgb = to_rgb(_open(data, max_pixels))
    if mode == "RGB":
        return np.asarray(rgb)
    if mode == "L":
        return np.asarray(rgb.convert("L"))
    raise ValueError(f"decode_image: mode must be 'RGB' or 'L', got {mode!r}")


def image_size(data: bytes, max_pixels: int = MAX_PIXELS) -> tuple[int, int]:
    """(width, height) as displayed (EXIF rotation applied), from the header only."""
    if not data:
        raise ImageDecodeError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as err:
        raise ImageDecodeError(_bomb_message(max_pixels, str(err))) from None
    except Exception as err:
        raise ImageDecodeError(f"not a readable image ({type(err).__name__}: {err})") from None
    width, height = image.size
    if width * height > max_pixels:
        raise ImageDecodeError(_bomb_message(max_pixels, f"{width}x{height} = {width * height} pixels"))
    orientation = image.getexif().get(0x0112, 1)
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def normalise_image(
    data: bytes, modes: tuple[str, ...] = ("RGB",), max_pixels: int = MAX_PIXELS
) -> NormalisedImage:
    """Check that `data` decodes fully and return storable bytes (see module doc).

    `modes` are the Pillow modes kept as they are; anything else is converted to
    `modes[0]` (targets: RGB; single-channel maps accept L or RGB)."""
    image = _open(data, max_pixels)
    fmt = image.format or ""
    orientation = image.getexif().get(0x0112, 1)
    plain = (
        fmt in _KEEP_FORMATS
        and image.mode in modes
        and orientation in (0, 1)
        and "transparency" not in image.info
    )
    if plain:
        return NormalisedImage(data, _KEEP_FORMATS[fmt], image.width, image.height, reencoded=False)
    rgb = to_rgb(image)
    if modes[0] == "L":
        rgb = rgb.convert("L")
    buf = io.BytesIO()
    if _KEEP_FORMATS.get(fmt) == "jpg":
        rgb.save(buf, format="JPEG", quality=JPEG_QUALITY)
        ext = "jpg"
    else:
        rgb.save(buf, format="PNG")
        ext = "png"
    return NormalisedImage(buf.getvalue(), ext, rgb.width, rgb.height, reencoded=True)
