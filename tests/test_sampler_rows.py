"""What the rows of a grid share with the query row (`sampler.RowSharing`).

An in-context row must show the query's task without its answer: under the
default policy an example row's degradation has the query's kind (severity,
sub-method) but its own pixels, so its changed pixels overlap the query's no
more than two independent masks would; style rows pick their own instance.
"""

import itertools

import numpy as np
import pytest

from sampler import GridDataset, GridSample, RowSharing
from sampler.degradations import degrade
from sampler.sharing import KIND_KEYS
from tests.sampler_shards import sample_records, write_shards

pytestmark = pytest.mark.usefixtures("one_torch_thread")  # tensor composing is 10x slower on a busy 2-core box

# Nodes whose residual is spatial randomness (dots, holes, streaks, noise fields) the model could copy.
SPATIAL = ("salt_pepper_noise", "inpainting", "rain", "gaussian_noise")
CHANGED = 32  # levels: a pixel is "changed" when a channel moved further than this (JPEG-safe, noise-tail)
GRIDS = 20


def _cells(grid: GridSample, row: int) -> dict[str, np.ndarray]:
    """uint8 (H, w, 3) cells of a row by column name; exact, since rows are uint8 / 127.5 - 1."""
    array = ((grid.rows[row].permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)
    w = array.shape[1] // grid.n_cols
    return {column: array[:, i * w:(i + 1) * w] for i, column in enumerate(grid.columns)}


def _changed(grid: GridSample, row: int, node: str) -> np.ndarray:
    """Pixels the degradation changed: the degraded cell against the row's own clean target cell
    (the renderer degrades exactly that cell, so no re-decoding is needed)."""
    cells = _cells(grid, row)
    return np.abs(cells[node].astype(int) - cells["target"].astype(int)).max(axis=2) > CHANGED


def _centre(mask: np.ndarray) -> np.ndarray:
    """The central half of each side. Inpainting lines are chords between uniform endpoints and
    cross the centre more often than the border, so over the whole cell even independent line
    masks overlap ~1.27x the uniform expectation; on the centre their density is nearly flat."""
    h, w = mask.shape
    return mask[h // 4:3 * h // 4, w // 4:3 * w // 4]


def _overlap_ratios(grids: list[GridSample], node: str) -> list[float]:
    """Per example row: IoU(its changed mask, the query's) / the IoU two independent masks of the
    same densities would have, p1 p2 / (p1 + p2 - p1 p2). Rows whose cells differ in size from the
    query's cannot be compared pixel by pixel and are left out."""
    ratios = []
    for grid in grids:
        query = _changed(grid, grid.n_rows - 1, node)
        for r in range(grid.n_rows - 1):
            example = _changed(grid, r, node)
            if example.shape != query.shape:
                continue
            a, b = _centre(example), _centre(query)
            p1, p2 = a.mean(), b.mean()
            if p1 == 0 or p2 == 0:
                continue
            iou = (a & b).sum() / (a | b).sum()
            ratios.append(iou / (p1 * p2 / (p1 + p2 - p1 * p2)))
    return ratios


def _grids(shards, node: str, sharing: RowSharing, n: int = GRIDS, seed: int = 0) -> list[GridSample]:
    ds = GridDataset(shards, resolution=256, seed=seed, rows={3: 1.0}, tasks=[f"{node}->target"], sharing=sharing)
    return list(itertools.islice(ds, n))


def _kind(params: dict) -> tuple:
    return tuple(params.get(key) for key in KIND_KEYS)


@pytest.mark.parametrize("node", SPATIAL)
def test_example_rows_show_the_query_kind_without_its_residual(sampler_shards, node):
    grids = _grids(sampler_shards, node, RowSharing())
    ratios = _overlap_ratios(grids, node)
    assert len(ratios) >= 15, f"only {len(ratios)} comparable row pairs"
    assert abs(np.mean(ratios) - 1.0) < 0.3, f"{node}: example rows overlap the query {np.mean(ratios):.2f}x chance"
    seeds_differ = 0
    for grid in grids:
        query = grid.degradations[-1][node]
        for params in grid.degradations[:-1]:
            assert _kind(params[node]) == _kind(query)  # same severity (and method) in every row
            seeds_differ += params[node].get("seed") != query.get("seed")
    assert seeds_differ == 2 * len(grids)


def test_exact_replay_hands_the_query_residual_to_the_examples(sampler_shards):
    # the policy the test above guards against: it must be able to fail
    exact = RowSharing(degradation="exact")
    means = {node: np.mean(_overlap_ratios(_grids(sampler_shards, node, exact, n=10), node)) for node in SPATIAL}
    assert means["salt_pepper_noise"] > 10, means
    assert all(m > 1.5 for m in means.values()), means


@pytest.mark.parametrize("node", ["blur", "compression", "darken"])
def test_kind_keeps_the_query_method_and_severity(sampler_shards, node):
    grids = _grids(sampler_shards, node, RowSharing(), n=12)
    for grid in grids:
        query = grid.degradations[-1][node]
        assert all(_kind(p[node]) == _kind(query) for p in grid.degradations)
    assert len({_kind(g.degradations[-1][node]) for g in grids}) > 1  # the query still draws its kind


def test_none_lets_every_row_draw_its_own_severity(sampler_shards):
    grids = _grids(sampler_shards, "blur", RowSharing(degradation="none"), n=12)
    severities = [{p["blur"]["severity"] for p in g.degradations} for g in grids]
    methods = [{p["blur"]["method"] for p in g.degradations} for g in grids]
    assert any(len(s) > 1 for s in severities)
    assert any(len(m) > 1 for m in methods)


@pytest.mark.parametrize("degradation", ["kind", "none", "exact"])
def test_row_params_replay_each_row_and_seed_fixes_the_grids(sampler_shards, degradation):
    sharing = RowSharing(degradation=degradation)
    grids = _grids(sampler_shards, "rain", sharing, n=4, seed=5)
    again = _grids(sampler_shards, "rain", sharing, n=4, seed=5)
    for grid, twin in zip(grids, again):
        assert grid.degradations == twin.degradations
        assert all(a.equal(b) for a, b in zip(grid.rows, twin.rows))
        for r, params in enumerate(grid.degradations):
            cells = _cells(grid, r)
            replayed, _ = degrade(cells["target"], "rain", None, params=params["rain"])
            assert np.array_equal(replayed, cells["rain"])  # the params are the ones this row used


def test_rows_without_online_node_record_no_degradation(sampler_shards):
    for grid in _grids(sampler_shards, "depth", RowSharing(), n=3):
        assert grid.degradations == [{}] * grid.n_rows


def _style_shards(tmp_path):
    """Every styled sample with a second style instance whose reference is one common image."""
    styled = [r for r in sample_records() if "instant_style.0.jpg" in r]
    common = styled[0]["instant_style_ref.0.jpg"]
    records = [dict(r, **{"instant_style.1.jpg": r["instant_style.0.jpg"], "instant_style_ref.1.jpg": common})
               for r in styled]
    return write_shards(tmp_path, records, n_shards=1), common


def _style_refs(shards, style: str) -> list[list[bytes]]:
    """Per grid, the bytes of the style reference each row shows (query last)."""
    ds = GridDataset(shards, seed=0, rows={3: 1.0}, tasks=["target->instant_style"], sharing=RowSharing(style=style))
    return [[row.sample.fields[next(c.field for c in row.cells if c.column == "instant_style_ref")]
             for row in plan.rows] for plan in itertools.islice(ds.plans(), 200)]


def test_style_rows_draw_their_own_instance_unless_told_to_prefer_the_query(tmp_path):
    shards, common = _style_shards(tmp_path)
    preferred = [refs for refs in _style_refs(shards, "prefer_same") if refs[-1] == common]
    assert len(preferred) > 50
    assert all(set(refs) == {common} for refs in preferred)  # every example shows the query's reference

    independent = [refs for refs in _style_refs(shards, "independent") if refs[-1] == common]
    assert len(independent) > 50
    examples = [ref == common for refs in independent for ref in refs[:-1]]
    # one of two instances per sample (both common for one sample): about 0.55 common, not 1
    assert 0.3 < np.mean(examples) < 0.8


def test_sharing_names_its_wrong_values(sampler_shards):
    with pytest.raises(ValueError, match="degradation='same'"):
        RowSharing(degradation="same")
    with pytest.raises(ValueError, match="style='shared'"):
        RowSharing(style="shared")
    with pytest.raises(TypeError, match="RowSharing"):
        GridDataset(sampler_shards, sharing=True)
