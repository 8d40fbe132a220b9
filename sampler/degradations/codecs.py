"""Lossy codecs: jpeg and compression (JPEG or JPEG 2000).

JPEG is real libjpeg through OpenCV, fed in OpenCV's BGR order so that its
YCbCr conversion (and hence chroma subsampling) sees the true colours. JPEG
2000 is its lossy path in numpy (`jpeg2000.py`: OpenJPEG is 4-5x over budget).
"""

from __future__ import annotations

import cv2
import numpy as np

from .jpeg2000 import jpeg2000_roundtrip
from .registry import Params, degradation

COMPRESSION_METHODS = ("jpeg", "jpeg2000")
COMPRESSION_JPEG_QUALITY = (25, 18, 12)
COMPRESSION_JPEG2000_DB = (29.0, 27.5, 26.0)


def jpeg_roundtrip(image: np.ndarray, quality: int) -> np.ndarray:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError(f"OpenCV could not JPEG-encode an image of shape {image.shape}")
    return cv2.cvtColor(cv2.imdecode(data, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


@degradation("jpeg", severities=5, table="quality randint(10,40) in five bins: 35-40 ... 10-15")
def jpeg(image: np.ndarray, p: Params) -> np.ndarray:
    quality = int(round(p.binned("quality", 40.49, 9.51)))
    return jpeg_roundtrip(image, quality)


@degradation("compression", severities=3, methods=COMPRESSION_METHODS, table=(
    "JPEG quality 25, 18, 12, or JPEG 2000 at 29, 27.5, 26 dB PSNR"))
def compression(image: np.ndarray, p: Params) -> np.ndarray:
    if p.choice("method", COMPRESSION_METHODS) == "jpeg":
        return jpeg_roundtrip(image, COMPRESSION_JPEG_QUALITY[p.severity - 1])
    return jpeg2000_roundtrip(image, COMPRESSION_JPEG2000_DB[p.severity - 1])
