"""Rendered grids: tensors, masks, derived nodes, style columns, shared degradations, layout.
(What rows share beyond this, and the style instances they pick: tests/test_sampler_rows.py.)"""

import io
import itertools

import numpy as np
import torch
from PIL import Image

from graph200k import TaskGraph
from sampler import GridDataset, GridSample, RowSharing
from sampler.cells import cell_size
from tests.sampler_shards import sample_records


def _cells(grid: GridSample, row: int) -> list[np.ndarray]:
    """uint8 (H, w, 3) cells of a row."""
    array = ((grid.rows[row].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    w = array.shape[1] // grid.n_cols
    return [array[:, i * w:(i + 1) * w] for i in range(grid.n_cols)]


def _grids(shards, n, **kw):
    return list(itertools.islice(GridDataset(shards, **kw), n))


def test_grid_tensors_and_masks_follow_the_contract(sampler_shards):
    ds = GridDataset(sampler_shards, resolution=256, seed=3)
    for grid, plan in zip(itertools.islice(iter(ds), 12), itertools.islice(GridDataset(sampler_shards, resolution=256, seed=3).plans(), 12)):
        assert grid.keys == plan.keys and grid.columns == plan.columns and grid.prompt == plan.prompt
        assert grid.task == plan.task and grid.n_rows == len(plan.rows)
        for r, (row, mask, rp) in enumerate(zip(grid.rows, grid.masks, plan.rows)):
            w, h = rp.size
            assert row.dtype == torch.float32 and row.shape == (3, h, w * grid.n_cols)
            assert row.min() >= -1 and row.max() <= 1
            assert mask.shape == (1, h, w * grid.n_cols) and set(mask.unique().tolist()) <= {0.0, 1.0}
            if r < grid.n_rows - 1:
                assert mask.sum() == 0  # in-context rows are never masked
            else:
                assert mask.sum() == h * w  # exactly one query cell
                assert mask[0, :, plan.mask_column * w:(plan.mask_column + 1) * w].all()


def test_foreground_and_background_split_the_target(sampler_shards):
    fg = _grids(sampler_shards, 4, resolution=256, seed=1, tasks=["foreground->target"])
    bg = _grids(sampler_shards, 4, resolution=256, seed=1, tasks=["background->target"])
    for a, b in zip(fg, bg):
        assert a.keys == b.keys  # same seed, same choices
        for r in range(a.n_rows):
            f, target = _cells(a, r)
            g, _ = _cells(b, r)
            fg_on = f.any(axis=2)
            assert 0.05 < fg_on.mean() < 0.95  # a real subject, not all or nothing
            # every pixel is either foreground or background, never both, and sums to the target
            assert np.array_equal(f.astype(int) + g.astype(int), target.astype(int))
            assert not (fg_on & g.any(axis=2)).any()


def test_style_node_gives_reference_then_stylised_column(sampler_shards):
    grids = _grids(sampler_shards, 6, resolution=256, seed=2, tasks=["target->instant_style"])
    records = {r["__key__"]: r for r in sample_records()}
    for grid in grids:
        assert sorted(grid.columns) == ["instant_style", "instant_style_ref", "target"]
        assert grid.columns[-1] == "instant_style"
        ref_col = grid.columns.index("instant_style_ref")
        for r, key in enumerate(grid.keys):
            shown = _cells(grid, r)[ref_col].astype(float)
            ref = Image.open(io.BytesIO(records[key]["instant_style_ref.0.jpg"])).convert("RGB")
            h, w = shown.shape[:2]
            s = max(w / ref.width, h / ref.height)  # cover-resize, centre crop
            big = np.asarray(ref.resize((round(ref.width * s), round(ref.height * s)), Image.BICUBIC)).astype(float)
            top, left = (big.shape[0] - h) // 2, (big.shape[1] - w) // 2
            assert np.abs(big[top:top + h, left:left + w] - shown).mean() < 12


def test_rows_share_the_query_degradation_as_the_sharing_policy_says(sampler_shards):
    def spreads(degradation):
        """Per grid, the spread across rows of the low-light brightness factor (dark / target)."""
        out = []
        for grid in _grids(sampler_shards, 8, resolution=128, seed=9, rows={3: 1.0}, tasks=["low_light->target"],
                           sharing=RowSharing(degradation=degradation)):
            per_row = []
            for r in range(grid.n_rows):
                dark, target = (c.astype(float) for c in _cells(grid, r))
                per_row.append(dark.mean() / target.mean())
            out.append(max(per_row) - min(per_row))
        return out

    assert max(spreads("exact")) < 0.01  # one brightness factor in every row
    kind = spreads("kind")  # one severity bin (factor bins are 0.02 wide), each row its own factor
    assert max(kind) < 0.03 and any(s > 0.005 for s in kind)
    assert any(s > 0.03 for s in spreads("none"))  # severities differ too


def test_cells_keep_the_row_aspect_and_square_option(sampler_shards):
    key = "012cd3921e1f97d761eeff580f918ff9"  # an 832x1216 portrait photo
    for grid in _grids(sampler_shards, 8, resolution=384, seed=0, tasks=["target->depth"]):
        for r, k in enumerate(grid.keys):
            h, width = grid.rows[r].shape[1:]
            expected = cell_size(832, 1216, 384) if k == key else cell_size(1024, 1024, 384)
            if k.startswith("data-") or k.startswith("edit-"):
                expected = (384, 384)
            assert (width // 2, h) == expected
    for grid in _grids(sampler_shards, 4, resolution=256, seed=0, tasks=["target->depth"], square_cells=True):
        assert all(row.shape[1:] == (256, 512) for row in grid.rows)


def test_quarter_turns_use_square_cells_and_rotate_clockwise(sampler_shards):
    for grid in _grids(sampler_shards, 6, resolution=256, seed=5, tasks=["rotate90->target"]):
        for r in range(grid.n_rows):
            rotated, target = _cells(grid, r)
            assert rotated.shape[:2] == (256, 256)
            assert np.abs(rotated.astype(float) - np.rot90(target, k=-1).astype(float)).mean() < 3


def test_reverse_generation_masks_condition_cells(sampler_shards):
    masked = set()
    for grid in _grids(sampler_shards, 40, resolution=64, seed=4, tasks=[t for t in TaskGraph().tasks()
                                                                       if t.family == "dense prediction"]):
        mask = grid.masks[-1][0]
        w = mask.shape[1] // grid.n_cols
        masked.update(c for c in range(grid.n_cols) if mask[:, c * w:(c + 1) * w].any())
    assert masked == {0, 1}
