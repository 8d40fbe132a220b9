"""The picture of a filled grid: the cells as the model saw them, the generated ones outlined, labelled.

Each row is drawn at its grid cell size (`sampler.inference.inference_grid`: the crops the
pipeline encodes), the row's role above it and each cell's column name on its corner; every
generated cell is pasted into its blank and outlined in red; the title and the prompt go
underneath. The look follows `python -m sampler preview`, so a training grid and an
inference grid read the same way.
"""

from __future__ import annotations

import textwrap

import numpy as np
from PIL import Image, ImageDraw

from graph200k.fonts import label_font
from sampler.inference import inference_grid

BAND = 22  # label band above each row, px
GAP = 6
PAD = 8
LINE = 18
MIN_WIDTH = 480  # room for the prompt under small grids
CHAR_WIDTH = 8  # px per character of the 14 px default font, generously
GENERATED_COLOUR = (230, 30, 30)
TEXT_COLOUR = (235, 235, 235)
DIM_COLOUR = (150, 150, 150)
BACKGROUND = (24, 24, 24)


def _row_images(images: list[list[Image.Image | None]], resolution: int) -> list[list[Image.Image]]:
    """Every cell at its grid size, as the pipeline encodes it (blanks black)."""
    grid = inference_grid(images, resolution=resolution)
    rows = []
    for row, sizes in zip(grid.rows, grid.cell_sizes):
        array = ((row.permute(1, 2, 0).numpy() + 1.0) * 127.5).round().clip(0, 255).astype(np.uint8)
        x, cells = 0, []
        for h, w in sizes:
            cells.append(Image.fromarray(array[:h, x:x + w]))
            x += w
        rows.append(cells)
    return rows


def _tag(draw: ImageDraw.ImageDraw, at: tuple[int, int], text: str, colour, font) -> None:
    """A label on a dark box over an image's corner, readable on any content."""
    x, y = at
    draw.rectangle([x, y, x + draw.textlength(text, font=font) + 6, y + 16], fill=BACKGROUND)
    draw.text((x + 3, y + 1), text, fill=colour, font=font)


def grid_picture(images: list[list[Image.Image | None]], generated: list[Image.Image], *, columns: list[str],
                 prompt: str, resolution: int, title: str = "") -> Image.Image:
    """The filled grid: `images` (example rows, then the query with None blanks) with `generated`
    (one per blank, left to right) pasted into the blanks, labelled (see the module docstring)."""
    rows = _row_images(images, resolution)
    fills = iter(generated)
    filled = [[next(fills).convert("RGB").resize(cell.size, Image.Resampling.LANCZOS) if image is None else cell
               for image, cell in zip(row_in, row)] for row_in, row in zip(images, rows)]
    font, small = label_font(14), label_font(12)
    grid_w = max(sum(c.width for c in row) for row in filled)
    width = max(grid_w + 2 * PAD, MIN_WIDTH)
    chars = (width - 2 * PAD) // CHAR_WIDTH
    lines = ([title] if title else []) + textwrap.wrap("prompt: " + (prompt or "(none)"), chars)
    height = PAD + sum(BAND + row[0].height + GAP for row in filled) + LINE * len(lines) + PAD
    canvas = Image.new("RGB", (width, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = PAD
    for r, (row_in, row) in enumerate(zip(images, filled)):
        role = "query" if r == len(filled) - 1 else f"example {r + 1}"
        draw.text((PAD, y + 4), role, fill=DIM_COLOUR, font=small)
        x, top = PAD, y + BAND
        for c, (image, cell) in enumerate(zip(row_in, row)):
            canvas.paste(cell, (x, top))
            _tag(draw, (x, top), f"{c + 1}: {columns[c]}", TEXT_COLOUR, small)
            if image is None:
                draw.rectangle([x, top, x + cell.width - 1, top + cell.height - 1], outline=GENERATED_COLOUR, width=3)
                _tag(draw, (x, top + cell.height - BAND + 4), "generated", GENERATED_COLOUR, small)
            x += cell.width
        y = top + row[0].height + GAP
    for line in lines:
        draw.text((PAD, y), line, fill=TEXT_COLOUR, font=font)
        y += LINE
    return canvas
