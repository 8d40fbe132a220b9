"""The inference layout against diffusers' own VisualClozeProcessor (diffusers 0.42.1)."""

import pytest
import torch
from diffusers.pipelines.visualcloze.visualcloze_utils import VisualClozeProcessor
from PIL import Image

from sampler.inference import GridProcessor, inference_grid
from tests.sampler_shards import SAMPLES

PORTRAIT = "012cd3921e1f97d761eeff580f918ff9"  # 832x1216


def _img(name):
    with Image.open(SAMPLES / name) as im:
        return im.convert("RGB")


@pytest.fixture(scope="module")
def images():
    return {
        "portrait": _img(f"{PORTRAIT}.jpg"),
        "portrait_depth": _img(f"{PORTRAIT}.depth.jpg"),
        "square": _img("2c4e256fa512cb7e7f433f4c7f9101de.jpg"),
        "square_depth": _img("2c4e256fa512cb7e7f433f4c7f9101de.depth.jpg"),
        "wide_ref": _img("data-00004-of-00022-7170.instantstyle_ref.0.jpg"),  # 500x297
        "small": _img("data-00005-of-00022-4396.jpg"),  # 512x512
    }


def _diffusers(rows, resolution):
    processor = VisualClozeProcessor(resolution=resolution)
    cells, sizes, target = processor.preprocess_image(rows, vae_scale_factor=8)
    masks = processor.preprocess_mask(cells, target)
    return cells, sizes, target, masks


@pytest.mark.parametrize("resolution,portrait_cell", [(384, [464, 304]), (512, [608, 416])])
def test_single_blank_matches_diffusers_exactly(images, resolution, portrait_cell):
    i = images
    rows = [
        [i["portrait_depth"], i["portrait"]],  # portrait row: 304x464-ish cells
        [i["wide_ref"], i["square"]],  # the square photo is cover-cropped to the wide row
        [i["square_depth"], None],  # the query
    ]
    cells, sizes, target, masks = _diffusers(rows, resolution)
    ours = inference_grid(rows, resolution=resolution)
    assert ours.cell_sizes == sizes and ours.target_position == target == [0, 1]
    for r, row in enumerate(cells):
        assert torch.equal(ours.rows[r], torch.cat([c[0] for c in row], dim=-1))
        assert torch.equal(ours.masks[r], torch.cat([m[0].float() for m in masks[r]], dim=-1))
    assert ours.masks[-1].sum() == sizes[-1][1][0] * sizes[-1][1][1]
    assert ours.masks[0].sum() == 0 and ours.masks[1].sum() == 0
    # each row keeps its first image's aspect ratio: portrait, then wide, then square
    assert sizes[0][0] == portrait_cell and sizes[1][0][1] > 1.5 * sizes[1][0][0]
    assert sizes[2][0][0] == sizes[2][0][1] == resolution


def test_blank_in_the_middle_of_the_query_row(images):
    i = images
    rows = [[i["square"], i["portrait"], i["small"]], [i["small"], None, i["square_depth"]]]
    cells, sizes, target, _ = _diffusers(rows, 384)
    ours = inference_grid(rows, resolution=384)
    assert ours.target_position == target == [0, 1, 0] and ours.cell_sizes == sizes
    assert torch.equal(ours.rows[1], torch.cat([c[0] for c in cells[1]], dim=-1))


def test_several_blanks_fix_diffusers_swapped_sides(images):
    i = images
    rows = [[i["portrait"], i["portrait_depth"], i["square"]], [i["square"], None, None]]
    _, sizes, _, _ = _diffusers(rows, 384)
    ours = inference_grid(rows, resolution=384)
    width = 384  # the query row's cell width: every cell gets it
    assert all(w == width for row in ours.cell_sizes for _, w in row)
    assert ours.cell_sizes[0][0] == [576, 384]  # the 304x464 portrait row, scaled to width 384
    # diffusers passes (h, w) as (w, h): its cells come out transposed
    assert sizes[0][0] == [384, 576]
    assert ours.masks[-1].sum() == 2 * 384 * 384


def test_empty_query_row_borrows_the_row_above(images):
    i = images
    rows = [[i["portrait"], i["portrait_depth"]], [None, None]]
    with pytest.raises(TypeError):  # diffusers subscripts the missing size
        _diffusers(rows, 384)
    ours = inference_grid(rows, resolution=384)
    assert ours.cell_sizes[1] == ours.cell_sizes[0]
    assert ours.masks[1].all() and not ours.masks[0].any()


def test_layout_prompt_is_a_string(images):
    rows = [[images["square"], images["square_depth"]], [images["small"], None]]
    assert isinstance(VisualClozeProcessor(resolution=384).get_layout_prompt((2, 2)), tuple)  # the bug
    prompt = GridProcessor(resolution=384).get_layout_prompt((2, 2))
    assert prompt == VisualClozeProcessor(resolution=384).get_layout_prompt((2, 2))[0]  # diffusers' own sentence
    assert "2 rows" in prompt and "4 images" in prompt
    assert inference_grid(rows).layout_prompt == prompt
    assert GridProcessor(resolution=384, layout=False).get_layout_prompt((2, 2)) == ""  # prompt states it


def test_bad_inference_inputs_are_named(images):
    i = images
    with pytest.raises(ValueError, match="in-context row 0 has a blank"):
        inference_grid([[i["square"], None], [i["small"], None]])
    with pytest.raises(ValueError, match="no blank cell"):
        inference_grid([[i["square"], i["small"]]])
    with pytest.raises(ValueError, match="same columns"):
        inference_grid([[i["square"], i["small"]], [i["small"]]])
