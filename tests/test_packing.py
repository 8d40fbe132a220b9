"""`python -m graph200k shards`: training shards, index and card from an annotated dataset folder.

The dataset folder is built in-process (the same functions the Ray workers
call), so these tests need no Ray."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest

from annotators.annotate import annotate_shard
from annotators.perception.canny import CannyAnnotator
from annotators.inputs.ingest import write_source_shard
from annotators.inputs.sources import plan_sources
from graph200k import TaskGraph
from graph200k.cli import main as graph200k_main
from graph200k.nodes import Graph200kError
from graph200k.packing import pack, parse_size
from graph200k.quality import reference_usable
from graph200k.shardio import stats_path
from tests import badinputs as bi

SAMPLES = Path(__file__).resolve().parent.parent / "samples"


def build(input_dir: Path, dataset: Path, per_shard: int = 3) -> list[str]:
    plan = plan_sources(input_dir, per_shard)
    canny = CannyAnnotator()
    for shard in plan.shards:
        write_source_shard(shard, dataset)
        annotate_shard(canny, dataset, shard.shard)
    return [s.shard for s in plan.shards]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    dataset = tmp_path_factory.mktemp("packing") / "demo"
    build(SAMPLES, dataset)
    return dataset


def _members(tar: Path) -> list[str]:
    with tarfile.open(tar) as t:
        return [m.name for m in t.getmembers()]


def test_demo_packs_into_shards_index_and_card(demo):
    result = pack(demo, progress=False)
    out = demo / "shards"
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "dataset.json", "index.jsonl", "train-000000.tar"]
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert len(index) == 8 and result.card["samples"] == 8
    by_key = {e["key"]: e for e in index}
    fox = by_key["78dc6506367d7aa43fe42a898abbfe4a"]
    assert {"canny", "depth", "openpose", "foreground", "background", "instant_style"} <= set(fox["nodes"])
    assert fox["caption"].startswith("Ethereal") and fox["sizes"]["target.jpg"] == [1024, 1024]
    assert fox["sizes"]["canny.png"] == [1024, 1024]
    assert "fill_edit" in by_key["edit-data-00004-of-00022-3633"]["nodes"]
    assert "grounded_mask" in by_key["0fdaecdb7906a1bf0d6e202363f15de3"]["nodes"]
    assert all("canny" in e["nodes"] for e in index)

    card = json.loads((out / "dataset.json").read_text())
    assert card["node_counts"]["canny"] == 8 and card["node_counts"]["reference"] == 4
    assert card["node_counts"]["openpose"] == 1 and card["node_counts"]["mlsd"] == 0
    assert [t["id"] for t in card["tasks"]] == [t.id for t in TaskGraph().tasks()]
    for task in card["tasks"]:  # each count is what the index says
        assert task["samples"] == sum(1 for e in index if set(task["nodes"]) <= set(e["nodes"])), task["id"]
    tasks = {t["id"]: t["samples"] for t in card["tasks"]}
    assert tasks["canny->target"] == 8 and tasks["reference->target"] == 4
    assert card["annotators"]["canny"]["annotator"] == "canny"
    readme = (out / "README.md").read_text()
    assert "| canny | 8 |" in readme and "canny->target | 8 |" in readme

    members = _members(out / "train-000000.tar")
    keys = [m.split(".", 1)[0] for m in members]
    assert [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k] == sorted(by_key)  # contiguous
    assert f"{fox['key']}.canny.png" in members and f"{fox['key']}.depth.jpg" in members


def test_shard_size_limit_splits_between_samples(demo, tmp_path):
    assert graph200k_main(["shards", "--dataset", str(demo), "--out", str(tmp_path / "s"),
                           "--max-shard-size", "2MB", "--no-progress"]) == 0
    tars = sorted((tmp_path / "s").glob("train-*.tar"))
    assert len(tars) >= 3
    seen: list[str] = []
    for tar in tars:
        keys = [m.split(".", 1)[0] for m in _members(tar)]
        groups = [k for i, k in enumerate(keys) if i == 0 or keys[i - 1] != k]
        assert len(groups) == len(set(groups))  # each sample's fields are together
        seen += groups
        assert tar.stat().st_size <= 2_000_000 or len(groups) == 1
    assert sorted(seen) == sorted(set(seen)) and len(seen) == 8
    # packing again with a bigger limit removes the now-unused shards
    pack(demo, tmp_path / "s", parse_size("1GB"), progress=False)
    assert [p.name for p in sorted((tmp_path / "s").glob("train-*.tar"))] == ["train-000000.tar"]


SCORES = {"good": 4, "poor": 2, "unrated": None, "three": 3, "half": 2.5, "word": "high", "text": "4"}
USABLE = {"good", "unrated", "three", "text"}  # a rating that is not a number is not trusted


@pytest.mark.parametrize("key,score", SCORES.items())
def test_reference_quality_rule(key, score):
    meta = {"caption": key} if score is None else {"caption": key, "quality": {"objectConsistency": score}}
    assert reference_usable(meta) is (key in USABLE)


def test_reference_quality_rule_odd_records():
    assert reference_usable({}) and reference_usable({"quality": None}) and reference_usable([1])
    assert not reference_usable({"quality": {"objectConsistency": float("nan")}})
    assert not reference_usable({"quality": {"objectConsistency": True}})


def test_low_or_unreadable_object_consistency_reference_does_not_count(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    for key, score in SCORES.items():
        (folder / f"{key}.jpg").write_bytes(bi.jpeg(bi.photo()))
        (folder / f"{key}.reference.jpg").write_bytes(bi.jpeg(bi.photo()))
        meta = {"caption": key} if score is None else {"caption": key, "quality": {"objectConsistency": score}}
        (folder / f"{key}.json").write_text(json.dumps(meta))
    build(folder, tmp_path / "ds")
    result = pack(tmp_path / "ds", progress=False)  # a non-numeric score used to crash packing
    nodes = {e["key"]: e["nodes"] for e in result.index}
    assert {k for k, n in nodes.items() if "reference" in n} == USABLE
    assert result.card["node_counts"]["reference"] == len(USABLE)
    members = _members(tmp_path / "ds" / "shards" / "train-000000.tar")
    assert all(f"{key}.reference.jpg" in members for key in SCORES)  # kept in the tar, only not counted


def test_incomplete_node_shards_are_left_out_and_listed(demo, tmp_path):
    import shutil

    dataset = tmp_path / "ds"
    shutil.copytree(demo, dataset, ignore=shutil.ignore_patterns("shards"))
    stats_path(dataset / "nodes" / "canny" / "000001.tar").unlink()  # as if killed before the marker
    result = pack(dataset, progress=False)
    assert result.card["node_counts"]["canny"] == 5
    assert result.card["incomplete_shards"] == ["canny/000001"]
    assert "canny/000001" in (dataset / "shards" / "README.md").read_text()


def test_packing_an_unannotated_folder_says_what_to_run(tmp_path):
    with pytest.raises(Graph200kError, match="python -m annotators run"):
        pack(tmp_path, progress=False)
    assert graph200k_main(["shards", "--dataset", str(tmp_path)]) == 2


@pytest.mark.parametrize("text,size", [("1GB", 10**9), ("500MB", 5 * 10**8), ("64KiB", 65536), ("1e9", 10**9), (7, 7)])
def test_sizes(text, size):
    assert parse_size(text) == size


def test_bad_size_is_rejected():
    with pytest.raises(Graph200kError, match="cannot read size"):
        parse_size("lots")


def test_webdataset_reads_our_shards_exactly(demo, tmp_path):
    """Our stdlib tar writer/reader and webdataset agree on every sample and byte."""
    import webdataset as wds

    from graph200k.shardio import atomic_tar, iter_samples

    pack(demo, tmp_path / "s", progress=False)
    tar = tmp_path / "s" / "train-000000.tar"
    ours = list(iter_samples(tar))
    theirs = [{k: v for k, v in s.items() if not k.startswith("__") or k == "__key__"}
              for s in wds.WebDataset(str(tar), shardshuffle=False, empty_check=False)]
    assert ours == theirs and len(ours) == 8
    with atomic_tar(tmp_path / "w.tar") as writer:
        writer.write({"__key__": "dir/k", "canny.png": b"x", "json": "{}"})
    with pytest.raises(ValueError, match="hold no dot"):
        with atomic_tar(tmp_path / "bad.tar") as writer:
            writer.write({"__key__": "a.b", "jpg": b"x"})
    assert not (tmp_path / "bad.tar").exists()
    [sample] = wds.WebDataset(str(tmp_path / "w.tar"), shardshuffle=False, empty_check=False)
    assert (sample["__key__"], sample["canny.png"], sample["json"]) == ("dir/k", b"x", b"{}")
