"""Reading the boxes Qwen2.5-VL prints when asked to ground objects.

What the model really prints: a JSON list of `{"bbox_2d": [x1, y1, x2, y2],
"label": "..."}` objects, usually in a ```json fence, sometimes with prose
before or after, sometimes a single object instead of a list, sometimes
nothing (no object found). Coordinates are absolute pixels of the *resized*
model input (the processor's `smart_resize`: sides rounded to multiples of 28
within its pixel budget), so they are rescaled to the original image, clipped
to it, and boxes left empty by clipping are dropped. JSON that is there but
does not parse raises `BoxParseError`, which the grounding annotator turns
into an errors-record entry for that one sample.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

FENCE = re.compile(r"```(?:json|JSON)?\s*\n?(.*?)(?:```|$)", re.DOTALL)
BOX_KEYS = ("bbox_2d", "bbox", "box")


class BoxParseError(ValueError):
    """The model's answer holds JSON that cannot be read as boxes."""


@dataclass(frozen=True)
class GroundedBox:
    label: str
    box: tuple[float, float, float, float]
    """(x1, y1, x2, y2) in pixels of the original image, x1 < x2, y1 < y2."""


@dataclass
class ParsedBoxes:
    boxes: list[GroundedBox] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    """Why each entry that was not kept was dropped (degenerate, outside the image, no box)."""


def _json_text(text: str) -> str | None:
    """The JSON part of an answer: the first fenced block, else from the first bracket on; None if no JSON."""
    fenced = FENCE.search(text)
    if fenced and ("[" in fenced.group(1) or "{" in fenced.group(1)):
        return fenced.group(1).strip()
    starts = [i for i in (text.find("["), text.find("{")) if i >= 0]
    return text[min(starts):].strip() if starts else None


def _decode(candidate: str, text: str):
    try:
        value, _ = json.JSONDecoder().raw_decode(candidate)
        return value
    except json.JSONDecodeError as err:
        snippet = text.strip().replace("\n", " ")[:160]
        raise BoxParseError(f"malformed JSON in the grounding answer ({err.msg} at char {err.pos}): {snippet!r}") from None


def _entries(value: dict | list) -> list:
    """The box entries of a decoded answer: a list, a single box object, or `{"objects": [...]}`."""
    if isinstance(value, dict):
        for key in ("objects", "boxes", "results"):
            if isinstance(value.get(key), list):
                return value[key]
        return [value]
    return value


def parse_qwen_boxes(text: str, input_size: tuple[int, int], image_size: tuple[int, int],
                     min_side: float = 1.0) -> ParsedBoxes:
    """Boxes of a Qwen2.5-VL grounding answer in pixels of the original image.

    `input_size` is the (width, height) the model saw (the processor's resize),
    `image_size` the original (width, height). Boxes are clipped to the image;
    a box narrower or shorter than `min_side` pixels after clipping is dropped.
    An answer without any JSON means no object was found (an empty result)."""
    in_w, in_h = input_size
    img_w, img_h = image_size
    if min(in_w, in_h, img_w, img_h) <= 0:
        raise ValueError(f"sizes must be positive: input {input_size}, image {image_size}")
    candidate = _json_text(text)
    parsed = ParsedBoxes()
    if candidate is None:
        return parsed
    sx, sy = img_w / in_w, img_h / in_h
    for i, entry in enumerate(_entries(_decode(candidate, text))):
        if not isinstance(entry, dict):
            parsed.dropped.append(f"entry {i}: not an object ({entry!r:.40})")
            continue
        raw = next((entry[k] for k in BOX_KEYS if k in entry), None)
        label = str(entry.get("label") or entry.get("name") or "object").strip() or "object"
        if (not isinstance(raw, (list, tuple)) or len(raw) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in raw)):
            parsed.dropped.append(f"{label}: no [x1, y1, x2, y2] box ({raw!r:.40})")
            continue
        x1, x2 = sorted((float(raw[0]) * sx, float(raw[2]) * sx))
        y1, y2 = sorted((float(raw[1]) * sy, float(raw[3]) * sy))
        x1, x2 = min(max(x1, 0.0), img_w), min(max(x2, 0.0), img_w)
        y1, y2 = min(max(y1, 0.0), img_h), min(max(y2, 0.0), img_h)
        if x2 - x1 < min_side or y2 - y1 < min_side:
            parsed.dropped.append(f"{label}: empty after clipping to the image ({list(raw)})")
            continue
        parsed.boxes.append(GroundedBox(label, (x1, y1, x2, y2)))
    return parsed
