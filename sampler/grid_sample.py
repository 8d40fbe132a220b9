"""`GridSample`: one VisualCloze training grid, the sampler's output and the trainer's input."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from PIL import Image

from graph200k.tasks import Task


@dataclass
class GridSample:
    """A grid of `len(rows)` rows; the query row is last.

    rows:    one float tensor (3, H_r, W_r) in [-1, 1] per row; a row is its cells
             concatenated along the width, all cells of a row the same size.
    masks:   one (1, H_r, W_r) tensor of 0/1 per row; 1 marks the cell to fill
             (only ever in the query row).
    prompt:  the instruction text ("" when dropped).
    task:    the task (family and canonical node path) every row follows.
    columns: the node type shown in each column after shuffling (a style node
             fills two columns: `<style>_ref` then `<style>`).
    keys:    the dataset sample key of each row.
    degradations: per row, {online node: the params dict `degrade` returned for it}
             ({} for a row without degradation; replay one with
             `sampler.degradations.degrade(..., params=...)`). Lets tests and
             previews check what the rows share (`sampler.sharing.RowSharing`).
    """

    rows: list[torch.Tensor]
    masks: list[torch.Tensor]
    prompt: str
    task: Task
    columns: list[str]
    keys: list[str]
    degradations: list[dict[str, dict]] = field(default_factory=list)

    @property
    def n_rows(self) -> int:
        return len(self.rows)

    @property
    def n_cols(self) -> int:
        return len(self.columns)


def collate_grids(batch: list[GridSample]) -> list[GridSample]:
    """Grids differ in rows, columns and cell sizes, so a batch stays a list."""
    return list(batch)


def to_pil(tensor: torch.Tensor) -> Image.Image:
    """(3, H, W) in [-1, 1] -> RGB image."""
    array = ((tensor.detach().float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array)


def cells_of(grid: GridSample) -> tuple[list[list[Image.Image]], list[list[bool]]]:
    """Each row split into its cells, and per cell whether it is masked (to be generated)."""
    cells, masked = [], []
    for row, mask in zip(grid.rows, grid.masks):
        width = row.shape[-1] // grid.n_cols
        cells.append([to_pil(row[:, :, c * width:(c + 1) * width]) for c in range(grid.n_cols)])
        masked.append([bool(mask[:, :, c * width:(c + 1) * width].mean() > 0.5) for c in range(grid.n_cols)])
    return cells, masked
