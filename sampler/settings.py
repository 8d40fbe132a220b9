"""The sampler's grid settings and their defaults, written once.

`GridDataset`'s keywords take their defaults from `GridSettings`, and the trainer's `data` config
section IS a `GridSettings` (train/config.py `DataConfig` adds the trainer's own keys), so a default
changed here changes both; nothing here imports torch (`python -m train --help` stays light).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class GridSettings:
    """How grids are drawn from the shards (the `data.*` keys of a training config)."""

    resolution: int = 384  # cell side in pixels (cell area resolution^2, a multiple of 16)
    seed: int = 0
    tasks: str | list[str] = "train"  # train | test | a family | task ids as `graph200k tasks` prints them; or a list
    family_weights: dict[str, float] | None = None  # {family: weight}; None = all 1 (`graph200k tasks --counts`)
    rows: dict[int, float] | None = None  # {rows per grid: probability}; None = {1: .3, 2: .4, 3: .3}
    pool_size: int = 1000  # samples held to draw in-context rows from
    mask_any_prob: float = 0.5  # chance the masked query cell is any column (reverse generation), else the target
    shuffle_columns: bool = True  # one shuffle of the condition columns per grid (the target stays last)
    square_cells: bool = False  # the reference's res x res cells instead of each row's own aspect ratio


GRID_DEFAULTS = GridSettings()
