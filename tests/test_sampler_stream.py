"""Determinism, resume, rank/worker splitting and damaged data in the sampler's stream."""

import itertools
import json
import tarfile

import pytest
import torch
from torch.utils.data import DataLoader

from sampler import GridDataset, collate_grids
from sampler.shards import ShardError, resolve_shards, shard_keys
from tests.sampler_shards import sample_records, with_key, write_shards

NO_DEGRADATION = "dense prediction"


def _sig(plan):
    return (plan.task.id, tuple(plan.keys), tuple(plan.columns), plan.mask_column, plan.prompt,
            tuple(r.size for r in plan.rows))


def _pixel_free_tasks():
    from graph200k import TaskGraph
    return [t for t in TaskGraph().tasks() if t.family != "restoration" and "restoration" not in t.family]


def test_same_seed_same_stream_other_seed_other_stream(sampler_shards):
    a = [_sig(p) for p in itertools.islice(GridDataset(sampler_shards, seed=5).plans(), 300)]
    b = [_sig(p) for p in itertools.islice(GridDataset(sampler_shards, seed=5).plans(), 300)]
    c = [_sig(p) for p in itertools.islice(GridDataset(sampler_shards, seed=6).plans(), 300)]
    assert a == b
    assert sum(x != y for x, y in zip(a, c)) > 250


def test_same_seed_same_pixels(sampler_shards):
    kw = dict(seed=2, resolution=128, tasks=_pixel_free_tasks())
    a = list(itertools.islice(GridDataset(sampler_shards, **kw), 6))
    b = list(itertools.islice(GridDataset(sampler_shards, **kw), 6))
    for x, y in zip(a, b):
        assert x.prompt == y.prompt and x.keys == y.keys
        assert all(torch.equal(r, s) for r, s in zip(x.rows, y.rows))
        assert all(torch.equal(r, s) for r, s in zip(x.masks, y.masks))


@pytest.mark.parametrize("pool_size,stop", [(3, 17), (1000, 13), (1000, 8)])  # 8 samples: 8 = an epoch's end
def test_resume_continues_exactly(sampler_shards, pool_size, stop):
    # pool of 3 over 8 samples: the window slides and epochs turn over inside the run
    kw = dict(seed=11, pool_size=pool_size)
    whole = [_sig(p) for p in itertools.islice(GridDataset(sampler_shards, **kw).plans(), stop + 40)]
    first = GridDataset(sampler_shards, **kw)
    it = first.plans()
    head = [_sig(p) for p in itertools.islice(it, stop)]
    state = json.loads(json.dumps(first.state_dict()))  # a checkpoint is plain JSON
    second = GridDataset(sampler_shards, **kw)
    second.load_state_dict(state)
    tail = [_sig(p) for p in itertools.islice(second.plans(), 40)]
    assert head + tail == whole
    assert state["epoch"] * 8 + state["epoch_step"] == stop  # an epoch has one grid per sample (8)
    assert second.state_dict()["step"] == stop + 40


def test_resume_rendered_grids_equal_uninterrupted(sampler_shards):
    kw = dict(seed=4, resolution=128, pool_size=4, tasks=_pixel_free_tasks())
    whole = list(itertools.islice(GridDataset(sampler_shards, **kw), 9))
    first = GridDataset(sampler_shards, **kw)
    head = list(itertools.islice(iter(first), 5))
    second = GridDataset(sampler_shards, **kw)
    second.load_state_dict(first.state_dict())
    tail = list(itertools.islice(iter(second), 4))
    for x, y in zip(whole, head + tail):
        assert x.keys == y.keys and x.prompt == y.prompt
        assert all(torch.equal(r, s) for r, s in zip(x.rows, y.rows))


def test_state_from_another_split_is_refused(sampler_shards):
    ds = GridDataset(sampler_shards, rank=0, world_size=2)
    list(itertools.islice(ds.plans(), 3))
    other = GridDataset(sampler_shards, rank=1, world_size=2)
    other.load_state_dict(ds.state_dict())
    with pytest.raises(ValueError, match="worker 0 of 2"):
        next(other.plans())


