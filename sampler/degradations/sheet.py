"""The contact sheet: the source and all 32 degradations of it, labelled, so a person
can check at a glance that each looks like its name."""

from __future__ import annotations

import os
import tempfile
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from . import DEGRADATION_NAMES, degrade, describe

COLUMNS = 6
LABEL_LINES = 3


def square_cell(image: Image.Image, size: int) -> np.ndarray:
    """Centre-crop to a square and resize to `size` (a grid cell, before degradation)."""
    w, h = image.size
    side = min(w, h)
    box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
    return np.asarray(image.convert("RGB").resize((size, size), Image.LANCZOS, box=box))


def render_contact_sheet(image: Image.Image, seed: int = 0, cell: int = 256) -> Image.Image:
    """One tile per degradation (random severity and method from `seed`), source first."""
    source = square_cell(image, cell)
    rng = np.random.default_rng(seed)
    tiles = [(source, f"source {image.size[0]}x{image.size[1]}, cell {cell}px")]
    for name in DEGRADATION_NAMES:
        out, params = degrade(source, name, rng)
        tiles.append((out, describe(params)))
    font = ImageFont.load_default(size=max(10, cell // 20))
    line_h = font.getbbox("Ag")[3] + 2
    label_h = LABEL_LINES * line_h + 4
    rows = -(-len(tiles) // COLUMNS)
    sheet = Image.new("RGB", (COLUMNS * (cell + 4) + 4, rows * (cell + label_h + 4) + 4), "white")
    draw = ImageDraw.Draw(sheet)
    chars = max(10, int(cell / (font.getlength("x") or 6)))
    for i, (tile, label) in enumerate(tiles):
        x = 4 + (i % COLUMNS) * (cell + 4)
        y = 4 + (i // COLUMNS) * (cell + label_h + 4)
        sheet.paste(Image.fromarray(tile), (x, y))
        for j, line in enumerate(textwrap.wrap(label, chars)[:LABEL_LINES]):
            draw.text((x + 2, y + cell + 2 + j * line_h), line, fill="black", font=font)
    return sheet


def write_contact_sheet(image_path: str | os.PathLike, out_path: str | os.PathLike, seed: int = 0,
                        cell: int = 256) -> Path:
    """Render the sheet for `image_path` and write it as PNG to `out_path` (atomically)."""
    image_path, out_path = Path(image_path), Path(out_path)
    if not image_path.is_file():
        raise FileNotFoundError(f"--image {image_path}: no such file")
    with Image.open(image_path) as source:
        sheet = render_contact_sheet(source, seed=seed, cell=cell)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            sheet.save(f, format="PNG")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp's 0600 is for the temp file only
        os.replace(tmp, out_path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out_path
