"""Looking at grids: one annotated PNG per grid and an index.html.

Each PNG shows the grid as the trainer gets it (masked cell outlined in red,
the cell's pixels left visible so one can see what is to be generated), the
node name of every column above each row with the row's sample key, and the
prompt under the grid.
"""

from __future__ import annotations

import html
import itertools
import os
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

from graph200k.fonts import label_font
from graph200k.shardio import atomic_file, write_text

from .grid_sample import GridSample

BAND = 22  # label band above each row, px
GAP = 6
PAD = 8
MASK_COLOUR = (230, 30, 30)


def grid_image(grid: GridSample, *, text_width: int | None = None) -> Image.Image:
    """The annotated picture of one grid."""
    font, small = label_font(14), label_font(12)
    arrays = [((row.permute(1, 2, 0).numpy() + 1.0) * 127.5).clip(0, 255).astype(np.uint8) for row in grid.rows]
    width = max(a.shape[1] for a in arrays) + 2 * PAD
    prompt = grid.prompt or "(prompt dropped)"
    chars = max(40, (text_width or width) // 7)
    lines = [f"task: {grid.task.family} | {grid.task.id}"] + textwrap.wrap("prompt: " + prompt, chars)
    height = PAD + sum(BAND + a.shape[0] + GAP for a in arrays) + 18 * len(lines) + PAD
    canvas = Image.new("RGB", (width, height), (24, 24, 24))
    draw = ImageDraw.Draw(canvas)
    y = PAD
    n_cols = grid.n_cols
    for r, array in enumerate(arrays):
        cell_w = array.shape[1] // n_cols
        role = "query" if r == len(arrays) - 1 else f"example {r + 1}"
        for c, name in enumerate(grid.columns):
            draw.text((PAD + c * cell_w + 4, y + 4), f"{c + 1}: {name}", fill=(235, 235, 235), font=small)
        label = f"{role}: {grid.keys[r]}"
        draw.text((width - PAD - draw.textlength(label, font=small), y + 4), label, fill=(150, 150, 150), font=small)
        y += BAND
        canvas.paste(Image.fromarray(array), (PAD, y))
        mask = grid.masks[r][0]
        cols = [c for c in range(n_cols) if mask[:, c * cell_w:(c + 1) * cell_w].any()]
        for c in cols:
            x0 = PAD + c * cell_w
            draw.rectangle([x0, y, x0 + cell_w - 1, y + array.shape[0] - 1], outline=MASK_COLOUR, width=4)
            draw.text((x0 + 8, y + 8), "masked", fill=MASK_COLOUR, font=font)
        y += array.shape[0] + GAP
    for line in lines:
        draw.text((PAD, y), line, fill=(235, 235, 235), font=font)
        y += 18
    return canvas


def write_previews(grids, out_dir: str | os.PathLike, n: int) -> list[Path]:
    """Write the first `n` grids as PNGs plus `index.html` into `out_dir`."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    entries, paths = [], []
    for i, grid in enumerate(tqdm(itertools.islice(grids, n), total=n, desc="preview", unit="grid")):
        path = out / f"grid_{i:03d}.png"
        with atomic_file(path) as f:
            grid_image(grid).save(f, format="PNG")
        paths.append(path)
        entries.append(
            f"<figure><img src='{path.name}' loading='lazy'><figcaption><b>{html.escape(grid.task.family)}</b> "
            f"{html.escape(grid.task.id)} &middot; {grid.n_rows}x{grid.n_cols} &middot; keys: "
            f"{html.escape(', '.join(grid.keys))}<br>{html.escape(grid.prompt or '(prompt dropped)')}"
            "</figcaption></figure>")
    if len(paths) < n:
        raise RuntimeError(f"the sampler produced {len(paths)} grids, {n} were asked for")
    page = ("<!doctype html><meta charset='utf-8'><title>sampler preview</title><style>"
            "body{font-family:sans-serif;background:#111;color:#ddd}figure{margin:1em 0}"
            "img{max-width:100%}figcaption{max-width:70em}</style>"
            f"<h1>{len(paths)} training grids</h1>" + "\n".join(entries))
    write_text(out / "index.html", page)
    return paths
