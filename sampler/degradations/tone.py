"""Tone and colour: brighten, darken, low_light, contrast_strengthen,
contrast_weaken, saturate_strengthen, saturate_weaken, gray, color_distortion.

Every curve is a 256-entry lookup table (cv2.LUT), applied to RGB, to the V or S
channel of HSV, or to the chroma of YCrCb; conversions always name RGB (the
reference treated RGB arrays as BGR, which swaps the luma weights of R and B).
"""

from __future__ import annotations

import cv2
import numpy as np

from .registry import Params, degradation

LEVELS = np.arange(256, dtype=np.float32) / 255.0
LIGHT_METHODS = ("hsv_shift", "rgb_shift", "rgb_gamma", "hsv_gamma")
BRIGHTEN = {"hsv_shift": (0.1, 0.2, 0.3, 0.4, 0.5), "rgb_shift": (0.1, 0.15, 0.2, 0.27, 0.35),
            "rgb_gamma": (0.8, 0.7, 0.6, 0.45, 0.3), "hsv_gamma": (0.7, 0.58, 0.47, 0.36, 0.25)}
DARKEN = {"hsv_shift": (-0.1, -0.2, -0.3, -0.4, -0.5), "rgb_shift": (-0.1, -0.15, -0.2, -0.27, -0.35),
          "rgb_gamma": (1.4, 1.7, 2.1, 2.6, 3.2), "hsv_gamma": (1.5, 1.8, 2.2, 2.7, 3.5)}
CONTRAST_METHODS = ("linear", "s_curve")
CONTRAST_UP = {"linear": (1.4, 1.7, 2.1, 2.8, 4.0), "s_curve": (2.0, 3.0, 5.0, 7.0, 10.0)}
CONTRAST_DOWN = {"linear": (0.75, 0.6, 0.45, 0.3, 0.2), "s_curve": (0.85, 0.7, 0.6, 0.5, 0.4)}
SATURATION_METHODS = ("hsv", "ycrcb")
SATURATE_UP = {"hsv": (3.0, 6.0, 12.0, 24.0, 64.0), "ycrcb": (2.0, 3.0, 5.0, 8.0, 16.0)}
SATURATE_DOWN = {"hsv": (0.7, 0.5, 0.3, 0.15, 0.0), "ycrcb": (0.6, 0.45, 0.3, 0.15, 0.0)}
CHANNEL_ORDERS = ("rbg", "grb", "gbr", "brg", "bgr")  # every order but the identity


def _lut(curve: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(curve * 255.0), 0, 255).astype(np.uint8)


def _on_channel(image: np.ndarray, to: int, back: int, channels: tuple[int, ...], lut: np.ndarray) -> np.ndarray:
    converted = cv2.cvtColor(image, to)
    for c in channels:
        converted[..., c] = cv2.LUT(converted[..., c], lut)
    return cv2.cvtColor(converted, back)


def _light(image: np.ndarray, p: Params, table: dict) -> np.ndarray:
    method = p.choice("method", LIGHT_METHODS)
    v = table[method][p.severity - 1]
    lut = _lut(LEVELS + v if method.endswith("shift") else LEVELS**v)
    if method.startswith("rgb"):
        return cv2.LUT(image, lut)
    return _on_channel(image, cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB, (2,), lut)


@degradation("brighten", severities=5, methods=LIGHT_METHODS, table=(
    "HSV V shift +0.1...+0.5; RGB shift +0.1, 0.15, 0.2, 0.27, 0.35; RGB gamma 0.8...0.3; HSV V gamma 0.7...0.25"))
def brighten(image: np.ndarray, p: Params) -> np.ndarray:
    return _light(image, p, BRIGHTEN)


@degradation("darken", severities=5, methods=LIGHT_METHODS, table=(
    "HSV V shift -0.1...-0.5; RGB shift -0.1...-0.35; RGB gamma 1.4...3.2; HSV V gamma 1.5...3.5"))
