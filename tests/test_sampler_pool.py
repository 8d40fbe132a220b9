"""The sampler's pool holds references, not bytes: what it reads, when, and what happens when a tar changes."""

import functools
import itertools
import os
import pickle
import tarfile
import tracemalloc

import pytest
import torch

from sampler import GridDataset
from sampler.pool import SampleFields, UnreadableSample, parse_sample
from sampler.shards import ShardFiles, TarIndex, resolve_shards, shard_keys
from tests.sampler_shards import sample_records, with_key, write_shards

CHEAP = dict(resolution=32, rows={1: 0.5, 2: 0.5}, tasks=["depth->target", "target->depth"])


def _tar_bytes(path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}


def _rejects(rejected: frozenset, key: str) -> bool:
    return key not in rejected


def _padded_shards(out, n: int, padding: int) -> list:
    """`n` samples, each with an extra `padding`-byte field no grid shows (a stand-in for the
    fields of a Graph200K sample that one grid does not use)."""
    base = sample_records()
    records = []
    for i in range(n):
        record = with_key(base[i % len(base)], f"pad{i:03d}")
        record["padding.bin"] = os.urandom(padding)
        records.append(record)
    return write_shards(out, records, n_shards=3)


def test_a_full_pool_holds_no_field_bytes(tmp_path):
    n, padding = 24, 1_500_000
    paths = _padded_shards(tmp_path, n, padding)
    ds = GridDataset(paths, pool_size=n, seed=0, **CHEAP)
    tracemalloc.start()
    try:
        plans = list(itertools.islice(ds.plans(), 3))  # the pool fills with all n before the first plan
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(plans) == 3
    # a pool of bytes would hold n * padding = 36 MB here
    assert peak < 8_000_000, f"pool fill and 3 plans allocated up to {peak / 1e6:.1f} MB"
    assert all(isinstance(r.sample.fields, SampleFields) for p in plans for r in p.rows)


def test_fields_read_on_demand_are_the_tar_bytes(sampler_shards):
    paths = resolve_shards(sampler_shards)
    stored = {}
    for path in paths:
        stored.update(_tar_bytes(path))
    samples = {r.sample.key: r.sample for p in itertools.islice(GridDataset(paths, seed=1).plans(), 40)
               for r in p.rows}
    assert len(samples) >= 4
    for key, sample in samples.items():
        assert sorted(sample.fields) == sorted(n.split(".", 1)[1] for n in stored if n.split(".", 1)[0] == key)
        for name, data in sample.fields.items():
            assert data == stored[f"{key}.{name}"]


def test_shard_files_keep_their_budgets(sampler_shards):
    paths = resolve_shards(sampler_shards)
    indexes = {p: TarIndex(p) for p in paths}
    files = ShardFiles(indexes, max_open=1, cache_bytes=300_000)
    for _ in range(2):  # the second round reopens evicted handles and misses evicted bytes
        for path, index in indexes.items():
            stored = _tar_bytes(path)
            for entry in index.samples:
                for name, (offset, size) in entry.fields.items():
                    assert files.read(path, offset, size) == stored[f"{entry.key}.{name}"]
                    assert len(files._handles) == 1 and files.cached_bytes <= 300_000
    files.close()


def test_a_tar_rewritten_under_the_pool_gives_unreadable_samples(tmp_path):
    records = sample_records()
    (path,) = write_shards(tmp_path, records[:4], n_shards=1)
    index = TarIndex(str(path))
    files = ShardFiles({str(path): index}, cache_bytes=0)
    entry = index.samples[0]
    sample = parse_sample(entry.name, SampleFields(entry.name, str(path), entry, files))
    before = sample.fields[sample.target]

    # rewritten with other content: another size and modification time
    write_shards(tmp_path, records[4:], n_shards=1)
    with pytest.raises(UnreadableSample, match="not the file that was indexed") as err:
        sample.fields[sample.target]
    assert err.value.key == entry.name

    # rewritten in place with the same size and modification time: the tar header is checked
    write_shards(tmp_path, records[:4], n_shards=1)
    files_again = ShardFiles({str(path): TarIndex(str(path))}, cache_bytes=0)
    fields = SampleFields(entry.name, str(path), entry, files_again)
    assert fields[sample.target] == before
    stat = os.stat(path)
    offset = entry.fields[sample.target][0]
    with open(path, "r+b") as f:
        f.seek(offset - 512)
        f.write(b"\0" * 512)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(UnreadableSample, match="no tar header"):
        fields[sample.target]


def test_grids_continue_when_a_shard_changes_mid_run(tmp_path):
    records = sample_records()
    a, b = write_shards(tmp_path, [with_key(r, f"k{i}") for i, r in enumerate(records * 2)], n_shards=2)
    keys_a = set(shard_keys([str(a)]))
    ds = GridDataset([str(a), str(b)], seed=2, pool_size=16, **CHEAP)
    grids = iter(ds)
    next(grids)
    write_shards(tmp_path, list(reversed(records)), n_shards=1)  # a's path, other content
    after = list(itertools.islice(grids, 12))
    assert len(after) == 12
    assert ds.counters["samples_unreadable"] >= 1
    assert set(ds.state_dict()["bad_keys"]) <= keys_a


def test_dataset_pickles_mid_iteration_and_the_copy_continues(sampler_shards):
    ds = GridDataset(sampler_shards, seed=4, **CHEAP)
    grids = iter(ds)
    next(grids)  # shard handles are open in this process now
    copy = pickle.loads(pickle.dumps(ds))
    x, y = next(grids), next(iter(copy))
    assert x.keys == y.keys and x.prompt == y.prompt
    assert all(torch.equal(r, s) for r, s in zip(x.rows, y.rows))

    plan = next(iter(ds.plans()))
    fields = plan.rows[0].sample.fields
    moved = pickle.loads(pickle.dumps(fields))  # no handle nor cached bytes travel
    assert not moved.files._handles and not moved.files.cached_bytes
    assert dict(moved) == dict(fields)


def test_key_filter_keeps_samples_out_and_windows_in_place(sampler_shards):
    keys = shard_keys(resolve_shards(sampler_shards))
    rejected = frozenset(keys[:2])
    kw = dict(seed=5, pool_size=2, rows={1: 1.0}, tasks=["gaussian_blur->target"], epochs=1)

    def windows(ds):
        out = {}
        for plan in ds.plans():
            out[plan.step] = (tuple(ds.state_dict()["window"]), plan.keys)
        return out

    whole = windows(GridDataset(sampler_shards, **kw))
    ds = GridDataset(sampler_shards, key_filter=functools.partial(_rejects, rejected), **kw)
    ds = pickle.loads(pickle.dumps(ds))  # as a DataLoader worker gets it
    kept = windows(ds)
    assert len(whole) == len(keys)  # every sample carries the task: one grid per step
    assert kept and all(kept[step][0] == whole[step][0] for step in kept)
    assert not {k for _, used in kept.values() for k in used} & rejected
    assert ds.counters["samples_filtered"] == len(rejected)
    assert ds.state_dict()["step"] == len(keys)
    with pytest.raises(TypeError, match="key_filter"):
        GridDataset(sampler_shards, key_filter="not a function")
