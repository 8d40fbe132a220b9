"""Validation: one fixed set of held-out grids, filled at every validation step so the PNGs compare.

The set is drawn once, when the trainer starts: from `validation.shards`, or else from the
keys of `data.shards` that `graph200k.holdout` holds out (`validation.holdout`; training then
never sees those keys), with the test-split tasks, the target cell masked, columns in task
order, fixed seeds and the prompt at inference settings: no dropout, and exactly the string
a diffusers user's call encodes (`sampler.instruction.build_instruction(config=None)`).
The same grids, masks, prompts and sampling seeds are used at every step and on resume.

Prompts. The grid's prompt is passed whole as `task_prompt` to a pipeline whose processor
adds no layout (`GridProcessor(layout=False)`), so the text encoded is `grid.prompt` itself.
For sampler grids that text is, character for character, what stock diffusers 0.42 builds
from `task_prompt(columns)` and `content_prompt(caption, item)` (its tuple-formatted layout
and "The last image of the last row depicts: " included; tests/test_train_validation.py
compares it with the pipeline's own assembly). Passing it whole rather than re-assembling it
lets any grid source validate (`InMemoryGrids`, hand-written prompts) and shows in the
manifest exactly the text the model saw. The images go through `GridProcessor`, diffusers'
processor with its layout bugs fixed.

Each grid is saved as one PNG with a label strip (step, task, grid number) over the ground
truth and the filled grid, each labelled. Sampling follows the reference/diffusers inference
code: guidance 30 (training uses `train.guidance`, 1.0) and a resolution-shifted schedule.

Metrics. With `validation.metrics`, the main process also scores each filled grid with
the evaluation's cheap metrics (train/validation_metrics.py: canny_f1, clip_t, ssim, psnr);
the values go into `grids.json` beside what each grid is, and their means to the trainer's log.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxFillPipeline, VisualClozeGenerationPipeline
from PIL import Image, ImageDraw, ImageFont

from graph200k import Graph200kError
from graph200k.holdout import HoldoutFilter
from graph200k.shardio import atomic_file, write_json
from sampler.grid_sample import GridSample, cells_of, to_pil  # noqa: F401  (to_pil: re-exported)
from sampler.inference import GridProcessor
from sampler.shards import ShardError

from .config import ConfigError, TrainConfig
from .data import GridStream, grid_dataset, sampler_settings

if TYPE_CHECKING:  # loaded only where metrics are asked for (the metric models)
    from .validation_metrics import ValidationMetrics

VALIDATION_POOL = 64  # validation samples held to draw rows from: a few grids need few partners
LABEL_HEIGHT = 14  # pixels per label line (PIL's default font is ~11 px high)
GAP = 4


# ---------------------------------------------------------------- the fixed set


def holdout_filters(cfg: TrainConfig) -> tuple[HoldoutFilter | None, HoldoutFilter | None]:
    """(training filter, validation filter) over the keys of `data.shards`.

    Both None when `validation.shards` names the held-out data or `validation.holdout` is 0.
    The split applies whether or not validation runs, so turning validation on or off never
    changes what training sees."""
    v = cfg.validation
    if v.shards or v.holdout == 0:
        return None, None
    return HoldoutFilter(v.holdout, held_out=False), HoldoutFilter(v.holdout, held_out=True)


def validation_grids(cfg: TrainConfig) -> list[GridSample]:
    """The fixed validation set (see the module docstring); [] when there is nothing to validate on."""
    d, v = cfg.data, cfg.validation
    _, held_out = holdout_filters(cfg)
    if v.num_grids <= 0 or not (v.shards or (held_out is not None and d.shards)):
        return []
    inference = {**sampler_settings(d), "mask_any_prob": 0.0, "shuffle_columns": False, "instruction": None}
    # Filtered-out samples keep their stream positions: a window of VALIDATION_POOL / holdout
    # positions holds about VALIDATION_POOL held-out samples (the others are never read).
    window = VALIDATION_POOL if held_out is None else math.ceil(VALIDATION_POOL / held_out.fraction)
    source = grid_dataset(v.shards or d.shards, key="validation.shards" if v.shards else "data.shards",
                          resolution=d.resolution, seed=v.seed, tasks=v.tasks, rows=d.rows, pool_size=window,
                          rank=0, world_size=1, key_filter=held_out, tasks_key="validation.tasks", **inference)
    try:
        return GridStream(source).take(v.num_grids)
    except (ShardError, Graph200kError) as err:  # no readable sample serves a validation task
        if v.shards:
            raise ConfigError(f"config key 'validation.shards': no validation grid for tasks={v.tasks!r} "
                              f"could be drawn ({err})") from None
        raise ConfigError(f"config key 'validation.holdout': no validation grid for tasks={v.tasks!r} could be "
                          f"drawn from the keys of data.shards held out at {v.holdout} ({err}); raise "
                          "validation.holdout, give held-out shards as validation.shards, or set "
                          "validation.every=0") from None


def describe(grid: GridSample) -> dict:
    """What a validation grid is, for the manifest: the same at every step."""
    _, masked = cells_of(grid)
    return {"task": grid.task.id, "keys": list(grid.keys), "columns": list(grid.columns),
            "masked_cells": [c for c, m in enumerate(masked[-1]) if m], "prompt": grid.prompt}


# ---------------------------------------------------------------- filling


def visualcloze_pipeline(pipe: FluxFillPipeline, resolution: int) -> VisualClozeGenerationPipeline:
    """A VisualClozeGenerationPipeline sharing `pipe`'s modules (and so the trained adapter)."""
    vc = VisualClozeGenerationPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler.from_config(pipe.scheduler.config),
        vae=pipe.vae,
        text_encoder=pipe.text_encoder,
        tokenizer=pipe.tokenizer,
        text_encoder_2=pipe.text_encoder_2,
        tokenizer_2=pipe.tokenizer_2,
        transformer=pipe.transformer,
        resolution=resolution,
    )
    vc.image_processor = GridProcessor(resolution=resolution, layout=False)
    vc.set_progress_bar_config(disable=True)
    return vc