def darken(image: np.ndarray, p: Params) -> np.ndarray:
    return _light(image, p, DARKEN)


@degradation("low_light", severities=5, table="x times U(0.3, 0.4) in five bins, 0.4 (mild) to 0.3")
def low_light(image: np.ndarray, p: Params) -> np.ndarray:
    return cv2.LUT(image, _lut(LEVELS * p.binned("factor", 0.4, 0.3)))


def _contrast(image: np.ndarray, p: Params, table: dict) -> np.ndarray:
    method = p.choice("method", CONTRAST_METHODS)
    k = table[method][p.severity - 1]
    if method == "linear":  # PIL ImageEnhance.Contrast: blend with the mean gray
        mean = float(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).mean()) / 255.0
        return cv2.LUT(image, _lut(mean + k * (LEVELS - mean)))
    return cv2.LUT(image, _lut(LEVELS**k / (LEVELS**k + (1 - LEVELS) ** k)))


@degradation("contrast_strengthen", severities=5, methods=CONTRAST_METHODS, table=(
    "contrast x1.4, 1.7, 2.1, 2.8, 4.0 about the mean, or s-curve x^k/(x^k+(1-x)^k), k 2, 3, 5, 7, 10"))
def contrast_strengthen(image: np.ndarray, p: Params) -> np.ndarray:
    return _contrast(image, p, CONTRAST_UP)


@degradation("contrast_weaken", severities=5, methods=CONTRAST_METHODS, table=(
    "contrast x0.75, 0.6, 0.45, 0.3, 0.2 about the mean, or s-curve with k 0.85, 0.7, 0.6, 0.5, 0.4"))
def contrast_weaken(image: np.ndarray, p: Params) -> np.ndarray:
    return _contrast(image, p, CONTRAST_DOWN)


def _saturation(image: np.ndarray, p: Params, table: dict) -> np.ndarray:
    method = p.choice("method", SATURATION_METHODS)
    k = table[method][p.severity - 1]
    if method == "hsv":
        return _on_channel(image, cv2.COLOR_RGB2HSV, cv2.COLOR_HSV2RGB, (1,), _lut(LEVELS * k))
    chroma = _lut(0.5 + k * (LEVELS - 128 / 255))
    return _on_channel(image, cv2.COLOR_RGB2YCrCb, cv2.COLOR_YCrCb2RGB, (1, 2), chroma)


@degradation("saturate_strengthen", severities=5, methods=SATURATION_METHODS, table=(
    "HSV S x3, 6, 12, 24, 64, or YCrCb chroma x2, 3, 5, 8, 16"))
def saturate_strengthen(image: np.ndarray, p: Params) -> np.ndarray:
    return _saturation(image, p, SATURATE_UP)


@degradation("saturate_weaken", severities=5, methods=SATURATION_METHODS, table=(
    "HSV S x0.7, 0.5, 0.3, 0.15, 0, or YCrCb chroma x0.6, 0.45, 0.3, 0.15, 0"))
def saturate_weaken(image: np.ndarray, p: Params) -> np.ndarray:
    return _saturation(image, p, SATURATE_DOWN)


@degradation("gray", table="none: Rec. 601 luma of RGB, in all three channels")
def gray(image: np.ndarray, p: Params) -> np.ndarray:
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB)


@degradation("color_distortion", methods=("permute", "channel"), table=(
    "none: a non-identity channel order, or one channel set to 0 or 255"))
def color_distortion(image: np.ndarray, p: Params) -> np.ndarray:
    if p.choice("method", ("permute", "channel")) == "permute":
        order = p.choice("order", CHANNEL_ORDERS)
        return np.ascontiguousarray(image[..., ["rgb".index(c) for c in order]])
    out = image.copy()
    out[..., p.choice("channel", (0, 1, 2))] = p.choice("value", (0, 255))
    return out
