"""Cheap metrics on the fixed validation grids, logged next to their images (`validation.metrics`).

The evaluation's own functions (`inference.metrics`) score each filled validation grid, so
a curve in TensorBoard means what the same name means in the evaluation report:

- `canny_f1`: the query's canny condition cell vs the canny edges of the generated cell,
  where the grid has a canny column and the generated cell is the `target` photo;
- `clip_t`: 100 x max(cos, 0) of the generated `target` cell with the query's content text
  (subject and caption). Validation prompts are diffusers' form (`sampler.instruction`),
  so that text is what follows `DIFFUSERS_CONTENT_PREFIX`; a prompt without it (a map
  target, a hand-written prompt) gets no clip_t;
- `ssim`, `psnr`: each generated cell vs its ground-truth cell (every grid has one).

A metric that does not apply to a grid is absent from that grid's values; the means are
over the grids it applies to. The CLIP is loaded once, offline (a local folder or the
Hugging Face cache; `inference.metrics.metric_models`), in fp32; when its weights are not
here clip_t is skipped with one warning naming the model and how to get it.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from inference.metrics import ClipScorer, MetricUnavailable, canny_f1, psnr, ssim
from sampler.grid_sample import GridSample, cells_of
from sampler.instruction import DIFFUSERS_CONTENT_PREFIX

from .config import ValidationConfig

logger = logging.getLogger("train")


def content_text(prompt: str) -> str | None:
    """The content part (subject and caption) of a validation prompt, or None when it has none."""
    _, prefix, content = prompt.partition(DIFFUSERS_CONTENT_PREFIX)
    return (content.strip() or None) if prefix else None


def filled_cells(query: list[Image.Image], masked: list[bool],
                 generated: Sequence[Image.Image]) -> list[tuple[int, Image.Image, Image.Image]]:
    """(column, generated cell at the truth's size, ground-truth cell) for each masked cell of the query row;
    `generated` holds one image per masked cell, left to right (`fill_grid`)."""
    columns = [c for c, m in enumerate(masked) if m]
    return [(c, image.convert("RGB").resize(query[c].size), query[c]) for c, image in zip(columns, generated)]


@dataclass
class ValidationMetrics:
    """The metrics computed at each validation, and the CLIP they need (loaded once)."""

    names: tuple[str, ...]
    device: torch.device = torch.device("cpu")
    """Where the metric models run (`validation.metrics_on`)."""
    clip: ClipScorer | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    """{metric: why it is not computed; how to enable it}."""

    @classmethod
    def load(cls, cfg: ValidationConfig, device: torch.device) -> "ValidationMetrics":
        """The metrics of `cfg.metrics` that can run here; never downloads, never fails for a missing CLIP."""
        names = tuple(dict.fromkeys(cfg.metrics))
        device = device if cfg.metrics_on == "device" else torch.device("cpu")
        metrics = cls(names, device)
        if "clip_t" in names:
            try:
                metrics.clip = ClipScorer.load(cfg.clip_model, device=device)
            except MetricUnavailable as missing:
                metrics.skipped["clip_t"] = missing.skipped.message
                metrics.names = tuple(n for n in names if n != "clip_t")
                logger.warning("validation metric clip_t skipped (validation.clip_model=%s): %s",
                               cfg.clip_model, missing.skipped.message)
        return metrics

    def score(self, grid: GridSample, generated: Sequence[Image.Image]) -> dict[str, float]:
        """This grid's value of each metric that applies to it (see the module docstring), in fp32 even
        inside the trainer's autocast."""
        with contextlib.ExitStack() as stack:
            for device_type in dict.fromkeys(("cpu", self.device.type)):
                stack.enter_context(torch.autocast(device_type, enabled=False))
            return self._score(grid, generated)

    def _score(self, grid: GridSample, generated: Sequence[Image.Image]) -> dict[str, float]:
        cells, masked = cells_of(grid)
        filled = filled_cells(cells[-1], masked[-1], generated)
        values: dict[str, float] = {}
        for name, compare in (("ssim", ssim), ("psnr", psnr)):
            if name in self.names and filled:
                values[name] = float(np.mean([compare(image, truth) for _, image, truth in filled]))
        target = next((image for c, image, _ in filled if grid.columns[c] == "target"), None)
        if target is None:
            return values
        if "canny_f1" in self.names and "canny" in grid.columns:
            values["canny_f1"] = canny_f1(cells[-1][grid.columns.index("canny")], target)
        text = content_text(grid.prompt)
        if "clip_t" in self.names and self.clip is not None and text:
            values["clip_t"] = self.clip.text([target], [text])[0]
        return values

