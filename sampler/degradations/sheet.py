"""The contact sheet: the source and all 32 degradations of it, labelled, so a person
can check at a glance that each looks like its name and how strong its severity is.

Each cell says its node, its severity (`s3 of 1-5`, or `fixed recipe`) and the
parameter value the severity stands for (`sigma=2.81 px at 512`,
`sampler.degradations.levels`); a legend under the grid says what the range is
and how the severities were drawn."""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from graph200k.fonts import label_font
from graph200k.shardio import atomic_file

from . import DEGRADATION_NAMES, REFERENCE_SIZE, degrade
from .levels import severity_text, strength

COLUMNS = 6
LABEL_LINES = 3


@dataclass(frozen=True)
class Tile:
    """One cell of the sheet: the picture, its name and what its severity stands for."""

    image: np.ndarray
    title: str  # the node, e.g. "gaussian_blur"
    detail: str  # severity and parameter, e.g. "s3 of 1-5: sigma=2.81 px at 512"


def square_cell(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to `size` (a grid cell, before degradation)."""
    w, h = image.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    return np.asarray(image.convert("RGB").resize((size, size), Image.LANCZOS, box=box))


def degradation_tiles(source: np.ndarray, seed: int = 0) -> list[Tile]:
    """`source` and one tile per degradation, severity and sub-method drawn from `seed` as the sampler draws them."""
    rng = np.random.default_rng(seed)
    h, w = source.shape[:2]
    tiles = [Tile(source, "source", f"{w}x{h} cell, not degraded")]
    for name in DEGRADATION_NAMES:
        out, params = degrade(source, name, rng)
        tiles.append(Tile(out, name, f"{severity_text(params)}: {strength(params)}"))
    return tiles


def legend(seed: int, cell: int) -> list[str]:
    """The footer: what a severity is, its range, and how the sheet's were drawn."""
    return [
        "Severity sN of 1-5 (compression, quantization: 1-3): 1 is mildest, 5 strongest; \"fixed recipe\": the node "
        "has none. Where the reference draws a value from a range, severity N is the Nth equal bin of it.",
        f"Each cell's severity and sub-method are drawn uniformly from --seed {seed}, as the sampler draws them "
        "for every training grid (the grid's rows share them). Lengths are px at 512, scaled to the cell "
        f"({cell} px: x{cell / REFERENCE_SIZE:.3g}).",
        "Every level: docs/ARCHITECTURE.md \"Severities\" (sampler.degradations.severity_table()).",
    ]


def render_contact_sheet(image: Image.Image, seed: int = 0, cell: int = 256) -> Image.Image:
    """One tile per degradation (random severity and method from `seed`), source first, each labelled
    with its name, severity and the parameter value that severity stands for; the legend below."""
    source = square_cell(image, cell)
    tiles = degradation_tiles(source, seed)
    tiles[0] = Tile(source, "source", f"{image.size[0]}x{image.size[1]}, cell {cell}px")
    font = label_font(size=max(10, cell // 20))
    bold = label_font(size=max(11, cell // 17))
    line_h = font.getbbox("Ag")[3] + 2
    title_h = bold.getbbox("Ag")[3] + 3
    label_h = title_h + LABEL_LINES * line_h + 4
    rows = -(-len(tiles) // COLUMNS)
    width = COLUMNS * (cell + 4) + 4
    foot_font = label_font(size=max(11, cell // 18))
    foot_chars = max(40, int((width - 12) / (foot_font.getlength("x") or 6)))
    foot = [part for line in legend(seed, cell) for part in textwrap.wrap(line, foot_chars)]
    foot_h = foot_font.getbbox("Ag")[3] + 3
    grid_h = rows * (cell + label_h + 4) + 4
    sheet = Image.new("RGB", (width, grid_h + len(foot) * foot_h + 12), "white")
    draw = ImageDraw.Draw(sheet)
    chars = max(10, int(cell / (font.getlength("x") or 6)))
    for i, tile in enumerate(tiles):
        x = 4 + (i % COLUMNS) * (cell + 4)
        y = 4 + (i // COLUMNS) * (cell + label_h + 4)
        sheet.paste(Image.fromarray(tile.image), (x, y))
        draw.text((x + 2, y + cell + 2), tile.title, fill="black", font=bold)
        for j, line in enumerate(textwrap.wrap(tile.detail, chars)[:LABEL_LINES]):
            draw.text((x + 2, y + cell + 2 + title_h + j * line_h), line, fill=(70, 70, 70), font=font)
    draw.line([(4, grid_h + 2), (width - 4, grid_h + 2)], fill=(160, 160, 160))
    for j, line in enumerate(foot):
        draw.text((6, grid_h + 6 + j * foot_h), line, fill="black", font=foot_font)
    return sheet


def write_contact_sheet(image_path: str | os.PathLike, out_path: str | os.PathLike, seed: int = 0,
                        cell: int = 256) -> Path:
    """Render the sheet for `image_path` and write it as PNG to `out_path` (atomically)."""
    image_path, out_path = Path(image_path), Path(out_path)
    if not image_path.is_file():
        raise FileNotFoundError(f"--image {image_path}: no such file")
    with Image.open(image_path) as source:
        sheet = render_contact_sheet(source, seed=seed, cell=cell)
    with atomic_file(out_path) as f:
        sheet.save(f, format="PNG")
    return out_path