@pytest.mark.parametrize("world", [2, 5])  # 3 shards: shard-level split, then sample-level split
def test_ranks_split_an_epoch_without_duplicates(sampler_shards, world):
    keys = sorted(shard_keys(resolve_shards(sampler_shards)))
    seen = []
    for rank in range(world):
        # a pool of one and single-row grids: each grid shows the stream's next sample
        ds = GridDataset(sampler_shards, rank=rank, world_size=world, pool_size=1, rows={1: 1.0},
                         epochs=1, tasks=["target->depth", "gaussian_blur->target"])
        try:
            seen.extend(k for p in ds.plans() for k in p.keys)
        except ShardError as err:  # more workers than this rank has samples for
            assert "no samples" in str(err)
    assert sorted(seen) == keys


def test_dataloader_workers_split_without_duplicates(sampler_shards):
    # every sample carries a restoration task; one-sample pool: each grid shows the next sample
    ds = GridDataset(sampler_shards, resolution=64, pool_size=1, rows={1: 1.0}, epochs=1,
                     tasks=["gaussian_blur->target"])
    loader = DataLoader(ds, batch_size=None, num_workers=2)
    keys = [k for grid in loader for k in grid.keys]
    assert sorted(keys) == sorted(shard_keys(resolve_shards(sampler_shards)))


def test_collate_keeps_grids_of_different_shapes(sampler_shards):
    ds = GridDataset(sampler_shards, resolution=64, seed=1, tasks=_pixel_free_tasks())
    batch = next(iter(DataLoader(ds, batch_size=4, collate_fn=collate_grids)))
    assert len(batch) == 4 and all(g.rows[-1].shape[0] == 3 for g in batch)


