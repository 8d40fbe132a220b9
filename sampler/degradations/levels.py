"""What a degradation's params mean, in the units of its parameter: `strength(params)`.

A params dict records the severity, the sub-method and every value drawn
(`gaussian_blur s3 sigma=2.9`), but most severities select a level from a table
(`blur` lens, severity 5: a disk of radius 8 px at 512). Pictures label a cell with
the parameter and its value, so each degradation says here how its params read,
from the same level tables its function uses. Spatial lengths are given in px at
`REFERENCE_SIZE` (512) and scaled to the cell, as the functions scale them.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

from graph200k import DEFAULT_NODES

from . import blur, codecs, geometry, noise, overlays, palette, tone
from .registry import REFERENCE_SIZE, REGISTRY

AT = f"px at {REFERENCE_SIZE}"


def _level(params: Mapping[str, Any], table):
    return table[int(params["severity"]) - 1]


def _blur(p: Mapping[str, Any]) -> str:
    method = p["method"]
    if method == "gaussian":
        return f"gaussian sigma={_level(p, blur.GAUSSIAN_SIGMA):g} {AT}"
    if method == "motion":
        radius, sigma = _level(p, blur.MOTION)
        return f"motion radius={radius} sigma={sigma} {AT}, angle={p['angle']:.0f} deg"
    if method == "glass":
        sigma, shift, iterations = _level(p, blur.GLASS)
        return f"glass sigma={sigma:g} shift={shift} {AT} x{iterations}"
    if method == "lens":
        return f"lens disk radius={_level(p, blur.LENS_RADIUS):g} {AT}"
    if method == "zoom":
        return f"zoom to x{_level(p, blur.ZOOM_MAX):g}"
    return f"jitter shift={_level(p, blur.JITTER_SHIFT):g} {AT}"


def _light(table: Mapping[str, tuple]) -> Callable[[Mapping[str, Any]], str]:
    def text(p: Mapping[str, Any]) -> str:
        value = _level(p, table[p["method"]])
        space, kind = p["method"].split("_")
        if kind == "shift":
            return f"{space.upper()} {'V ' if space == 'hsv' else ''}shift {value:+g}"
        return f"{space.upper()} {'V ' if space == 'hsv' else ''}gamma {value:g}"
    return text


def _contrast(table: Mapping[str, tuple]) -> Callable[[Mapping[str, Any]], str]:
    def text(p: Mapping[str, Any]) -> str:
        value = _level(p, table[p["method"]])
        return f"x{value:g} about the mean" if p["method"] == "linear" else f"s-curve k={value:g}"
    return text


def _saturation(table: Mapping[str, tuple]) -> Callable[[Mapping[str, Any]], str]:
    def text(p: Mapping[str, Any]) -> str:
        value = _level(p, table[p["method"]])
        return f"HSV S x{value:g}" if p["method"] == "hsv" else f"YCrCb chroma x{value:g}"
    return text


def _quantization(p: Mapping[str, Any]) -> str:
    if p["method"] == "otsu":
        return f"multi-Otsu {_level(p, palette.OTSU_CLASSES)} classes per channel"
    if p["method"] == "median_cut":
        return f"median cut to {_level(p, palette.MEDIAN_CUT_COLOURS)} colours"
    return f"uniform {_level(p, palette.HISTOGRAM_BINS)} levels per channel"


def _compression(p: Mapping[str, Any]) -> str:
    if p["method"] == "jpeg":
        return f"JPEG quality={_level(p, codecs.COMPRESSION_JPEG_QUALITY)}"
    return f"JPEG 2000 at {_level(p, codecs.COMPRESSION_JPEG2000_DB):g} dB PSNR"


def _colour(p: Mapping[str, Any]) -> str:
    if p["method"] == "permute":
        return f"channels in order {p['order'].upper()}"
    return f"channel {'RGB'[p['channel']]} set to {p['value']}"


def _rotation(name: str) -> Callable[[Mapping[str, Any]], str]:
    def text(p: Mapping[str, Any]) -> str:
        details = DEFAULT_NODES.get(name).details
        return f"turn {details['degrees']} deg {details['rotation']}"
    return text


def _lens(sign: float) -> Callable[[Mapping[str, Any]], str]:
    def text(p: Mapping[str, Any]) -> str:
        gain = _level(p, geometry.LENS_GAIN)
        return f"k1={sign * 0.1 * gain:+.3g} k2={sign * 0.05 * gain:+.3g}"
    return text


STRENGTH: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "blur": _blur,
    "compression": _compression,
    "sr_x2": lambda p: "bicubic down x2 and back up",
    "sr_x4": lambda p: "bicubic down x4 and back up",
    "pixelate": lambda p: f"blocks of {_level(p, blur.PIXELATE_BLOCK):.2g} {AT}",
    "defocus": lambda p: f"disk radius={_level(p, blur.DEFOCUS_RADIUS):g} {AT}",
    "gaussian_blur": lambda p: f"sigma={p['sigma']:.2f} {AT}",
    "oversharpen": lambda p: f"unsharp amount={_level(p, blur.SHARPEN_AMOUNT):g}",
    "gaussian_noise": lambda p: f"sigma={p['sigma']:.1f}/255",
    "poisson_noise": lambda p: f"peak={_level(p, noise.POISSON_PEAK)} photons",
    "salt_pepper_noise": lambda p: f"{_level(p, noise.SALT_PEPPER_AMOUNT):.1%} of pixels",
    "mosaic": lambda p: "RGGB Bayer pattern",
    "contrast_strengthen": _contrast(tone.CONTRAST_UP),
    "contrast_weaken": _contrast(tone.CONTRAST_DOWN),
    "quantization": _quantization,
    "jpeg": lambda p: f"quality={int(round(p['quality']))}",
    "brighten": _light(tone.BRIGHTEN),
    "darken": _light(tone.DARKEN),
    "low_light": lambda p: f"brightness x{p['factor']:.2f}",
    "saturate_strengthen": _saturation(tone.SATURATE_UP),
    "saturate_weaken": _saturation(tone.SATURATE_DOWN),
    "gray": lambda p: "Rec. 601 luma",
    "color_distortion": _colour,
    "inpainting": lambda p: f"{int(round(p['lines']))} {p['colour']} lines",
    "rotate90": _rotation("rotate90"),
    "rotate180": _rotation("rotate180"),
    "rotate270": _rotation("rotate270"),
    "barrel": _lens(1.0),
    "pincushion": _lens(-1.0),
    "elastic": lambda p: f"RMS shift={_level(p, geometry.ELASTIC_RMS):g} {AT}",
    "rain": lambda p: (f"{p['density'] * REFERENCE_SIZE ** 2:.0f} streaks per {REFERENCE_SIZE}^2, "
                       f"length={p['length']} blur={_level(p, overlays.RAIN_BLUR)} {AT}"),
    "frost": lambda p: (f"frost weight {_level(p, overlays.FROST_MIX)[1]:g} over "
                        f"{_level(p, overlays.FROST_COVERAGE):.0%} of the pane"),
}

_missing = set(REGISTRY) - set(STRENGTH)
if _missing:
    raise ImportError(f"degradations without a strength text in sampler.degradations.levels: {sorted(_missing)}")


def severity_text(params: Mapping[str, Any]) -> str:
    """`s3 of 1-5` for a degradation with severities, `fixed recipe` for one without."""
    spec = REGISTRY[params["name"]]
    if not spec.severities:
        return "fixed recipe"
    return f"s{params['severity']} of 1-{len(spec.severities)}"


def strength(params: Mapping[str, Any]) -> str:
    """The parameter(s) and value(s) `params` (a dict `degrade` returned) stand for, e.g.
    `sigma=2.91 px at 512` for gaussian_blur, `lens disk radius=8 px at 512` for blur."""
    return STRENGTH[params["name"]](params)
