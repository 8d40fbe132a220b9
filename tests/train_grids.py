"""Training grids for the trainer tests, built from the bundled 64 px Graph200K crops.

Follows the grid contract (sampler.grid_sample): rows of cells side by side in [-1, 1],
the query row last with one masked cell. Built directly so the trainer tests do not depend
on the sampler stage.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from graph200k import default_task_graph
from sampler.grid_sample import GridSample

DATA = Path(__file__).resolve().parent / "data" / "train"
KEYS = ("012cd392", "2c4e256f", "78dc6506")


@lru_cache(maxsize=None)
def _task(nodes: tuple[str, ...]):
    for task in default_task_graph().tasks():
        if task.nodes == nodes:
            return task
    raise LookupError(f"no default task with nodes {nodes}")


def cell(key: str, node: str, size: int) -> torch.Tensor:
    image = Image.open(DATA / f"{key}.{node}.jpg").convert("RGB").resize((size, size), Image.LANCZOS)
    array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def make_grid(keys: tuple[str, ...], nodes: tuple[str, ...] = ("depth", "target"), size: int = 32,
              masked_column: int | None = None, prompt: str | None = None) -> GridSample:
    """One row per key (query last), one column per node; the query row masks `masked_column` (default: last)."""
    masked_column = len(nodes) - 1 if masked_column is None else masked_column
    rows, masks = [], []
    for r, key in enumerate(keys):
        rows.append(torch.cat([cell(key, node, size) for node in nodes], dim=2))
        mask = torch.zeros(1, size, size * len(nodes))
        if r == len(keys) - 1:
            mask[:, :, masked_column * size:(masked_column + 1) * size] = 1.0
        masks.append(mask)
    text = prompt or (f"A grid layout with {len(keys)} rows and {len(nodes)} columns. "
                      f"Generate the {nodes[-1]} from the {nodes[0]}.")
    return GridSample(rows=rows, masks=masks, prompt=text, task=_task(nodes), columns=list(nodes), keys=list(keys))


def two_fixed_grids(size: int = 32) -> list[GridSample]:
    return [make_grid((KEYS[0], KEYS[1]), size=size), make_grid((KEYS[2], KEYS[0]), ("hed", "target"), size=size)]
