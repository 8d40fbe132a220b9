"""Statistics of the sampler's choices over a few thousand grids from the real-sample shards.

These run on grid plans (`GridDataset.plans()`): the same choices as the rendered
grids, without pixel work; tests/test_sampler_grid.py checks that rendering
follows the plans.
"""

import itertools
import json
import re
from collections import Counter

import pytest

from graph200k import DEFAULT_NODES, TaskGraph
from sampler import GridDataset
from sampler.instruction import CONTENT_TEMPLATES, DIFFUSERS_CONTENT_PREFIX, PAIR_SUFFIX, diffusers_layout
from tests.sampler_shards import sample_records, with_key, write_shards

N = 3000


@pytest.fixture(scope="module")
def plans(sampler_shards_x3):
    ds = GridDataset(sampler_shards_x3, resolution=384, seed=7)
    return list(itertools.islice(ds.plans(), N)), ds


def test_row_counts_follow_0_3_0_4_0_3(plans):
    plans, ds = plans
    assert ds.counters["rows_reduced"] == 0  # three copies: every task has three partners
    freq = Counter(len(p.rows) for p in plans)
    for rows, p in {1: 0.3, 2: 0.4, 3: 0.3}.items():
        assert abs(freq[rows] / N - p) < 0.04, (rows, freq)


def test_families_drawn_by_weight(plans):
    plans, _ = plans
    freq = Counter(p.task.family for p in plans)
    families = TaskGraph().family_names()
    assert set(freq) == set(families)  # the bundled samples serve all 12 families
    for family in families:
        assert abs(freq[family] / N - 1 / 12) < 0.025, (family, freq[family])


def test_target_masked_with_probability_half_plus_half_over_n(plans):
    plans, _ = plans
    by_cols = {}
    for p in plans:
        by_cols.setdefault(len(p.columns), []).append(p.mask_column == len(p.columns) - 1)
    assert set(by_cols) == {2, 3, 4}
    for n, hits in by_cols.items():
        assert len(hits) > 200
        assert abs(sum(hits) / len(hits) - (0.5 + 0.5 / n)) < 0.06, (n, sum(hits) / len(hits))
    other = Counter(p.mask_column for p in plans if len(p.columns) == 4 and p.mask_column != 3)
    assert set(other) == {0, 1, 2}  # reverse generation reaches every condition column


def test_cells_are_multiples_of_16_with_area_near_resolution_squared(plans):
    plans, _ = plans
    shapes = set()
    for p in plans:
        for row in p.rows:
            w, h = row.size
            assert w % 16 == 0 and h % 16 == 0
            assert abs(w * h / 384**2 - 1) <= 0.10, (w, h)
            shapes.add((w, h))
    assert (320, 464) in shapes  # the 832x1216 portrait sample keeps its aspect (0.69 vs 0.68)
    assert any(w > h for w, h in shapes) and (384, 384) in shapes


def test_rows_are_distinct_samples_carrying_the_task(plans):
    plans, _ = plans
    for p in plans:
        assert len(set(p.keys)) == len(p.keys)
        for row in p.rows:
            assert set(p.task.nodes) <= row.sample.nodes
            assert [c.column for c in row.cells] == p.columns


def test_columns_shuffled_with_one_permutation_target_last(plans):
    plans, _ = plans
    orders = Counter()
    for p in plans:
        natural = [c for n in p.task.nodes for c in ((n + PAIR_SUFFIX, n) if DEFAULT_NODES.get(n).columns == 2 else (n,))]
        assert p.columns[-1] == natural[-1]
        assert sorted(p.columns) == sorted(natural)
        if len(natural) == 3:
            orders[p.columns == natural] += 1
    assert 0.35 < orders[True] / sum(orders.values()) < 0.65  # 2 conditions: kept in order half the time


