"""A contact sheet of one sample through every perception annotator (docs/img/annotators.png).

Each tile is the annotator's own output where it can run here (weights
present), else the sample's real Graph200K annotation where the folder holds
one, else a grey tile saying why neither exists. The caption under each tile
says which it is, so the picture never passes a release map off as ours.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
from PIL import Image, ImageDraw

from graph200k.decode import decode_image
from graph200k.fonts import label_font
from graph200k.shardio import atomic_file

from .base import SampleInput, WithExtras
from .perception.canny import CannyAnnotator
from .inputs.fields import node_alias
from .perception.catalog import PERCEPTION_ANNOTATORS

SHEET_ANNOTATORS = (CannyAnnotator, *PERCEPTION_ANNOTATORS)
CAPTION_HEIGHT = 34


def fixture_maps(sample_dir: Path) -> dict[str, Path]:
    """Node name -> file of a sample folder (`target.jpg`, `depth.jpg`, `mask.jpg`, ...; either spelling)."""
    found = {}
    for path in sorted(sample_dir.iterdir()):
        parts = path.name.split(".")
        if len(parts) == 2 and path.is_file():
            alias = ("target", False) if parts[0] == "target" else node_alias(parts[0])
            if alias and not alias[1]:
                found[alias[0]] = path
    return found


def _tile(image: np.ndarray | Image.Image | None, width: int, height: int, title: str, note: str) -> Image.Image:
    tile = Image.new("RGB", (width, height + CAPTION_HEIGHT), (255, 255, 255))
    if image is None:
        tile.paste((200, 200, 200), (0, 0, width, height))
    else:
        picture = image if isinstance(image, Image.Image) else Image.fromarray(image)
        tile.paste(picture.convert("RGB").resize((width, height), Image.Resampling.LANCZOS), (0, 0))
    draw = ImageDraw.Draw(tile)
    draw.text((4, height + 2), title, fill=(0, 0, 0), font=label_font(size=14))
    draw.text((4, height + 18), note, fill=(90, 90, 90), font=label_font(size=11))
    return tile


def contact_sheet(sample_dir: Path, settings: Mapping[str, Mapping[str, str]] | None = None,
                  tile_width: int = 200, columns: int = 4) -> tuple[Image.Image, list[dict]]:
    """The sheet and, per tile, where its picture came from (`ours`, `Graph200K release`, `missing`)."""
    sample_dir = Path(sample_dir)
    files = fixture_maps(sample_dir)
    if "target" not in files:
        raise FileNotFoundError(f"{sample_dir} has no target image (target.jpg)")
    target = decode_image(files["target"].read_bytes(), "RGB")
    meta_file = sample_dir / "meta.json"
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    height = round(tile_width * target.shape[0] / target.shape[1])
    tiles = [_tile(target, tile_width, height, "target", "source image")]
    sources = [{"node": "target", "source": "source image"}]
    for cls in SHEET_ANNOTATORS:
        annotator = cls(settings=(settings or {}).get(cls.name))
        available = annotator.availability()
        for node in cls.produces:
            if available.ok:
                annotator.load()
                value = annotator.annotate([SampleInput(sample_dir.name, target, meta=meta)])[0][node]
                image = value.image if isinstance(value, WithExtras) else value
                source, note = "ours", f"ours: {cls.model_id or cls.name}"
            elif node in files:
                image = decode_image(files[node].read_bytes(), "RGB")
                source, note = "Graph200K release", "Graph200K release map"
            else:
                image, source, note = None, "missing", "no weights here"
            tiles.append(_tile(image, tile_width, height, node, note[:34]))
            sources.append({"node": node, "annotator": cls.name, "source": source})
    rows = -(-len(tiles) // columns)
    sheet = Image.new("RGB", (columns * tile_width + (columns + 1) * 6,
                              rows * (height + CAPTION_HEIGHT) + (rows + 1) * 6), (255, 255, 255))
    for i, tile in enumerate(tiles):
        r, c = divmod(i, columns)
        sheet.paste(tile, (6 + c * (tile_width + 6), 6 + r * (height + CAPTION_HEIGHT + 6)))
    return sheet, sources


def save_sheet(sheet: Image.Image, out: Path) -> None:
    """Write the sheet as an adaptive-palette PNG (small enough to commit), atomically."""
    with atomic_file(Path(out)) as f:
        sheet.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(f, format="PNG", optimize=True)
