"""Validation: fill fixed held-out grids with diffusers' VisualClozeGenerationPipeline and the live LoRA.

The pipeline is built from the trainer's own modules (the transformer carries the adapter
being trained), so no weights are copied. Each grid is saved as one PNG: the ground-truth grid
on top, the same grid with the generated cell(s) pasted in below.

The pipeline's image processor is the sampler's `GridProcessor` (diffusers' own with its bugs
fixed) with no layout sentence of its own: the grid's prompt, as the model was trained on it,
is the whole prompt (diffusers' processor would prefix a tuple-formatted layout sentence).
A documented difference from training, from the reference/diffusers inference code: sampling
uses guidance 30 (training uses `train.guidance`, 1.0) and a resolution-shifted schedule.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, FluxFillPipeline, VisualClozeGenerationPipeline
from PIL import Image

from sampler.grid_sample import GridSample
from sampler.inference import GridProcessor


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


def fill_grid(vc: VisualClozeGenerationPipeline, grid: GridSample, *, steps: int, guidance: float, seed: int,
              max_sequence_length: int, device: torch.device) -> list[Image.Image]:
    """Generate the masked cells of the query row (one image per masked cell, left to right)."""
    cells, masked = cells_of(grid)
    images = [[None if m else c for c, m in zip(row, row_mask)] for row, row_mask in zip(cells, masked)]
    out = vc(
        task_prompt=grid.prompt,
        content_prompt=None,
        image=images,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=torch.Generator(device=device).manual_seed(seed),
        max_sequence_length=max_sequence_length,
        output_type="pil",
    )
    return out.images[0]


def compose(grid: GridSample, generated: list[Image.Image]) -> Image.Image:
    """Ground truth above, the grid with generated cells pasted in below."""
    cells, masked = cells_of(grid)
    width = max(sum(c.width for c in row) for row in cells)
    height = sum(row[0].height for row in cells)
    canvas = Image.new("RGB", (width, 2 * height + 4), (255, 255, 255))
    fills = iter(generated)
    y = 0
    for row, row_mask in zip(cells, masked):
        x = 0
        for cell, m in zip(row, row_mask):
            canvas.paste(cell, (x, y))
            shown = next(fills, cell).resize(cell.size) if m else cell
            canvas.paste(shown, (x, y + height + 4))
            x += cell.width
        y += row[0].height
    return canvas


def save_png_atomic(image: Image.Image, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".png", dir=path.parent)
    os.close(fd)
    try:
        image.save(tmp, format="PNG")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def run_validation(pipe: FluxFillPipeline, grids: list[GridSample], out_dir: Path, *, resolution: int, steps: int,
                   guidance: float, seed: int, max_sequence_length: int,
                   device: torch.device) -> list[tuple[Path, np.ndarray]]:
    """Fill every validation grid; returns (PNG path, HWC uint8 array) per grid."""
    vc = visualcloze_pipeline(pipe, resolution)
    was_training = pipe.transformer.training
    pipe.transformer.eval()
    results = []
    try:
        for i, grid in enumerate(grids):
            generated = fill_grid(vc, grid, steps=steps, guidance=guidance, seed=seed + i,
                                  max_sequence_length=max_sequence_length, device=device)
            image = compose(grid, generated)
            results.append((save_png_atomic(image, out_dir / f"grid-{i:02d}.png"), np.asarray(image)))
    finally:
        pipe.transformer.train(was_training)
    return results
