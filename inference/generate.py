"""Fill the blank cells of in-context grids and write them out: the engine of `python -m inference generate`.

`generate_cells` is one pipeline call on one grid (what the evaluation reuses);
`upsample_cells` is diffusers' optional second stage (`VisualClozePipeline`'s
`upsampling_*` arguments: an SDEdit pass of FLUX.1-Fill over each generated cell, prompted
with the content); `generate` checks every grid before loading the model, then writes per
grid the generated cell(s) at the query's size, a labelled picture of the filled grid and,
for the run, `generate.json`. Grid i is sampled with `seed + i`, from a CPU generator, so a
seed means the same noise on every device.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import torch
from PIL import Image

from graph200k import default_task_graph
from graph200k.shardio import write_json

from .inputs import GridInputs, load_grid
from .picture import grid_picture
from .pipeline import load_pipeline, upsampling_pipeline
from .settings import GenerateSettings
from .spec import GridSpec

MANIFEST = "generate.json"
MULTIPLE = 16  # FLUX.1-Fill sizes are multiples of 2 x the VAE's 8x scale factor


def generate_cells(pipe, rows: list[list[Image.Image | None]], task_prompt: str, content_prompt: str | None, *,
                   num_inference_steps: int, guidance_scale: float, seed: int,
                   max_sequence_length: int = 512) -> list[Image.Image]:
    """The query row's blank cells (None in `rows[-1]`), left to right, at their grid cell size."""
    output = pipe(
        task_prompt=task_prompt,
        content_prompt=content_prompt,
        image=rows,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        generator=torch.Generator("cpu").manual_seed(seed),
        max_sequence_length=max_sequence_length,
        output_type="pil",
    )
    return list(output.images[0])


def _multiple(n: int) -> int:
    return max(round(n / MULTIPLE), 1) * MULTIPLE


def upsample_cells(pipe, cells: list[Image.Image], content_prompt: str | None, *, size: tuple[int, int],
                   strength: float, num_inference_steps: int, guidance_scale: float, seed: int,
                   max_sequence_length: int = 512) -> list[Image.Image]:
    """Diffusers' upsampling stage on `cells`: each resized to `size` (w, h, rounded to multiples of 16)
    and re-noised by `strength`, prompted with the content alone, as `VisualClozePipeline` does."""
    width, height = (_multiple(s) for s in size)
    upsampler = upsampling_pipeline(pipe)
    output = upsampler(
        prompt=[content_prompt or ""] * len(cells),
        image=cells,
        mask_image=[Image.new("RGB", cell.size, (255, 255, 255)) for cell in cells],
        height=height,
        width=width,
        strength=strength,
        num_inference_steps=num_inference_steps,
        guidance_scale=guidance_scale,
        generator=torch.Generator("cpu").manual_seed(seed),
        max_sequence_length=max_sequence_length,
        output_type="pil",
    )
    pipe.maybe_free_model_hooks()  # the upsampler shares the modules but not the offload bookkeeping
    return list(output.images)


def _file_stem(column: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in column.lower())


def generate_grid(pipe, grid: GridInputs, settings: GenerateSettings, seed: int) -> list[Image.Image]:
    """The generated cells of `grid` at the size they are written at (the query's, or the upsampling size)."""
    cells = generate_cells(pipe, grid.images, grid.prompt.task_prompt, grid.prompt.content_prompt,
                           num_inference_steps=settings.num_inference_steps, guidance_scale=settings.guidance_scale,
                           seed=seed,
                           max_sequence_length=settings.max_sequence_length)
    size = grid.output_size
    up = settings.upsampling
    if up is not None:
        size = up.size or size
        cells = upsample_cells(pipe, cells, grid.prompt.content_prompt, size=size, strength=up.strength,
                               num_inference_steps=settings.num_inference_steps,
                               guidance_scale=settings.guidance_scale, seed=seed,
                               max_sequence_length=settings.max_sequence_length)
    return [cell.resize(size, Image.Resampling.LANCZOS) if cell.size != size else cell for cell in cells]


def generate(specs: list[GridSpec], settings: GenerateSettings, out_dir: str | Path, *, log=print) -> dict:
    """Check and read every grid, load the pipeline once, fill each grid and write its files into `out_dir`:
    `NN-<column>.png` per generated cell, `NN-grid.png`, and `generate.json` (returned)."""
    graph = default_task_graph()
    grids = [load_grid(spec, graph) for spec in specs]  # every input error before minutes of model loading
    pipe = load_pipeline(settings.model, list(settings.loras), device=settings.device, dtype=settings.dtype,
                         offload=settings.offload, resolution=settings.resolution)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = {
        **settings.record(), "offload": settings.offload, "max_sequence_length": settings.max_sequence_length,
        "loras": [lora.to_json() for lora in settings.loras],
        "upsampling": asdict(settings.upsampling) if settings.upsampling else None,
        "device": str(pipe._execution_device),
        "dtype": str(pipe.transformer.dtype).removeprefix("torch."),
        "grids": [],
    }
    for i, grid in enumerate(grids):
        seed = settings.seed + i
        cells = generate_grid(pipe, grid, settings, seed)
        outputs = []
        for column, cell in zip(grid.blank_columns, cells):
            path = out_dir / f"{i:02d}-{_file_stem(grid.columns[column])}.png"
            cell.save(path)
            outputs.append(path.name)
        title = (f"{grid.task_id or 'task given as text'} | seed {seed} | {settings.num_inference_steps} steps, "
                 f"guidance {settings.guidance_scale:g}")
        picture = grid_picture(grid.images, cells, columns=grid.columns, prompt=grid.prompt.full,
                               resolution=settings.resolution, title=title)
        picture_path = out_dir / f"{i:02d}-grid.png"
        picture.save(picture_path)
        manifest["grids"].append({
            "source": specs[i].source, "task": grid.task_id, "columns": grid.columns, "inputs": grid.files,
            "task_prompt": grid.prompt.task_prompt, "content_prompt": grid.prompt.content_prompt,
            "prompt": grid.prompt.full, "seed": seed, "size": list(cells[0].size), "outputs": outputs,
            "picture": picture_path.name,
        })
        write_json(out_dir / MANIFEST, manifest)  # after every grid: a stopped run still says what it wrote
        log(f"grid {i}: wrote {', '.join(str(out_dir / name) for name in outputs)} and {picture_path}")
    return manifest
