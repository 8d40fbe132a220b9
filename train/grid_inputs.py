"""A `GridSample` -> the Flux-Fill transformer's inputs, built with diffusers' own helpers.

Per row (cells side by side), as VisualClozePipeline lays a grid out:
- clean latents: `FluxFillPipeline._encode_vae_image` (VAE sample, shift/scale from the VAE
  config), packed 2x2 by `_pack_latents` -> 64 channels per token;
- Fill conditioning: `FluxFillPipeline.prepare_mask_latents` on row x (1 - mask) -> the
  masked-image latents (64) and the 8x8-folded, packed mask (256);
- rows concatenated along the sequence, position ids (row + 1, y, x) from
  `VisualClozeGenerationPipeline._prepare_latent_image_ids`.
So per token: x_t (64) + masked latents (64) + mask (256) = 384 = the transformer's in_channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import FluxFillPipeline, VisualClozeGenerationPipeline

from sampler.grid_sample import GridSample


@dataclass
class GridInputs:
    """One grid, or several grids of the same layout stacked along the batch."""

    latents: torch.Tensor  # (B, L, 64) clean packed latents x0
    condition: torch.Tensor  # (B, L, 320) masked-image latents (64) + packed mask (256)
    img_ids: torch.Tensor  # (L, 3): (row + 1, y, x)
    masked_tokens: torch.Tensor  # (B, L) bool, tokens inside masked cells

    @property
    def num_tokens(self) -> int:
        return self.latents.shape[1]


def layout_of(grid: GridSample) -> tuple[tuple[int, int], ...]:
    """Grids with the same per-row pixel sizes produce identical token layouts and can be stacked."""
    return tuple((int(r.shape[-2]), int(r.shape[-1])) for r in grid.rows)


def check_grid(grid: GridSample, multiple: int) -> None:
    """Fail with the sample keys when a grid cannot be packed into 2x2 latent patches."""
    if len(grid.rows) != len(grid.masks) or not grid.rows:
        raise ValueError(f"grid {grid.keys}: {len(grid.rows)} rows but {len(grid.masks)} masks")
    for i, (row, mask) in enumerate(zip(grid.rows, grid.masks)):
        if row.ndim != 3 or row.shape[0] != 3:
            raise ValueError(f"grid {grid.keys} row {i}: expected (3, H, W), got {tuple(row.shape)}")
        if tuple(mask.shape) != (1, *row.shape[1:]):
            raise ValueError(f"grid {grid.keys} row {i}: mask {tuple(mask.shape)} "
                             f"does not match row {tuple(row.shape)}")
        if row.shape[1] % multiple or row.shape[2] % multiple:
            raise ValueError(f"grid {grid.keys} row {i}: size {tuple(row.shape[1:])} is not a multiple of {multiple}")


@torch.no_grad()
def encode_grid(pipe: FluxFillPipeline, grid: GridSample, generator: torch.Generator | None,
                device: torch.device, dtype: torch.dtype) -> GridInputs:
    """VAE-encode one grid row by row and build its Fill conditioning and position ids."""
    scale = pipe.vae_scale_factor
    check_grid(grid, 2 * scale)
    channels = pipe.vae.config.latent_channels
    vae_dtype = pipe.vae.dtype
    latents, conditions, masked = [], [], []
    images = []
    for row, mask in zip(grid.rows, grid.masks):
        image = row.unsqueeze(0).to(device=device, dtype=vae_dtype)
        row_mask = mask.unsqueeze(0).to(device=device, dtype=vae_dtype)
        images.append(image)
        height, width = image.shape[-2:]

        x0 = pipe._encode_vae_image(image, generator)
        latents.append(pipe._pack_latents(x0, 1, channels, x0.shape[2], x0.shape[3]).to(dtype))

        packed_mask, masked_latents = pipe.prepare_mask_latents(
            row_mask, image * (1 - row_mask), 1, channels, 1, height, width, dtype, device, generator
        )
        conditions.append(torch.cat([masked_latents, packed_mask], dim=-1))
        # A token lies in a masked cell when its 16x16 pixel patch is masked (cells are multiples of 16).
        masked.append(packed_mask.mean(dim=-1) > 0.5)

    img_ids = VisualClozeGenerationPipeline._prepare_latent_image_ids(images, scale, device, torch.float32)
    return GridInputs(
        latents=torch.cat(latents, dim=1),
        condition=torch.cat(conditions, dim=1),
        img_ids=img_ids,
        masked_tokens=torch.cat(masked, dim=1),
    )


def stack_inputs(items: list[GridInputs]) -> GridInputs:
    """Batch grids of one layout (identical ids); used so equal-shape grids share a forward pass."""
    first = items[0]
    for other in items[1:]:
        if not torch.equal(other.img_ids, first.img_ids):
            raise ValueError("only grids with the same layout can be stacked")
    return GridInputs(
        latents=torch.cat([i.latents for i in items]),
        condition=torch.cat([i.condition for i in items]),
        img_ids=first.img_ids,
        masked_tokens=torch.cat([i.masked_tokens for i in items]),
    )


@torch.no_grad()
def encode_prompts(pipe: FluxFillPipeline, prompts: list[str], device: torch.device, dtype: torch.dtype,
                   max_sequence_length: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """T5 sequence embeddings, CLIP pooled embeddings and zero text ids via `FluxFillPipeline.encode_prompt`."""
    prompt_embeds, pooled, text_ids = pipe.encode_prompt(
        prompt=prompts, prompt_2=None, device=device, max_sequence_length=max_sequence_length
    )
    return prompt_embeds.to(dtype), pooled.to(dtype), text_ids.to(device=device, dtype=torch.float32)
