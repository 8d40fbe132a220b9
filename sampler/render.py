"""Rendering a `GridPlan` into a `GridSample`: decode, derive, degrade, resize, compose.

Where the work happens, and why:
- stored nodes are decoded straight to their cell (`cells.decode_cell`);
- `foreground` / `background` are the target cell times the thresholded
  foreground-mask cell (mask >= 127 is foreground), computed at cell size;
- degradations run on the target's cell, after the resize (the degradations
  scale their spatial parameters to the image size, see
  `sampler.degradations.registry.REFERENCE_SIZE`): the artefacts appear at the
  scale the model sees them, and a 384^2 cell costs a fraction of a 1024^2 photo;
- the query row is rendered first and draws its degradations; every other row
  draws its own as `RowSharing.degradation` says (`sampler.sharing`): by
  default with the query's severity and sub-method but its own seeds, so the
  examples show the same corruption without carrying the query's residual.
  Each row's params come back in `GridSample.degradations`.

`timings` accumulates seconds per stage for the benchmark.
"""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import torch
from PIL import UnidentifiedImageError

from graph200k import NodeRegistry, Production

from .cells import decode_for_cell, fit_array
from .degradations import degrade, degrade_variant
from .grid_sample import GridSample
from .planner import Cell, GridPlan, RowPlan
from .pool import UnreadableSample
from .sharing import KIND_KEYS, RowSharing, check_sharing

MASK_THRESHOLD = 127  # a foreground-mask pixel >= 127 is foreground (JPEG-noise safe)

# How each derived node is computed from the target cell and its stored mask cell.
DERIVATIONS = {
    "foreground": lambda target, mask: target * mask[..., None],
    "background": lambda target, mask: target * (1 - mask[..., None]),
}


def to_tensor(row: np.ndarray) -> torch.Tensor:
    """(H, W, 3) uint8 -> (3, H, W) float in [-1, 1]."""
    chw = torch.from_numpy(row).permute(2, 0, 1)
    return chw.to(torch.float32, memory_format=torch.contiguous_format).div_(127.5).sub_(1.0)


class GridRenderer:
    """Turns plans into grids; the query row first, so the other rows can take its degradation's kind."""

    def __init__(self, nodes: NodeRegistry, *, sharing: RowSharing = RowSharing()):
        self.nodes = nodes
        self.sharing = check_sharing(sharing)
        self.timings: Counter = Counter()

    def _timed(self, stage: str, fn, *args):
        t0 = time.perf_counter()
        out = fn(*args)
        self.timings[stage] += time.perf_counter() - t0
        return out

    def _target_cell(self, row: RowPlan, cache: dict) -> np.ndarray:
        if "target" not in cache:
            cache["target"] = self._decode(row, row.sample.target, "RGB")
        return cache["target"]

    def _decode(self, row: RowPlan, field: str, mode: str) -> np.ndarray:
        w, h = row.size
        try:
            array = self._timed("decode", decode_for_cell, row.sample.fields[field], w, h, mode)
        except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
            raise UnreadableSample(row.sample.key, f"sample {row.sample.key!r}: field {field!r} does not "
                                               f"decode ({type(exc).__name__}: {exc})") from exc
        return self._timed("resize", fit_array, array, w, h)

    def _degrade(self, source: np.ndarray, node: str, rng: np.random.Generator,
                 query: dict | None) -> tuple[np.ndarray, dict]:
        """Degrade one row's target cell; `query` is the query row's params (None: this is the query)."""
        if query is None or self.sharing.degradation == "none":
            return degrade(source, node, rng)
        if self.sharing.degradation == "exact":
            return degrade(source, node, None, params=query)
        return degrade_variant(source, node, rng, **{key: query.get(key) for key in KIND_KEYS})

    def _cell(self, row: RowPlan, cell: Cell, cache: dict, rng: np.random.Generator,
              query: dict | None, used: dict) -> np.ndarray:
        node = self.nodes.get(cell.node)
        w, h = row.size
        if node.produced_by is Production.ONLINE:
            source = self._target_cell(row, cache)
            t0 = time.perf_counter()
            out, used[cell.node] = self._degrade(source, cell.node, rng,
                                                 None if query is None else query[cell.node])
            self.timings["degrade"] += time.perf_counter() - t0
            if out.shape[:2] != (h, w):
                out = self._timed("resize", fit_array, out, w, h)
            return out
        if node.produced_by is Production.DERIVED:
            derive = DERIVATIONS.get(cell.node)
            if derive is None:
                raise ValueError(f"derived node {cell.node!r} has no derivation in sampler.render.DERIVATIONS")
            target = self._target_cell(row, cache)
            if "mask" not in cache:
                mask = self._decode(row, cell.field, "L")
                cache["mask"] = (mask >= MASK_THRESHOLD).astype(np.uint8)
            return self._timed("compose", derive, target, cache["mask"])
        if cell.node == "target":
            return self._target_cell(row, cache)
        return self._decode(row, cell.field, "RGB")

    def render_row(self, row: RowPlan, rng: np.random.Generator,
                   query: dict | None = None) -> tuple[np.ndarray, dict]:
        """The row's pixels and {online node: the params its degradation used}; `query` is the
        query row's such dict (None when rendering the query row itself)."""
        cache: dict = {}
        used: dict = {}
        cells = [self._cell(row, c, cache, rng, query, used) for c in row.cells]
        return self._timed("compose", np.concatenate, cells, 1), used

    def render(self, plan: GridPlan, rng: np.random.Generator) -> GridSample:
        arrays: dict[int, np.ndarray] = {}
        degradations: dict[int, dict] = {}
        query = len(plan.rows) - 1
        arrays[query], degradations[query] = self.render_row(plan.rows[query], rng)
        for r in reversed(range(query)):  # the query first: the other rows take its kind
            arrays[r], degradations[r] = self.render_row(plan.rows[r], rng, degradations[query])
        t0 = time.perf_counter()
        rows, masks = [], []
        for r, row in enumerate(plan.rows):
            rows.append(to_tensor(arrays[r]))
            w, h = row.size
            mask = torch.zeros(1, h, w * len(row.cells))
            if r == len(plan.rows) - 1:
                mask[:, :, plan.mask_column * w:(plan.mask_column + 1) * w] = 1.0
            masks.append(mask)
        self.timings["compose"] += time.perf_counter() - t0
        return GridSample(rows=rows, masks=masks, prompt=plan.prompt, task=plan.task,
                          columns=list(plan.columns), keys=plan.keys,
                          degradations=[degradations[r] for r in range(len(plan.rows))])