def test_prompt_parts_and_tags(plans):
    plans, _ = plans
    dropped = sum(p.prompt == "" for p in plans)
    assert abs(dropped / N - 0.1) < 0.03
    kept = [p for p in plans if p.prompt]
    with_task = [p for p in kept if "[IMAGE1]" in p.prompt]
    assert abs(len(with_task) / len(kept) - 0.8) < 0.04
    for p in with_task:
        chain = re.findall(r"\[IMAGE(\d+)\] (.*?)(?=, \[IMAGE|\s->\s|\.$|\. [A-Z]|$)", p.prompt)
        assert [int(i) for i, _ in chain] == list(range(1, len(p.columns) + 1)), p.prompt
        for (_, phrase), column in zip(chain, p.columns):
            node = DEFAULT_NODES.get(column[: -len(PAIR_SUFFIX)] if column.endswith(PAIR_SUFFIX) else column)
            allowed = node.pair_phrases if column.endswith(PAIR_SUFFIX) else node.phrases
            assert any(phrase.startswith(a) for a in allowed), (column, phrase)
    diffusers_form = []
    for p in kept:
        r, c = len(p.rows), len(p.columns)
        if p.prompt.startswith((diffusers_layout(r, c, "tuple"), diffusers_layout(r, c, "sentence"))):
            diffusers_form.append(p)  # diffusers' own wording, "1 rows" included
            continue
        row_count = f"{r} row" if r == 1 else f"{r} rows"
        assert any(f"{x}" in p.prompt for x in (f"{row_count} ", f"{row_count},", f"{row_count};", f"{r}x",
                                                 f"{r}-row", f"{r} by")), p.prompt
        assert not re.search(r"\b1 (rows|columns)\b", p.prompt), p.prompt
    assert abs(len(diffusers_form) / len(kept) - 0.3) < 0.04
    prefixes = tuple(t.split("{caption}")[0] for t in CONTENT_TEMPLATES) + (DIFFUSERS_CONTENT_PREFIX,)
    content = [p for p in kept if any(x in p.prompt for x in prefixes)]
    assert content and all(p.task.target == "target" and p.rows[-1].sample.caption for p in content)
    eligible = [p for p in kept if p.task.target == "target" and p.rows[-1].sample.caption]
    assert abs(len(content) / len(eligible) - 0.8) < 0.05


def test_unservable_families_are_skipped_and_weights_renormalise(tmp_path):
    # Only the samples without a subject reference: every reference family is unservable,
    # and so is image editing (the only edit sample has a reference).
    records = [r for r in sample_records() if "reference.jpg" not in r and "fill_edit.0.jpg" not in r]
    records = [with_key(r, f"{r['__key__']}-c{c}") for c in range(3) for r in records]
    shards = write_shards(tmp_path, records, n_shards=2)
    weights = {"restoration": 3.0, "dense prediction": 2.0}
    ds = GridDataset(shards, seed=3, family_weights=weights, pool_size=50)
    plans = list(itertools.islice(ds.plans(), 2000))
    servable = {"conditional generation": 1, "conditional generation with style": 1, "style transfer": 1,
                "dense prediction": 2, "restoration": 3}
    freq = Counter(p.task.family for p in plans)
    assert set(freq) == set(servable)
    total = sum(servable.values())
    for family, w in servable.items():
        assert abs(freq[family] / len(plans) - w / total) < 0.035, (family, freq[family])
    skipped = {k.split("/", 1)[1] for k in ds.counters if k.startswith("family_unservable/")}
    assert "image generation with reference" in skipped and "image editing" in skipped
    assert not skipped & set(servable)
    # the style family only offers structural conditions these samples carry
    assert all("canny" not in p.task.nodes for p in plans)


def test_reference_quality_rule(tmp_path):
    records = sample_records()
    low = [with_key(r, r["__key__"] + "-lowq", quality={"objectConsistency": 2})
           for r in records if "reference.jpg" in r]
    shards = write_shards(tmp_path, records + low, n_shards=2)
    ds = GridDataset(shards, seed=1, tasks=[t for t in TaskGraph().tasks() if "reference" in t.nodes
                                             or t.family == "restoration"])
    seen_low = Counter()
    for p in itertools.islice(ds.plans(), 600):
        for key in p.keys:
            if key.endswith("-lowq"):
                seen_low[p.task.family] += 1
                assert "reference" not in p.task.nodes
    assert seen_low["restoration"] > 0  # the low-quality samples are still used, without their reference
    meta = json.loads(low[0]["json"])
    assert meta["quality"]["objectConsistency"] == 2


def test_fewer_partners_than_rows_gives_fewer_rows(sampler_shards):
    ds = GridDataset(sampler_shards, seed=0, tasks=["fill_edit->target"], rows={3: 1.0})
    plans = list(itertools.islice(ds.plans(), 20))
    assert all(len(p.rows) == 1 for p in plans)  # one sample carries fill_edit
    assert ds.counters["rows_reduced"] == 20
