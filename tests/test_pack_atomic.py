"""A re-pack is switched in whole, and readers refuse a shard folder whose index disagrees with its tars.

`python -m graph200k shards` is SIGKILLed (a real subprocess) just before or
just after each rename it makes: the folder the sampler reads must then hold
exactly the old pack or exactly the new one, never a mix."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from graph200k.packing import pack
from sampler.shards import ShardError, ShardFiles, TarIndex, resolve_shards
from tests import badinputs as bi
from tests.test_packing import build

REPO = Path(__file__).resolve().parent.parent

# Runs `python -m graph200k shards ARGS` with os.replace wrapped: every rename's target is logged, and
# the process SIGKILLs itself just before or just after rename number N.
KILL_AT_RENAME = """
import os, signal, sys
log, when, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
real, calls = os.replace, [0]
def replace(src, dst, *args, **kw):
    calls[0] += 1
    if when == "before" and calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    real(src, dst, *args, **kw)
    with open(log, "a") as f:
        f.write(os.fspath(dst) + "\\n")
    if when == "after" and calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
os.replace = replace
from graph200k.cli import main
sys.exit(main(sys.argv[4:]))
"""


def read_pack(spec) -> dict[str, dict[str, str]]:
    """What the sampler reads: every sample's fields and a hash of their bytes, by key."""
    paths = resolve_shards(spec)
    indexes = {p: TarIndex(p) for p in paths}
    files = ShardFiles(indexes)
    samples = {}
    for path, index in indexes.items():
        assert not index.error, index.error
        for entry in index.samples:
            assert entry.name not in samples, f"{entry.name} twice"
            samples[entry.name] = {f: hashlib.sha1(files.read(path, off, n)).hexdigest()
                                   for f, (off, n) in entry.fields.items()}
    files.close()
    return samples


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """10 small photos in 4 source shards, with canny maps, packed once (a few training tars)."""
    root = tmp_path_factory.mktemp("atomic")
    folder = root / "in"
    folder.mkdir()
    for i in range(10):
        (folder / f"s{i:02d}.jpg").write_bytes(bi.jpeg(bi.photo((96 + 4 * i, 64))))
        (folder / f"s{i:02d}.json").write_text(json.dumps({"caption": f"photo {i}"}))
    build(folder, root / "ds")
    pack(root / "ds", max_shard_size=30_000, progress=False)
    return root / "ds"


def _copy(dataset: Path, to: Path) -> Path:
    shutil.copytree(dataset, to, symlinks=True)
    return to


