"""The shard-field naming scheme has one home (`graph200k.nodes`: `field_name`, `split_field`,
`NodeType.field_name`): what annotators write, what imports are stored under, what `graph200k nodes`
lists and what packing and the sampler find are the same names, for every stored node."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from annotators.base import WithExtras, output_fields
from annotators.inputs.fields import resolve_field
from annotators.inputs.ingest import RawSample, check_sample
from graph200k.catalog import DEFAULT_NODES
from graph200k.layout import stored_instances
from graph200k.nodes import Graph200kError, field_name, split_field

STORED = [n for n in DEFAULT_NODES if n.storage is not None]
IMAGE = np.full((8, 8, 3), 128, np.uint8)


def _jpeg() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 100, 50)).save(buf, format="JPEG", quality=92)
    return buf.getvalue()


def _output(node):
    """A full annotator output for `node`: every instance (with its pair)."""
    if node.max_instances == 1:
        return IMAGE
    return [(IMAGE, IMAGE) if node.storage.pair_field else IMAGE for _ in range(node.max_instances)]


@pytest.mark.parametrize("node", STORED, ids=lambda n: n.name)
def test_written_imported_listed_and_found_names_agree(node):
    listed = node.to_json()["stored_as"]
    assert listed == node.storage.names(node.max_instances)
    for name in listed:
        assert field_name(*split_field(name)) == name
    assert set(output_fields(node, _output(node))) == set(listed)  # what an annotator writes
    for name in listed:  # an input file under our name is stored under the same name
        role = resolve_field(name)
        assert role is not None and role.out_field(DEFAULT_NODES, split_field(name)[2]) == name
    found = stored_instances(node, listed)
    assert [i.field for i in found] == [node.field_name(i) for i in range(node.max_instances)]
    assert [i.pair for i in found] == [node.field_name(i, pair=True) if node.storage.pair_field else None
                                       for i in range(node.max_instances)]


def test_an_imported_image_keeps_its_extension_and_extras_follow_the_scheme():
    style, grounded = DEFAULT_NODES.get("instant_style"), DEFAULT_NODES.get("grounded_mask")
    assert style.field_name(2, pair=True, ext="png") == "instant_style_ref.2.png"
    assert resolve_field("InstantStyle_ref.2.png").out_field(DEFAULT_NODES, "png") == "instant_style_ref.2.png"
    assert set(output_fields(grounded, WithExtras(IMAGE, {"grounded_bbox": IMAGE}))) == {
        "grounded_mask.png", "grounded_bbox.png"}
    with pytest.raises(Graph200kError, match="not stored"):
        DEFAULT_NODES.get("gaussian_blur").field_name()
    with pytest.raises(Graph200kError, match="no pair field"):
        DEFAULT_NODES.get("fill_edit").field_name(0, pair=True)
    assert split_field("json") is None and split_field("a.b.c") is None


def test_ingest_drops_a_style_instance_without_its_reference():
    photo = _jpeg()
    sample = RawSample("k", "k.jpg", [(resolve_field(n), n, photo) for n in
                                      ("jpg", "instant_style.0.jpg", "instant_style_ref.0.jpg", "instant_style.1.jpg")])
    fields, errors, _ = check_sample(sample, DEFAULT_NODES)
    assert {"instant_style.0.jpg", "instant_style_ref.0.jpg"} <= set(fields) and "instant_style.1.jpg" not in fields
    assert [(e["field"], e["reason"]) for e in errors] == [
        ("instant_style.1.jpg", "instance 1 of instant_style lacks its style reference")]
