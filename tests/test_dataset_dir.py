"""The dataset folder contract (`graph200k.dataset_dir`): ingest, annotate, the runner's records and
packing put and find every file where `DatasetDir` says, and the architecture doc shows the same layout."""

from __future__ import annotations

import io
import json
from pathlib import Path

from PIL import Image

from annotators.annotate import annotate_shard
from annotators.cli import _error_files
from annotators.content_ids import ContentIds
from annotators.dataset_plan import read_record, record_plan
from annotators.inputs.ingest import write_source_shard
from annotators.inputs.sources import plan_sources
from annotators.perception.canny import CannyAnnotator
from annotators.runner import collect_errors
from graph200k.catalog import DEFAULT_NODES
from graph200k.dataset_dir import PACK_CARD, PACK_INDEX, PACK_README, SOURCE, DatasetDir, shard_name
from graph200k.packing import pack
from graph200k.provenance import stale_node_shards

REPO = Path(__file__).resolve().parents[1]


def _jpeg(seed: int) -> bytes:
    image = Image.new("RGB", (48, 32), (40 * seed % 256, 90, 160))
    image.paste((250, 250, 250), (8 + seed, 8, 30, 24))  # an edge for canny to find
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def test_the_paths_are_the_layout_the_architecture_doc_shows(tmp_path):
    folder = DatasetDir(tmp_path / "demo")
    paths = [folder.run_record, folder.plan, folder.lock, folder.hashes("000000"), folder.source_tar("000000"),
             folder.errors(SOURCE, "000000"), folder.stats(SOURCE, "000000"), folder.node_tar("<node>", "000000"),
             folder.errors("<node>", "000000"), folder.stats("<node>", "000000")]
    relative = [p.relative_to(folder.root).as_posix() for p in paths]
    assert relative == ["run.json", "plan.json", ".graph200k.lock", "source/000000.hashes.json",
                        "source/000000.tar", "source/000000.errors.jsonl", "source/000000.stats.json",
                        "nodes/<node>/000000.tar", "nodes/<node>/000000.errors.jsonl", "nodes/<node>/000000.stats.json"]
    doc = (REPO / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    block = doc.split("**Dataset folder**", 1)[1].split("```", 2)[1]
    listed = {line.split()[0] for line in block.splitlines()[2:] if line.strip()}
    assert set(relative) <= listed, set(relative) - listed
    assert f"{folder.packed.name} -> " in block
    assert all(name in block for name in (PACK_INDEX, PACK_CARD, PACK_README))
    assert shard_name(folder.node_tar("canny", "000007")) == "000007"


def test_every_stage_writes_and_reads_only_where_the_folder_says(tmp_path):
    inputs, dataset = tmp_path / "in", tmp_path / "dataset"
    inputs.mkdir()
    for i, key in enumerate(("a", "b")):
        (inputs / f"{key}.jpg").write_bytes(_jpeg(i))
        (inputs / f"{key}.json").write_text(json.dumps({"caption": f"photo {key}"}))
    (inputs / "broken.jpg").write_bytes(b"not an image")  # fails at ingest: an errors record
    plan = plan_sources(inputs, 8, DEFAULT_NODES)
    [shard] = [s.shard for s in plan.shards]
    content = ContentIds(dataset)
    content.attach(plan)
    content.save()
    record_plan(dataset, plan, 8)
    assert write_source_shard(plan.shards[0], dataset)["succeeded"] == 2
    canny = CannyAnnotator(DEFAULT_NODES)
    canny.load()
    assert annotate_shard(canny, dataset, shard)["written"] == 2

    folder = DatasetDir(dataset)
    written = {p for p in dataset.rglob("*") if p.is_file()}
    assert written == {folder.plan, folder.hashes(shard), folder.source_tar(shard), folder.stats(SOURCE, shard),
                       folder.errors(SOURCE, shard), folder.node_tar("canny", shard), folder.stats("canny", shard)}
    assert folder.source_tars() == [folder.source_tar(shard)] and folder.node_tars() == [folder.node_tar("canny", shard)]
    assert [p.name for p in folder.node_dirs()] == ["canny"]

    errors = collect_errors(dataset)
    assert [(e["stage"], e["shard"], e["key"]) for e in errors] == [(SOURCE, shard, "broken")]
    assert _error_files(dataset, errors) == [str(folder.errors(SOURCE, shard))]
    assert read_record(dataset)["shards"][0]["keys"] == ["a", "b", "broken"]
    assert stale_node_shards(dataset) == []

    result = pack(dataset, progress=False)
    assert result.out == folder.packed and not folder.lock.exists()
    assert {p.name for p in folder.packed.iterdir()} == {"train-000000.tar", PACK_INDEX, PACK_CARD, PACK_README}
    index = [json.loads(line) for line in (folder.packed / PACK_INDEX).read_text().splitlines()]
    assert [(e["key"], "canny" in e["nodes"]) for e in index] == [("a", True), ("b", True)]
