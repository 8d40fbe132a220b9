"""Nothing stale is packed or read, nothing is deleted silently, and moving the input redoes nothing (issue 14).

A node shard records the content id of the source shard it was made from and
the ids of the node shards it read; packing and every annotator that reads
other nodes refuse one whose inputs changed since. Shard ids come from the
input's bytes, never from where the files sit, and a run that would drop
samples of an existing dataset is refused unless `--overwrite`. The end-to-end
tests run on a local Ray started by `ray_session`, which also shows it listens
on the loopback interface only."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from annotators.annotate import StaleInput, annotate_shard
from annotators.base import Annotator
from annotators.perception.canny import CannyAnnotator
from annotators.cli import main as annotators_main
from annotators.cli import print_summary
from annotators.content_ids import ContentIds
from annotators.dataset_plan import PlanConflict
from annotators.inputs.ingest import write_source_shard
from annotators.registry import AnnotatorRegistry
from annotators.runner import RunConfig, ray_session, run
from annotators.inputs.sources import plan_sources
from graph200k.cli import main as graph200k_main
from graph200k.packing import pack
from graph200k.provenance import source_id
from graph200k.shardio import iter_samples, read_stats
from tests import badinputs as bi
from tests.annotator_doubles import HoughLines


class FlatDepth(Annotator):
    """A depth map that needs no model (the mean brightness everywhere): an annotator that reads no node."""

    name = "flat_depth"
    produces = ("depth",)

    def annotate(self, batch):
        return [{"depth": np.full(s.target.shape[:2], int(s.target.mean()), np.uint8)} for s in batch]


REGISTRY = AnnotatorRegistry([CannyAnnotator, FlatDepth, HoughLines])


@pytest.fixture(scope="module")
def local_ray():
    """The runner's own local Ray session, once for the module."""
    with ray_session(num_cpus=2):
        import ray

        yield ray


