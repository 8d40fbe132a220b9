"""The inference grid: in-context rows plus a query row with blanks, laid out as diffusers does.

`GridProcessor` is diffusers' `VisualClozeProcessor` (diffusers 0.42.1) with
its known bugs fixed, so it can replace `pipe.image_processor` in
`VisualClozePipeline` / `VisualClozeGenerationPipeline`. For inputs that do not
hit a bug, cell sizes, crops (LANCZOS cover-resize and centre-crop) and masks
are diffusers' own, computed by the inherited code. Differences, all deliberate:

1. Several blanks in the query row: diffusers rescales every image to the
   query row's width but passes (h, w) where `_resize_and_crop` takes (w, h)
   (`visualcloze_utils.py:112`), so every cell comes out transposed. Here the
   cells get that width and their own aspect ratio, as intended.
2. A query row with no image at all: diffusers subscripts the row's missing
   size (`None[0]`, `:105`) and fails with a TypeError. Here blank cells take
   the size of the nearest row above that has an image.
3. The layout prompt: diffusers returns a 1-tuple, so the encoded prompt reads
   "('A grid layout ...',) ..." (`:184-186`). Here it is diffusers' sentence as a
   plain string (`sampler.instruction.diffusers_layout(..., "sentence")`); the
   sampler trains on both forms, so either pipeline's prompts are in distribution.
4. A blank cell in an in-context row is an error here (diffusers pastes a
   black cell the mask does not cover, showing the model a broken example).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers.pipelines.visualcloze.visualcloze_utils import VisualClozeProcessor
from PIL import Image

from .instruction import diffusers_layout

FLUX_VAE_SCALE = 8  # what VisualClozePipeline passes as vae_scale_factor


class GridProcessor(VisualClozeProcessor):
    """`VisualClozeProcessor` with the multi-target resize, empty query row and
    tuple layout prompt fixed (see the module docstring).

    `layout=False` adds no layout sentence: for prompts that already state the
    layout, as the grids' own prompts do (`GridSample.prompt`, validation).
    `layout_form` is how the sentence is written: "sentence" (the plain string) or
    "tuple" (diffusers 0.42's tuple repr, what `build_instruction(config=None)` and a stock
    diffusers call encode); training sees both."""

    def __init__(self, *args, resolution: int = 384, layout: bool = True, layout_form: str = "sentence", **kwargs):
        super().__init__(*args, resolution=resolution, **kwargs)
        diffusers_layout(1, 1, layout_form)  # validates the form
        self.layout, self.layout_form = layout, layout_form

    def _row_size(self, row: list[Image.Image | None], divisible: int) -> tuple[int, int] | None:
        for image in row:  # the first image fixes the row's cell size, as in diffusers
            if image is not None:
                aspect_ratio = image.width / image.height
                new_h = int((self.resolution * self.resolution / aspect_ratio) ** 0.5)
                new_w = int(new_h * aspect_ratio)
                return max(new_w // divisible, 1) * divisible, max(new_h // divisible, 1) * divisible
        return None

    def preprocess_image(self, input_images, vae_scale_factor):
        n_rows = len(input_images)
        if n_rows == 0 or not input_images[0]:
            raise ValueError("the inference grid needs at least one row with at least one cell")
        n_cols = len(input_images[0])
        for i, row in enumerate(input_images):
            if len(row) != n_cols:
                raise ValueError(f"row {i} has {len(row)} cells, row 0 has {n_cols}: every row needs the same columns")
            if i < n_rows - 1 and any(image is None for image in row):
                raise ValueError(f"in-context row {i} has a blank cell; only the query (last) row may have blanks")
        if all(image is not None for image in input_images[-1]):
            raise ValueError("the query (last) row has no blank cell: nothing to generate")
        divisible = 2 * vae_scale_factor
        sizes = [self._row_size(row, divisible) for row in input_images]
        for i in range(n_rows):  # fix 2: a query row without images borrows the row above's size
            if sizes[i] is None:
                sizes[i] = next((s for s in reversed(sizes[:i]) if s is not None),
                                (self.resolution // divisible * divisible,) * 2)
        target_position = [int(image is None) for image in input_images[-1]]
        processed = [[self._resize_and_crop(image, *sizes[i]) if image is not None
                      else Image.new("RGB", sizes[i], (0, 0, 0)) for image in row]
                     for i, row in enumerate(input_images)]
        if sum(target_position) > 1:  # fix 1: one width for every cell, each keeping its aspect
            new_w = sizes[-1][0]
            for row in processed:
                for j, image in enumerate(row):
                    new_h = max(int(image.height * new_w / image.width) // 16, 1) * 16
                    row[j] = self._resize_and_crop(image, new_w, new_h)
        image_sizes = [[[image.height, image.width] for image in row] for row in processed]
        tensors = [[self.normalize(self.numpy_to_pt(self.pil_to_numpy(image))) for image in row] for row in processed]
        return tensors, image_sizes, target_position

    def get_layout_prompt(self, size: tuple[int, int]) -> str:  # fix 3: diffusers' sentence, as a string by default
        return diffusers_layout(size[0], size[1], self.layout_form) if self.layout else ""


@dataclass
class InferenceGrid:
    """An inference grid in the training layout: per row (3, H, W) in [-1, 1] and
    (1, H, W) masks (1 on the blanks of the query row), plus diffusers' bookkeeping."""

    rows: list[torch.Tensor]
    masks: list[torch.Tensor]
    cell_sizes: list[list[list[int]]]  # per row, per cell [h, w]
    target_position: list[int]  # per query-row cell, 1 = blank to generate
    layout_prompt: str


def inference_grid(images: list[list[Image.Image | None]], resolution: int = 384) -> InferenceGrid:
    """Lay out in-context rows and a query row with `None` blanks for inference."""
    processor = GridProcessor(resolution=resolution)
    cells, sizes, target_position = processor.preprocess_image(images, vae_scale_factor=FLUX_VAE_SCALE)
    masks = processor.preprocess_mask(cells, target_position)
    rows = [torch.cat([c[0] for c in row], dim=-1) for row in cells]
    # diffusers' masks are one full-row-height block per cell; concatenate them like the images
    row_masks = [torch.cat([m[0].float() for m in row], dim=-1) for row in masks]
    return InferenceGrid(rows=rows, masks=row_masks, cell_sizes=sizes, target_position=target_position,
                         layout_prompt=processor.get_layout_prompt((len(images), len(images[0]))))