def fill_grid(vc: VisualClozeGenerationPipeline, grid: GridSample, *, num_inference_steps: int,
              guidance_scale: float, seed: int, max_sequence_length: int, device: torch.device) -> list[Image.Image]:
    """Generate the masked cells of the query row (one image per masked cell, left to right)."""
    cells, masked = cells_of(grid)
    images = [[None if m else c for c, m in zip(row, row_mask)] for row, row_mask in zip(cells, masked)]
    out = vc(
        task_prompt=grid.prompt,
        content_prompt=None,
        image=images,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        generator=torch.Generator(device=device).manual_seed(seed),
        max_sequence_length=max_sequence_length,
        output_type="pil",
    )
    return out.images[0]


# ---------------------------------------------------------------- the PNG


def _label(canvas: Image.Image, y: int, text: str, colour=(0, 0, 0)) -> None:
    ImageDraw.Draw(canvas).text((2, y + 1), text, fill=colour, font=ImageFont.load_default())


def _text_width(text: str) -> int:
    return int(ImageFont.load_default().getlength(text)) + 4


def compose(grid: GridSample, generated: list[Image.Image], *, step: int, index: int) -> Image.Image:
    """Label strip (step, task, grid), then the ground truth and the grid with generated cells pasted in,
    each under its own label; generated cells are outlined in red in the lower grid."""
    cells, masked = cells_of(grid)
    header = f"step {step} | {grid.task.id} | grid {index:02d}"
    truth_label = "ground truth"
    filled_label = "generated (red: filled by the model)"
    grid_w = max(sum(c.width for c in row) for row in cells)
    grid_h = sum(row[0].height for row in cells)
    width = max(grid_w, *(_text_width(t) for t in (header, truth_label, filled_label)))
    canvas = Image.new("RGB", (width, LABEL_HEIGHT + 2 * (LABEL_HEIGHT + grid_h) + GAP), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, width - 1, LABEL_HEIGHT - 1), fill=(40, 40, 40))
    _label(canvas, 0, header, colour=(255, 255, 255))
    top = 2 * LABEL_HEIGHT
    bottom = top + grid_h + GAP + LABEL_HEIGHT
    _label(canvas, LABEL_HEIGHT, truth_label)
    _label(canvas, bottom - LABEL_HEIGHT, filled_label)
    fills = iter(generated)
    y = 0
    for row, row_mask in zip(cells, masked):
        x = 0
        for cell, m in zip(row, row_mask):
            canvas.paste(cell, (x, top + y))
            shown = next(fills, cell).resize(cell.size) if m else cell
            canvas.paste(shown, (x, bottom + y))
            if m:
                draw.rectangle((x, bottom + y, x + cell.width - 1, bottom + y + cell.height - 1), outline=(255, 0, 0))
            x += cell.width
        y += row[0].height
    return canvas


def save_png_atomic(image: Image.Image, path: Path) -> Path:
    with atomic_file(path) as f:
        image.save(f, format="PNG")
    return path


@dataclass
class ValidationRun:
    """What one validation step made: each grid's PNG and the metric values of each grid."""

    images: list[tuple[Path, np.ndarray]]
    """(PNG path, HWC uint8 array) per grid; [] when nothing was saved (`save=False`)."""
    scores: list[dict[str, float]] = field(default_factory=list)
    """Per grid, the value of each metric that applies to it (train/validation_metrics.py); [] without metrics."""

    @property
    def means(self) -> dict[str, float]:
        """Each metric's mean over the grids it applies to, in first-seen order."""
        names = dict.fromkeys(name for values in self.scores for name in values)
        return {name: float(np.mean([v[name] for v in self.scores if name in v])) for name in names}


def run_validation(pipe: FluxFillPipeline, grids: list[GridSample], out_dir: Path, *, step: int, resolution: int,
                   num_inference_steps: int, guidance_scale: float, seed: int, max_sequence_length: int,
                   device: torch.device,
                   metrics: ValidationMetrics | None = None, save: bool = True) -> ValidationRun:
    """Fill every validation grid (grid i with seed `seed + i`), score each with `metrics`, and (with `save`)
    write `grid-KK.png` and `grids.json` (what each grid is; the metric values and their means) into `out_dir`.

    `save=False` only fills: the other FSDP ranks, which must join the forward passes."""
    vc = visualcloze_pipeline(pipe, resolution)
    was_training = pipe.transformer.training
    pipe.transformer.eval()
    run = ValidationRun(images=[])
    try:
        for i, grid in enumerate(grids):
            generated = fill_grid(vc, grid, num_inference_steps=num_inference_steps, guidance_scale=guidance_scale,
                                  seed=seed + i,
                                  max_sequence_length=max_sequence_length, device=device)
            if metrics is not None:
                run.scores.append(metrics.score(grid, generated))
            if save:
                image = compose(grid, generated, step=step, index=i)
                run.images.append((save_png_atomic(image, out_dir / f"grid-{i:02d}.png"), np.asarray(image)))
    finally:
        pipe.transformer.train(was_training)
    if save:
        described = [{"png": f"grid-{i:02d}.png", "seed": seed + i, **describe(g)} for i, g in enumerate(grids)]
        manifest = {"step": step, "grids": described}
        if metrics is not None:
            manifest["metrics"] = {"means": run.means, "per_grid": run.scores, "skipped": metrics.skipped}
        write_json(out_dir / "grids.json", manifest)
    return run