def _photos(folder: Path, names=("p0", "p1", "p2"), shift: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        (folder / f"{name}.jpg").write_bytes(bi.jpeg(bi.photo((96 + 8 * (i + shift), 64))))
    return folder


def _changed(path: Path) -> None:
    """Other pixels under the same name (and the same size on disk would not matter: content decides)."""
    path.write_bytes(bi.jpeg(bi.photo((128, 80)).rotate(90, expand=True)))


def _cfg(input, out, **kw) -> RunConfig:
    return RunConfig(input=Path(input), out=Path(out), progress=False, samples_per_shard=kw.pop("samples_per_shard", 2),
                     **kw)


def _stamps(folder: Path) -> dict[str, int]:
    """mtimes of every shard file (tars, stats, errors): a file that is rewritten gets a new one."""
    return {str(p.relative_to(folder)): p.stat().st_mtime_ns for p in folder.rglob("*")
            if p.is_file() and p.parent.name != "shards" and p.suffix in (".tar", ".json", ".jsonl")
            and p.name not in ("run.json", "plan.json") and not p.name.endswith(".hashes.json")}


@pytest.fixture(scope="module")
def annotated(local_ray, tmp_path_factory):
    """Three photos in two source shards with canny maps and the Hough lines drawn from them (mlsd);
    tests that change it work on a copy."""
    root = tmp_path_factory.mktemp("provenance")
    folder = _photos(root / "in")
    run(_cfg(folder, root / "ds", annotators=["canny", "hough_lines"]), REGISTRY)
    return folder, root / "ds"


def _copy(annotated, tmp_path) -> tuple[Path, Path]:
    folder, ds = annotated
    shutil.copytree(folder, tmp_path / "in")
    shutil.copytree(ds, tmp_path / "ds")
    return tmp_path / "in", tmp_path / "ds"


def test_the_local_ray_listens_on_loopback_only(local_ray):
    assert local_ray.util.get_node_ip_address() == "127.0.0.1"
    assert {n["NodeManagerAddress"] for n in local_ray.nodes()} == {"127.0.0.1"}


def test_a_changed_image_leaves_a_stale_canny_that_is_reported_refused_and_redone(annotated, tmp_path, capsys):
    folder, out = _copy(annotated, tmp_path)
    before = _stamps(out)
    _changed(folder / "p0.jpg")
    summary = run(_cfg(folder, out, annotators=["flat_depth"]), REGISTRY)
    after = _stamps(out)
    # only the changed image's source shard is redone; the other shard is untouched
    assert after["source/000000.tar"] != before["source/000000.tar"]
    assert after["source/000001.tar"] == before["source/000001.tar"]
    assert after["nodes/canny/000000.tar"] == before["nodes/canny/000000.tar"]  # not this run's annotator
    stale = {e["shard"]: e for e in summary.stale}
    assert sorted(stale) == ["canny/000000", "mlsd/000000"]  # mlsd: drawn from that canny, and that image
    assert stale["canny/000000"]["annotator"] == "canny" and "another version" in stale["canny/000000"]["why"]
    assert f"python -m annotators run --input {folder} --out {out} --annotators canny" in stale["canny/000000"]["redo"]
    assert stale["mlsd/000000"]["redo"].endswith("--annotators hough_lines")
    print_summary(summary, [])
    printed = capsys.readouterr().out
    assert "canny/000000" in printed and "--annotators canny" in printed

    # packing leaves the stale canny out and says so
    assert graph200k_main(["shards", "--dataset", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "canny/000000" in printed and "--annotators canny" in printed
    index = [json.loads(line) for line in (out / "shards" / "index.jsonl").read_text().splitlines()]
    card = json.loads((out / "shards" / "dataset.json").read_text())
    nodes = {e["key"]: set(e["nodes"]) for e in index}
    assert not {"canny", "mlsd"} & (nodes["p0"] | nodes["p1"]) and {"canny", "mlsd"} <= nodes["p2"]
    assert all("depth" in n for n in nodes.values())
    assert [s["shard"] for s in card["stale_shards"]] == ["canny/000000", "mlsd/000000"]
    assert "--annotators canny" in card["stale_shards"][0]["redo"]
    assert card["incomplete_shards"] == [] and "canny/000000" in (out / "shards" / "README.md").read_text()

    # an annotator that reads canny refuses the stale map: its own stale shard stays as it was
    summary = run(_cfg(folder, out, annotators=["hough_lines"]), REGISTRY)
    [row] = summary.annotators
    assert row.status == "failed" and "canny/000000" in row.why and "stale" in row.why
    assert _stamps(out)["nodes/mlsd/000000.tar"] == before["nodes/mlsd/000000.tar"]

    # running both redoes their stale shards only; then nothing is stale and everything packs
    summary = run(_cfg(folder, out, annotators=["canny", "hough_lines"]), REGISTRY)
    assert {r.annotator: r.status for r in summary.annotators} == {"canny": "ran", "hough_lines": "ran"}
    assert summary.stale == []
    now = _stamps(out)
    assert now["nodes/canny/000001.tar"] == before["nodes/canny/000001.tar"]
    assert now["nodes/mlsd/000001.tar"] == before["nodes/mlsd/000001.tar"]
    assert now["nodes/mlsd/000000.tar"] != before["nodes/mlsd/000000.tar"]
    result = pack(out, progress=False)
    assert result.card["stale_shards"] == []
    assert all({"canny", "depth", "mlsd"} <= set(e["nodes"]) for e in result.index)


def test_an_annotator_refuses_a_needed_node_shard_made_from_another_source(tmp_path):
    """In-process, as a Ray actor runs it: hough lines read canny, whose shard predates the source shard."""
    folder, dataset = _photos(tmp_path / "in"), tmp_path / "ds"
    [shard] = plan_sources(folder, 10).shards
    write_source_shard(shard, dataset)
    annotate_shard(CannyAnnotator(), dataset, shard.shard)
    canny = read_stats(dataset / "nodes" / "canny" / "000000.tar")
    assert canny["inputs"]["source"] == source_id(read_stats(dataset / "source" / "000000.tar"))
    annotate_shard(HoughLines(), dataset, shard.shard)
    assert read_stats(dataset / "nodes" / "mlsd" / "000000.tar")["inputs"]["canny"] == canny["id"]

    _changed(folder / "p1.jpg")
    [shard] = plan_sources(folder, 10).shards
    write_source_shard(shard, dataset)
    with pytest.raises(StaleInput, match=r"canny/000000 .*--annotators canny"):
        annotate_shard(HoughLines(), dataset, shard.shard)


def test_the_same_images_under_another_path_with_new_mtimes_annotate_nothing(annotated, tmp_path, monkeypatch):
    folder, out = _copy(annotated, tmp_path)
    before = _stamps(out)
    moved = tmp_path / "mnt" / "copy"
    shutil.copytree(folder, moved)
    later = time.time() + 3600
    for p in moved.iterdir():
        os.utime(p, (later, later))
    summary = run(_cfg(moved, out, annotators=["canny"]), REGISTRY)
    assert [r.status for r in summary.annotators] == ["up to date"]
    assert (summary.inputs, summary.succeeded) == (3, 3)
    monkeypatch.chdir(tmp_path)
    again = run(_cfg(Path("mnt/copy"), out, annotators=["canny"]), REGISTRY)  # a relative path: the same
    assert [r.status for r in again.annotators] == ["up to date"]
    assert _stamps(out) == before  # nothing re-ingested, nothing re-annotated


def test_content_ids_hash_each_file_once_per_place(tmp_path):
    folder, cache = _photos(tmp_path / "in"), tmp_path / "cache"
    plan = plan_sources(folder, 2)
    ids = ContentIds(cache)
    ids.attach(plan)
    ids.save()
    assert ids.hashed == 3
    first = [s.fingerprint for s in plan.shards]

    again, ids = plan_sources(folder, 2), ContentIds(cache)
    ids.attach(again)
    assert ids.hashed == 0 and [s.fingerprint for s in again.shards] == first  # unchanged tree: no byte read

    moved = tmp_path / "moved"
    shutil.copytree(folder, moved)
    elsewhere, ids = plan_sources(moved, 2), ContentIds(cache)
    ids.attach(elsewhere)
    ids.save()
    assert ids.hashed == 3 and [s.fingerprint for s in elsewhere.shards] == first  # hashed once, same ids

    _changed(moved / "p2.jpg")
    changed, ids = plan_sources(moved, 2), ContentIds(cache)
    ids.attach(changed)
    assert ids.hashed == 1
    assert [s.fingerprint for s in changed.shards][0] == first[0] and changed.shards[1].fingerprint != first[1]


def test_another_input_or_shard_size_is_refused_without_overwrite(annotated, tmp_path, capsys):
    folder, out = _copy(annotated, tmp_path)
    before = _stamps(out)
    other = _photos(tmp_path / "other", names=("q0", "q1", "q2"), shift=3)
    with pytest.raises(PlanConflict) as refused:
        run(_cfg(other, out, annotators=["canny"]), REGISTRY)
    message = str(refused.value)
    assert "3 of its 3 samples are not in this input" in message and "p0" in message and "--overwrite" in message
    with pytest.raises(PlanConflict, match="samples per shard: 2 in the dataset, 1 in this run"):
        run(_cfg(folder, out, annotators=["canny"], samples_per_shard=1), REGISTRY)
    assert annotators_main(["run", "--input", str(other), "--out", str(out), "--annotators", "canny",
                            "--samples-per-shard", "2", "--no-progress"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _stamps(out) == before  # nothing deleted, nothing rewritten

    # a new image loses nothing: accepted, and only the shard it joins is redone
    _photos(folder, names=("p3",), shift=5)
    summary = run(_cfg(folder, out, annotators=["canny"]), REGISTRY)
    assert summary.inputs == 4 and _stamps(out)["nodes/canny/000000.tar"] == before["nodes/canny/000000.tar"]

    replaced = run(_cfg(other, out, annotators=["canny"], overwrite=True), REGISTRY)
    assert replaced.inputs == 3
    keys = {s["__key__"] for tar in (out / "source").glob("*.tar") for s in iter_samples(tar)}
    assert keys == {"q0", "q1", "q2"}