def _repack(dataset: Path, log: Path, when: str = "never", n: int = 0) -> subprocess.CompletedProcess:
    args = ["shards", "--dataset", str(dataset), "--max-shard-size", "12000", "--no-progress"]
    return subprocess.run([sys.executable, "-c", KILL_AT_RENAME, str(log), when, str(n), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120)


def _drop_canny_shard(dataset: Path, shard: str = "000001") -> None:
    for path in (dataset / "nodes" / "canny").glob(f"{shard}.*"):
        path.unlink()


def test_killed_repack_leaves_the_old_or_the_new_pack(dataset, tmp_path):
    old_ds = _copy(dataset, tmp_path / "old")
    _drop_canny_shard(old_ds)  # the re-pack changes what samples hold, and (smaller tars) which tars exist
    old = read_pack(old_ds / "shards")
    whole = _copy(old_ds, tmp_path / "whole")
    done = _repack(whole, tmp_path / "renames.log")
    assert done.returncode == 0, done.stderr
    new = read_pack(whole / "shards")
    assert new != old and len(new) == len(old) == 10
    assert len(resolve_shards(whole / "shards")) > len(resolve_shards(old_ds / "shards"))

    renames = (tmp_path / "renames.log").read_text().splitlines()
    names = [Path(r).name for r in renames]
    first_tar = next(i for i, n in enumerate(names) if n.startswith("train-")) + 1
    index, card = names.index("index.jsonl") + 1, names.index("dataset.json") + 1
    switch = renames.index(str(whole / "shards")) + 1
    points = [("after", first_tar), ("after", first_tar + 1), ("before", index), ("after", index),
              ("after", card), ("before", switch), ("after", switch)]
    seen = []
    for when, n in points:
        work = _copy(old_ds, tmp_path / f"{when}-{n}")
        killed = _repack(work, tmp_path / f"{when}-{n}.log", when, n)
        assert killed.returncode == -9, (when, n, killed.stderr)
        got = read_pack(work / "shards")
        assert got in (old, new), f"killed {when} rename {n} ({names[n - 1]}): a mix of old and new"
        seen.append("new" if got == new else "old")
        pack(work, max_shard_size=12_000, progress=False)  # the next run finishes the job and tidies up
        assert read_pack(work / "shards") == new
        assert sorted(p.name for p in work.iterdir() if p.name.startswith("shards.")) == \
            [os.readlink(work / "shards")]
    assert seen == ["old"] * 6 + ["new"]


def test_a_pack_is_a_generation_folder_behind_a_link(dataset, tmp_path):
    work = _copy(dataset, tmp_path / "ds")
    link = work / "shards"
    first = os.readlink(link)
    assert link.is_symlink() and not os.path.isabs(first)  # relative: the dataset folder can move
    card = json.loads((link / "dataset.json").read_text())
    assert first == f"shards.{card['generation']}"
    assert card["index"]["bytes"] == (link / "index.jsonl").stat().st_size
    pack(work, max_shard_size=30_000, progress=False)
    assert os.readlink(link) != first and not (work / first).exists()  # the old generation is removed
    moved = shutil.move(work, tmp_path / "moved")
    assert len(read_pack(Path(moved) / "shards")) == 10


def test_a_plain_shard_folder_from_before_generations_is_replaced(dataset, tmp_path):
    work = _copy(dataset, tmp_path / "ds")
    target = work / os.readlink(work / "shards")
    (work / "shards").unlink()
    target.rename(work / "shards")  # the layout older packs wrote: a real folder
    old = read_pack(work / "shards")
    _drop_canny_shard(work)
    pack(work, max_shard_size=12_000, progress=False)
    assert (work / "shards").is_symlink()
    assert sorted(p.name for p in work.iterdir() if p.name.startswith("shards")) == \
        ["shards", os.readlink(work / "shards")]
    assert read_pack(work / "shards") != old


def test_a_failed_repack_keeps_the_old_pack_and_removes_its_own_folder(dataset, tmp_path, monkeypatch):
    import errno

    import graph200k.packing as packing

    work = _copy(dataset, tmp_path / "ds")
    old, before = read_pack(work / "shards"), sorted(p.name for p in work.iterdir())

    def full_disk(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(packing, "write_text", full_disk)  # the tars fit, the index does not
    with pytest.raises(OSError, match="No space left"):
        pack(work, max_shard_size=12_000, progress=False)
    assert sorted(p.name for p in work.iterdir()) == before and read_pack(work / "shards") == old


def test_a_run_keeps_reading_the_generation_it_resolved(dataset, tmp_path):
    work = _copy(dataset, tmp_path / "ds")
    paths = resolve_shards(work / "shards")
    assert all(f"{os.sep}{os.readlink(work / 'shards')}{os.sep}" in p for p in paths)
    indexes = {p: TarIndex(p) for p in paths}
    pack(work, max_shard_size=30_000, progress=False)  # the old generation is deleted
    entry = indexes[paths[0]].samples[0]
    offset, size = entry.fields["json"]
    with pytest.raises(ShardError, match="was removed since it was indexed"):
        ShardFiles(indexes).read(paths[0], offset, size)


# ---------------------------------------------------------------- readers refuse a disagreeing folder

@pytest.fixture
def packed(dataset, tmp_path) -> Path:
    """A private copy of the packed folder, as a plain folder (what readers get after `realpath`)."""
    out = tmp_path / "shards"
    shutil.copytree(dataset / "shards", out)
    return out


def _refused(spec, *words):
    with pytest.raises(ShardError) as err:
        resolve_shards(spec)
    message = str(err.value)
    assert "python -m graph200k shards" in message
    for word in words:
        assert word in message, message
    return message


def test_a_missing_tar_is_refused(packed):
    (packed / "train-000001.tar").unlink()
    _refused(packed, str(packed), "train-000001.tar", "missing")


def test_an_extra_tar_is_refused(packed):
    shutil.copy(packed / "train-000000.tar", packed / "train-000007.tar")
    _refused(packed, "train-000007.tar", "not in")
    _refused(str(packed / "*.tar"), "train-000007.tar")  # a glob into an indexed folder is checked too


def test_a_tar_of_another_pack_is_refused(packed, tmp_path, dataset):
    other = pack(dataset, tmp_path / "other", max_shard_size=12_000, progress=False).out
    shutil.copy(other / "train-000000.tar", packed / "train-000000.tar")
    _refused(packed, "train-000000.tar", "bytes")
    _refused(packed / "train-000000.tar", "train-000000.tar")


def test_an_index_of_another_pack_is_refused(packed, tmp_path, dataset):
    other = pack(dataset, tmp_path / "other", max_shard_size=12_000, progress=False).out
    shutil.copy(other / "index.jsonl", packed / "index.jsonl")
    _refused(packed, "index.jsonl")
    (packed / "dataset.json").unlink()
    _refused(packed, "dataset.json")


def test_a_tar_whose_sample_count_differs_is_refused(packed):
    """Same bytes, other samples: the second sample's members renamed to the first key read as one sample."""
    tar = packed / "train-000000.tar"
    with tarfile.open(tar) as archive:
        members = archive.getmembers()
    keys = sorted({m.name.split(".", 1)[0] for m in members})
    assert len(keys) >= 2
    data = bytearray(tar.read_bytes())
    for member in members:
        key, rest = member.name.split(".", 1)
        if key == keys[1]:
            member.name = f"{keys[0]}.{rest}"
            data[member.offset:member.offset + tarfile.BLOCKSIZE] = member.tobuf(tarfile.USTAR_FORMAT)
    tar.chmod(0o644)
    tar.write_bytes(bytes(data))
    paths = resolve_shards(packed)  # the sizes agree: caught when the tar is indexed
    with pytest.raises(ShardError, match=f"{len(keys) - 1} samples.*python -m graph200k shards"):
        TarIndex(paths[0])


def test_plain_tars_without_an_index_are_not_checked(packed, tmp_path):
    loose = tmp_path / "loose"
    loose.mkdir()
    shutil.copy(packed / "train-000000.tar", loose / "a.tar")
    assert len(read_pack(loose)) >= 1 and len(read_pack(str(loose / "*.tar"))) >= 1


def test_the_trainer_reports_a_disagreeing_folder_in_one_line(packed):
    from train.config import ConfigError
    from train.data import grid_dataset

    (packed / "train-000001.tar").unlink()
    with pytest.raises(ConfigError, match=r"config key 'data.shards': .*train-000001.tar"):
        grid_dataset([str(packed)], key="data.shards", resolution=64, seed=0, tasks="train", rows=None,
                     pool_size=8, rank=0, world_size=1)