def test_damaged_samples_are_skipped_and_counted(tmp_path):
    records = sample_records()
    no_json = {k: v for k, v in with_key(records[1], "nojson").items() if k != "json"}
    bad_target = with_key(records[0], "badtarget")
    bad_target["target.jpg"] = b"\xff\xd8\xff\xe0 this is not a jpeg"
    bad_depth = with_key(records[0], "baddepth")  # found only when its depth map is decoded
    bad_depth["depth.jpg"] = bad_depth["depth.jpg"][:2000]
    bad_json = with_key(records[2], "badjson")
    bad_json["json"] = b"{not json"
    paths = write_shards(tmp_path / "s", records + [no_json, bad_target, bad_json, bad_depth], n_shards=2)
    # and a truncated shard: its last sample is cut off mid-file
    cut = tmp_path / "s" / "train-00002.tar"
    write_shards(tmp_path / "c", [with_key(records[3], "whole"), with_key(records[4], "cut")], 1)
    data = (tmp_path / "c" / "train-00000.tar").read_bytes()
    with tarfile.open(tmp_path / "c" / "train-00000.tar") as tar:
        last = tar.getmembers()[-1]
    cut.write_bytes(data[: last.offset_data + last.size // 2])
    ds = GridDataset([*paths, str(cut)], resolution=64, seed=0, tasks=["target->depth"], epochs=3)
    grids = list(ds)
    used = {k for g in grids for k in g.keys}
    assert grids and not used & {"nojson", "badjson", "badtarget", "cut", "baddepth"}
    assert "whole" in used
    assert ds.counters["samples_skipped"] == 3  # no/bad json, bad target (read once, kept as skipped)
    assert ds.counters["shards_damaged"] == 1
    assert ds.counters["samples_unreadable"] == 1  # the broken depth map, found once, then avoided
    assert "baddepth" in ds.state_dict()["bad_keys"]


def test_unservable_selection_fails_clearly(sampler_shards):
    with pytest.raises(ShardError, match=r"serve the selected tasks \(canny->target\): no sample carries canny"):
        GridDataset(sampler_shards, tasks=["canny->target"])  # no sample carries a canny map: known at once
    ds = GridDataset(sampler_shards, tasks=["target->depth"], key_filter=lambda key: False)
    with pytest.raises(ShardError, match=r"no grid could be built.*target->depth.*key filter"):
        next(iter(ds.plans()))  # servable, but every sample is filtered out: found when drawing


def test_bad_shard_specs_name_the_problem(tmp_path):
    with pytest.raises(ShardError, match="holds no"):
        GridDataset(tmp_path)
    with pytest.raises(ShardError, match="does not exist"):
        GridDataset(str(tmp_path / "x-{0..1}.tar"))
    with pytest.raises(ShardError, match="matches no file"):
        GridDataset(str(tmp_path / "*.tar"))


def test_brace_and_glob_specs(sampler_shards):
    brace = resolve_shards(str(sampler_shards / "train-{00000..00002}.tar"))
    assert brace == resolve_shards(str(sampler_shards / "*.tar")) == resolve_shards(sampler_shards)
    assert len(brace) == 3


@pytest.mark.parametrize("stop", [5, 9])  # 8 samples over 2 workers: 9 crosses each worker's epoch
def test_resume_with_dataloader_workers_continues_exactly(sampler_shards, stop):
    """Two DataLoader workers (torchdata's StatefulDataLoader, as the trainer's `data.num_workers`
    uses): each worker's GridDataset state is checkpointed and the resumed stream yields exactly the
    grids of an uninterrupted one."""
    from train.data import GridStream

    kw = dict(seed=3, resolution=32, pool_size=4, tasks=_pixel_free_tasks())
    whole = GridStream(GridDataset(sampler_shards, **kw), num_workers=2).take(stop + 6)
    first = GridStream(GridDataset(sampler_shards, **kw), num_workers=2)
    head = first.take(stop)
    state = first.state_dict()
    worker_states = [w["dataset_state"] for w in state["_snapshot"]["_worker_snapshots"].values()]
    assert sorted((s["global_worker"], s["global_workers"]) for s in worker_states) == [(0, 2), (1, 2)]
    assert sum(s["step"] for s in worker_states) == stop  # every grid handed out is counted once
    second = GridStream(GridDataset(sampler_shards, **kw), num_workers=2)
    second.load_state_dict(state)
    tail = second.take(6)
    assert len(head + tail) == len(whole)
    for x, y in zip(whole, head + tail):
        assert x.keys == y.keys and x.prompt == y.prompt
        assert all(torch.equal(r, s) for r, s in zip(x.rows, y.rows))
        assert all(torch.equal(r, s) for r, s in zip(x.masks, y.masks))


@pytest.mark.parametrize("score,usable", [(4, True), (3, True), ("4", True), (None, True), (2, False),
                                          (2.5, False), ("high", False)])
def test_pool_applies_packings_reference_rule(score, usable):
    """The sampler and `graph200k shards` share one rule (graph200k.quality): same verdict, no crash."""
    from graph200k.quality import reference_usable
    from sampler.pool import parse_sample

    record = next(r for r in sample_records() if "reference.jpg" in r)
    meta = {"caption": "x"} if score is None else {"caption": "x", "quality": {"objectConsistency": score}}
    sample = parse_sample("k", {**record, "json": json.dumps(meta).encode()})
    assert ("reference" in sample.nodes) is usable is reference_usable(meta)


def test_empty_shards_say_they_hold_no_samples(tmp_path):
    paths = write_shards(tmp_path / "empty", [], n_shards=2)
    with pytest.raises(ShardError, match="hold no samples") as err:
        GridDataset(paths)
    assert "fewer workers" not in str(err.value)


def test_a_worker_without_samples_is_told_to_use_fewer_workers(tmp_path):
    paths = write_shards(tmp_path / "s", sample_records()[:1], n_shards=2)  # the second tar is empty
    messages = []
    for rank in range(2):
        try:
            next(iter(GridDataset(paths, rank=rank, world_size=2, tasks=_pixel_free_tasks()).plans()))
        except ShardError as err:
            messages.append(str(err))
    [message] = [m for m in messages if "got no samples" in m]
    assert "2 shards, 1 samples in total" in message and "fewer workers" in message
