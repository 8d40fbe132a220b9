"""Grid -> Flux-Fill inputs: 384 channels per token, (row + 1, y, x) ids, Fill conditioning of row x (1 - mask)."""

import math

import pytest
import torch
from diffusers import FluxFillPipeline

from tests.train_grids import KEYS, make_grid
from train.flow import FlowSettings, sample_sigmas
from train.grid_inputs import encode_grid, layout_of, stack_inputs
from train.validation import visualcloze_pipeline

CPU = torch.device("cpu")
pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def pipe(tiny_flux_fill):
    return FluxFillPipeline.from_pretrained(tiny_flux_fill)


def test_three_row_grid_packs_to_384_channels_with_row_y_x_ids(pipe):
    grid = make_grid(KEYS, size=32)  # 3 rows of 2 cells: each row 32 x 64 px -> 2 x 4 tokens
    inputs = encode_grid(pipe, grid, torch.Generator().manual_seed(0), CPU, torch.float32)

    assert inputs.latents.shape == (1, 24, 64)
    assert inputs.condition.shape == (1, 24, 320)
    assert inputs.latents.shape[-1] + inputs.condition.shape[-1] == pipe.transformer.config.in_channels == 384

    expected = torch.tensor([[row + 1, y, x] for row in range(3) for y in range(2) for x in range(4)],
                            dtype=torch.float32)
    assert torch.equal(inputs.img_ids, expected)


def test_mask_channels_and_ids_match_visualcloze_pipeline(pipe):
    grid = make_grid(KEYS[:2], size=32, masked_column=0)
    ours = encode_grid(pipe, grid, torch.Generator().manual_seed(0), CPU, torch.float32)
    rows = [[r.unsqueeze(0)] for r in grid.rows]
    masks = [[m.unsqueeze(0)] for m in grid.masks]
    _, _, mask, ids = visualcloze_pipeline(pipe, 32)._prepare_latents(
        rows, masks, torch.Generator().manual_seed(0), pipe.vae_scale_factor, CPU, torch.float32)

    assert torch.equal(ours.condition[..., 64:], mask)
    assert torch.equal(ours.img_ids, ids)
    # Only the query row's first cell is masked: tokens x = 0..1 of the last row.
    flags = ours.masked_tokens[0].view(2, 2, 4)
    assert flags[1, :, :2].all() and not flags[1, :, 2:].any() and not flags[0].any()


def test_fill_condition_encodes_row_times_one_minus_mask(pipe):
    grid = make_grid(KEYS[:2], size=32)
    torch.manual_seed(7)
    ours = encode_grid(pipe, grid, None, CPU, torch.float32)

    torch.manual_seed(7)  # same draws, same order: clean row, then masked row, per row
    clean, masked = [], []
    for row, mask in zip(grid.rows, grid.masks):
        image, m = row.unsqueeze(0), mask.unsqueeze(0)
        for out, img in ((clean, image), (masked, image * (1 - m))):
            z = pipe._encode_vae_image(img, None)
            out.append(pipe._pack_latents(z, 1, 16, z.shape[2], z.shape[3]))
    assert torch.allclose(ours.latents, torch.cat(clean, dim=1), atol=1e-6)
    assert torch.allclose(ours.condition[..., :64], torch.cat(masked, dim=1), atol=1e-6)
    # The masked cell really is blanked: its conditioning differs from the clean latents.
    cell = ours.masked_tokens[0]
    assert (ours.condition[0, cell, :64] - ours.latents[0, cell]).abs().mean() > 1e-2


def test_grids_of_one_layout_stack_and_bad_sizes_are_named(pipe):
    a, b = make_grid(KEYS[:2]), make_grid(KEYS[1:])
    assert layout_of(a) == layout_of(b)
    gen = torch.Generator().manual_seed(0)
    stacked = stack_inputs([encode_grid(pipe, g, gen, CPU, torch.float32) for g in (a, b)])
    assert stacked.latents.shape == (2, 16, 64)

    bad = make_grid(KEYS[:2], size=40)  # 40 px is not a multiple of 16
    with pytest.raises(ValueError, match="not a multiple of 16"):
        encode_grid(pipe, bad, gen, CPU, torch.float32)


def test_resolution_shift_matches_the_reference_formula(pipe):
    """mu = 0.5 + 0.65 (L - 256) / 3840 and t' = e^mu / (e^mu + 1/t - 1), as the reference's sampler shifts."""
    L = 6912  # a 3 x 4 grid of 384 px cells
    plain = sample_sigmas(FlowSettings(), pipe.scheduler, 64, L, CPU, torch.Generator().manual_seed(0))
    shifted = sample_sigmas(FlowSettings(resolution_shift=True), pipe.scheduler, 64, L, CPU,
                            torch.Generator().manual_seed(0))
    mu = 0.5 + 0.65 * (L - 256) / 3840
    expected = math.exp(mu) / (math.exp(mu) + 1 / plain - 1)
    assert torch.allclose(shifted, expected, atol=1e-5)
    assert (shifted > plain).all() and 0 < plain.min() and plain.max() < 1


def test_lora_metadata_lists_target_modules_in_one_order():
    """peft keeps target_modules as a set, whose order follows Python's hash seed; the exported metadata
    lists them sorted, so one training writes one file (the evaluation identifies a LoRA by its sha256)."""
    from train.lora import add_lora, lora_metadata
    from train.tiny import build_tiny_pipeline

    transformer = build_tiny_pipeline().transformer
    add_lora(transformer, 4)
    modules = lora_metadata(transformer)["target_modules"]
    assert isinstance(modules, list) and modules == sorted(modules) and "to_q" in modules
