"""The caption rewrite behind the editing nodes: our prompt, and strict parsing of the model's answer.

FillEdit and DepthEdit start from the sample's caption. A language model is
asked for a different main object (FillEdit: only the object changes) or a
different scene on the same layout (DepthEdit), and answers with one JSON
object `{"name", "description", "caption"}`. Pure functions, no model: the
annotators call them around `generate`, and a reply that does not parse
raises `EditParseError`, which the runner records in the sample's errors.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass

EDIT_KINDS = ("object", "scene")
MIN_CAPTION_WORDS = 4

_TASK = {
    "object": (
        "Pick the single main object or subject of the picture and imagine a clearly different one in its place "
        "(another kind of thing, not the same thing in another colour). Keep everything else exactly as the "
        "caption describes it: the background, the lighting, the camera and the position and size of the object."
    ),
    "scene": (
        "Imagine a different picture with the same spatial arrangement: keep where things are, their sizes and "
        "the depth of the scene, but change what the main subject is and what the surroundings are."
    ),
}

SYSTEM_PROMPT = "You write precise captions for image editing. You answer with JSON only."

_USER_TEMPLATE = """Here is the caption of a picture{item}:

{caption}

{task}

Answer with one JSON object and nothing else, with exactly these keys:
"name": the new subject in two to four words,
"description": one sentence about the new subject's look,
"caption": the full caption of the edited picture, as detailed as the original."""


class EditParseError(ValueError):
    """The model's reply is not the JSON edit we asked for; the message says what is wrong."""


@dataclass(frozen=True)
class CaptionEdit:
    """A rewritten caption: the new subject's `name`, a one-line `description`, the full `caption`."""

    name: str
    description: str
    caption: str

    def to_json(self) -> dict:
        return asdict(self)


def edit_messages(caption: str, kind: str = "object", item: str | None = None) -> list[dict]:
    """Chat messages asking for an edit of `caption` (`kind` "object" or "scene")."""
    if kind not in EDIT_KINDS:
        raise ValueError(f"unknown edit kind {kind!r}; use one of {EDIT_KINDS}")
    if not caption or not caption.strip():
        raise ValueError("the sample has no caption to rewrite (metadata `caption` is empty or missing)")
    about = f" whose subject is {item!r}" if item else ""
    user = _USER_TEMPLATE.format(item=about, caption=caption.strip(), task=_TASK[kind])
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}]


_THINK = re.compile(r"<think>.*?</think>", re.DOTALL)
_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.DOTALL)


def _first_object(text: str) -> str:
    """The first balanced `{...}` in `text` (braces inside JSON strings are skipped)."""
    start = text.find("{")
    if start < 0:
        raise EditParseError(f"no JSON object in the reply: {_clip(text)!r}")
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        ch = text[i]
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth == 0:
                return text[start:i + 1]
    raise EditParseError(f"the JSON object is cut off (unbalanced braces; max_new_tokens too small?): {_clip(text)!r}")


def _clip(text: str, n: int = 120) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[:n] + "..."


def parse_caption_edit(reply: str, original_caption: str | None = None) -> CaptionEdit:
    """The `CaptionEdit` in a model reply; tolerates a code fence, prose around it and a `<think>` block.

    Raises `EditParseError` for anything else: no object, invalid JSON, missing
    or empty keys, non-string values, a caption too short to be one, or a
    caption identical to the original."""
    text = _THINK.sub("", reply).strip()
    fenced = _FENCE.search(text)
    if fenced:
        text = fenced.group(1)
    raw = _first_object(text)
    try:
        data = json.loads(raw)
    except json.JSONDecodeError as err:
        raise EditParseError(f"invalid JSON ({err.msg} at character {err.pos}): {_clip(raw)!r}") from None
    if not isinstance(data, dict):
        raise EditParseError(f"expected a JSON object, got {type(data).__name__}")
    data = {str(k).strip().lower(): v for k, v in data.items()}
    missing = [k for k in ("name", "description", "caption") if k not in data]
    if missing:
        raise EditParseError(f"the JSON lacks {', '.join(map(repr, missing))}; it has {sorted(data)}")
    values = {}
    for key in ("name", "description", "caption"):
        value = data[key]
        if not isinstance(value, str):
            raise EditParseError(f"{key!r} must be a string, got {type(value).__name__}")
        value = " ".join(value.split())
        if not value:
            raise EditParseError(f"{key!r} is empty")
        values[key] = value
    if len(values["caption"].split()) < MIN_CAPTION_WORDS:
        raise EditParseError(f"'caption' is too short to be a caption: {values['caption']!r}")
    if original_caption is not None and values["caption"] == " ".join(original_caption.split()):
        raise EditParseError("'caption' repeats the original caption unchanged")
    return CaptionEdit(**values)
