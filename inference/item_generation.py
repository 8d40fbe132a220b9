"""Generating the evaluation items: one pipeline, its LoRA swapped per variant, each item saved whole.

Every item is filled by the generation engine (`inference.generate.generate_cells`: the
VisualCloze pipeline with the training layout, so the encoded prompt is the training
builder's at inference settings, `inference.prompts.prompt_for`) and written atomically
(`inference.item_store`). Items already on disk are not regenerated. The base model is loaded
once per process; variants differ only in the adapter (`unload_lora_weights` then
`load_loras`), so a baseline column costs no second copy of FLUX.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Mapping, Sequence

from PIL import Image

from graph200k import Group

from .generate import generate_cells
from .items import ItemRef, TaskDraw, item_dir, item_grid, render_query
from .item_store import is_done, save_item
from .prompts import prompt_for
from .settings import LoraSpec, SamplingSettings


class VariantPipeline:
    """The pipeline, loaded on first use, with the adapter of the variant asked for."""

    def __init__(self, sampling: SamplingSettings, variants: Mapping[str, LoraSpec | None]):
        self.sampling, self.variants = sampling, variants
        self.pipe = None
        self.current: str | None = None

    def use(self, variant: str):
        from .pipeline import load_loras, load_pipeline

        s = self.sampling
        if self.pipe is None:
            self.pipe = load_pipeline(s.model, [], device=s.device, dtype=s.dtype, resolution=s.resolution)
        if variant != self.current:
            self.pipe.unload_lora_weights()
            spec = self.variants[variant]
            if spec is not None:
                load_loras(self.pipe, [spec])
            self.current = variant
        return self.pipe

    def close(self) -> None:
        self.pipe = None
        self.current = None


def item_record(ref: ItemRef, draw: TaskDraw, grid, prompt, sampling: SamplingSettings,
                lora: LoraSpec | None, seconds: float, edit_reason: str | None) -> dict:
    """item.json: what the item is and how it was made (docs/ARCHITECTURE.md, "inference: evaluate")."""
    return {
        "variant": ref.variant, "lora": None if lora is None else lora.to_json(),
        "task": draw.task.id, "family": draw.task.family, "nodes": list(draw.task.nodes),
        "context": ref.context, "index": ref.index, "keys": grid.keys, "columns": grid.columns,
        "caption": grid.caption, "item": grid.item,
        "task_prompt": prompt.task_prompt, "content_prompt": prompt.content_prompt, "prompt": prompt.full,
        "seed": grid.seed, "steps": sampling.num_inference_steps, "guidance": sampling.guidance_scale,
        "resolution": sampling.resolution, "size": list(grid.ground_truth.size),
        "degradations": grid.degradations, "edit_mask_missing": edit_reason, "seconds": round(seconds, 3),
    }


def edit_mask_of(draw: TaskDraw, index: int, grid, nodes):
    """(mask, None) for an editing task whose query records its edited region, (None, why) for one that
    does not, (None, None) for other tasks."""
    from .edit_region import edit_region

    edits = [n for n in draw.task.nodes if nodes.get(n).group is Group.EDITING]
    if not edits:
        return None, None
    mask, reason = edit_region(draw.plans[index].rows[-1].sample, edits[0], grid.ground_truth.size, nodes)
    return mask, (reason or None)


def generate_items(pending: Sequence[ItemRef], draws: Mapping[str, TaskDraw], out: Path, nodes,
                   pipeline: VariantPipeline, *, progress: Callable | None = None) -> int:
    """Fill and save every item of `pending` not already on disk; returns how many were generated.

    `progress(iterable)` wraps the loop (tqdm in the CLI)."""
    s = pipeline.sampling
    todo = [r for r in pending if not is_done(item_dir(out, r))]
    rendered: dict[tuple[str, int], tuple] = {}
    count = 0
    for ref in (progress(todo) if progress else todo):
        draw = draws[ref.task]
        key = (ref.task, ref.index)
        if key not in rendered:
            rendered = {key: render_query(draw, ref.index, seed=s.seed, nodes=nodes)}  # contexts follow each other
        grid = item_grid(draw, ref.index, ref.context, *rendered[key], seed=s.seed)
        prompt = prompt_for(draw.task, len(grid.rows), grid.caption, grid.item)
        pipe = pipeline.use(ref.variant)
        start = time.perf_counter()
        generated = generate_cells(pipe, grid.model_input(), prompt.task_prompt, prompt.content_prompt,
                                   num_inference_steps=s.num_inference_steps, guidance_scale=s.guidance_scale,
                                   seed=grid.seed,
                                   max_sequence_length=s.max_sequence_length)[0]
        seconds = time.perf_counter() - start
        truth = grid.ground_truth
        if generated.size != truth.size:  # the processor rounds sizes; the metrics compare pixel by pixel
            generated = generated.resize(truth.size, Image.Resampling.LANCZOS)
        mask, reason = edit_mask_of(draw, ref.index, grid, nodes)
        record = item_record(ref, draw, grid, prompt, s, pipeline.variants[ref.variant], seconds, reason)
        save_item(item_dir(out, ref), record, grid.rows, generated, mask)
        count += 1
    return count
