"""One reference-quality rule (`graph200k.quality`): the threshold is declared once, the catalog and the
card state the text derived from it, and packing and the sampler apply it through one function."""

from __future__ import annotations

import json

import pytest

from graph200k.catalog import DEFAULT_NODES
from graph200k.layout import usable_nodes
from graph200k.nodes import Group, NodeType, Production
from graph200k.packing import dataset_card, render_card
from graph200k.quality import MIN_OBJECT_CONSISTENCY, REFERENCE_RULE, reference_usable
from graph200k.tasks import TaskGraph
from sampler.pool import parse_sample
from tests.sampler_shards import sample_records

# A node derived from the reference: it must vanish with an untrusted reference, in the index and the pool.
REFERENCE_EDGES = NodeType(
    name="reference_edges", graph200k_name="reference_edges", group=Group.CONDITION,
    produced_by=Production.DERIVED, producer="reference_edges", requires=("reference",),
    phrases=tuple(f"edges of the subject reference, view {i}" for i in range(8)))
NODES = DEFAULT_NODES.extended(REFERENCE_EDGES)


def test_the_catalog_and_the_card_state_the_rule_that_is_applied():
    assert DEFAULT_NODES.get("reference").details["quality_rule"] == REFERENCE_RULE
    assert f">= {MIN_OBJECT_CONSISTENCY}" in REFERENCE_RULE and "absent" in REFERENCE_RULE
    card = dataset_card([], [], DEFAULT_NODES, TaskGraph(DEFAULT_NODES))
    assert card["reference_rule"] == REFERENCE_RULE and f"Rule: {REFERENCE_RULE}." in render_card(card)
    # what the text says: absent counts, a number at the threshold counts, below it or not a number does not
    below = MIN_OBJECT_CONSISTENCY - 1
    assert reference_usable({}) and reference_usable({"quality": {"objectConsistency": MIN_OBJECT_CONSISTENCY}})
    assert not reference_usable({"quality": {"objectConsistency": below}})
    assert not reference_usable({"quality": {"objectConsistency": "high"}})


@pytest.mark.parametrize("score", [None, MIN_OBJECT_CONSISTENCY, MIN_OBJECT_CONSISTENCY - 1, "high"])
def test_packing_and_the_sampler_drop_the_same_nodes(score):
    record = next(r for r in sample_records() if "reference.jpg" in r)
    meta = {"caption": "x"} if score is None else {"caption": "x", "quality": {"objectConsistency": score}}
    fields = {**record, "json": json.dumps(meta).encode()}
    fields.pop("__key__", None)
    packed = usable_nodes(sorted(fields), meta, NODES)  # what packing's index records
    pooled = parse_sample("k", fields, NODES).nodes
    assert packed == set(pooled)
    shown = reference_usable(meta)
    assert ("reference" in packed) is shown and ("reference_edges" in packed) is shown
