"""The dataset card's provenance section: who made each node of a pack, under which licence."""

from __future__ import annotations

import json

import pytest

from annotators.annotate import annotate_shard
from annotators.perception.canny import CannyAnnotator
from annotators.perception.depth import DepthAnnotator
from annotators.generative.fill_edit import FillEditAnnotator
from annotators.inputs.ingest import write_source_shard
from annotators.inputs.sources import plan_sources
from graph200k import TaskGraph
from graph200k.catalog import DEFAULT_NODES
from graph200k.licences import GRAPH200K_CREDIT, NOT_RECORDED, licence_restriction
from graph200k.packing import dataset_card, pack, render_card
from tests.conftest import REPO

SAMPLES = REPO / "samples"

GRAPH = TaskGraph(DEFAULT_NODES)


def _made_by(cls) -> dict:
    """What packing keeps of a node shard's stats, for an annotator class."""
    return {"annotator": cls.name, "version": cls.version, "model_id": cls.model_id, "revision": cls.revision,
            "license": cls.license}


def _card(annotators: dict, inputs: list[dict], nodes=("target", "depth", "fill_edit", "canny", "blur")) -> dict:
    return dataset_card([{"nodes": list(nodes)}], [], DEFAULT_NODES, GRAPH, annotators=annotators, inputs=inputs)


def test_non_commercial_models_make_the_summary_and_name_their_nodes():
    card = _card({"depth": _made_by(DepthAnnotator), "fill_edit": _made_by(FillEditAnnotator),
                  "canny": _made_by(CannyAnnotator)}, [{"input": "release", "kind": "arrow"}])
    rows = {r["node"]: r for r in card["provenance"]}
    assert rows["depth"]["licence"] == "CC-BY-NC-4.0"
    assert DepthAnnotator.model_id in rows["depth"]["made_by"]
    assert "FLUX.1 [dev] Non-Commercial" in rows["fill_edit"]["licence"]
    assert rows["canny"]["restriction"] is None and "no model weights" in rows["canny"]["licence"]
    assert rows["target"]["licence"] == GRAPH200K_CREDIT  # Arrow input: the Graph200K release schema
    assert rows["blur"]["made_by"] == "computed at sampling time from target"
    summary = card["licence_summary"]
    assert summary.startswith("Most restrictive: non-commercial") and "CC-BY-NC-4.0" in summary
    assert "depth" in summary and "fill_edit" in summary and "canny" not in summary
    text = render_card(card)
    assert "## Provenance and licences" in text and summary in text


def test_nodes_absent_from_the_pack_are_not_listed():
    card = _card({}, [], nodes=("target",))
    assert [r["node"] for r in card["provenance"]] == ["target"]


def test_old_stats_without_a_licence_say_so_and_count_as_unknown():
    old = {k: v for k, v in _made_by(DepthAnnotator).items() if k != "license"} | {"license": None}
    card = _card({"depth": old}, [], nodes=("target", "depth"))
    depth = next(r for r in card["provenance"] if r["node"] == "depth")
    assert depth["licence"] == NOT_RECORDED
    assert card["licence_summary"].startswith("Most restrictive: unknown")


@pytest.mark.parametrize("licence, restriction", [
    ("CC-BY-NC-4.0", "non-commercial"),
    ("FLUX.1 [dev] Non-Commercial License, gated + Apache-2.0", "non-commercial"),
    ("CreativeML Open RAIL++-M + openrail++ + Apache-2.0", "use restrictions (RAIL)"),
    ("other (see the lllyasviel/Annotators card)", "unknown or custom"),
    ("Apache-2.0", None),
    ("MIT", None),
])
def test_licence_restriction(licence, restriction):
    assert licence_restriction(licence) == restriction


def test_a_packed_dataset_credits_its_input_and_its_annotators(tmp_path):
    dataset = tmp_path / "demo"
    plan = plan_sources(SAMPLES, 8)
    for shard in plan.shards:
        write_source_shard(shard, dataset)
        stats = annotate_shard(CannyAnnotator(), dataset, shard.shard)
        assert stats["license"] == ""  # recorded by the runner: canny has no model weights
    card = json.loads((pack(dataset, progress=False).out / "dataset.json").read_text())
    rows = {r["node"]: r for r in card["provenance"]}
    assert rows["canny"]["made_by"].startswith("annotator `canny`")
    assert rows["target"]["made_by"] == "imported from the input: folder"
    assert rows["depth"]["made_by"] == rows["target"]["made_by"]  # the samples' own depth maps, imported
    assert "Provenance and licences" in (dataset / "shards" / "README.md").read_text()
