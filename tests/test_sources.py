"""Input planning and field names: keys, collisions, folder grouping, Graph200K spellings (no Ray)."""

import json

import pytest

from annotators.inputs.fields import FieldRole, release_column_role, release_metadata_key, resolve_field
from annotators.inputs.ingest import RawSample, check_sample
from annotators.inputs.keys import KEY_PATTERN, assign_keys, sanitise_key
from annotators.inputs.sources import InputError, plan_sources
from graph200k.catalog import DEFAULT_NODES
from tests import badinputs as bi


@pytest.mark.parametrize("name,key", [
    ("photo", "photo"), ("a b", "a_b"), ("café ünïcode", "cafe_unicode"), ("holiday.2024.summer", "holiday_2024_summer"),
    ("dir/sub/x", "dir_sub_x"), ("日本", "sample"), ("--ok_", "--ok"),
])
def test_sanitised_keys_are_webdataset_safe(name, key):
    assert sanitise_key(name) == key and KEY_PATTERN.match(key)


def test_collisions_resolve_the_same_way_whatever_else_is_present():
    keys, collisions = assign_keys({"dup.jpg": "dup", "dup.png": "dup", "a b.jpg": "a b", "a_b.jpg": "a_b"})
    assert keys["dup.jpg"] == "dup" and keys["dup.png"].startswith("dup-") and len(keys["dup.png"]) == 12
    assert keys["a b.jpg"] == "a_b" and keys["a_b.jpg"].startswith("a_b-")
    assert len(set(keys.values())) == 4 and len(collisions) == 2
    more, _ = assign_keys({"dup.jpg": "dup", "dup.png": "dup", "zzz.jpg": "zzz"})
    assert more["dup.png"] == keys["dup.png"]


@pytest.mark.parametrize("field,role", [
    ("jpg", FieldRole("target")), ("target.png", FieldRole("target")), ("json", FieldRole("json")),
    ("txt", FieldRole("txt")), ("reference.jpg", FieldRole("node", "reference", 0)),
    ("ref.jpg", FieldRole("node", "reference", 0)), ("foreground.jpg", FieldRole("node", "foreground", 0)),
    ("foreground_mask.png", FieldRole("node", "foreground", 0)), ("mask.jpg", FieldRole("node", "grounded_mask", 0)),
    ("uniformer.png", FieldRole("node", "semantic_map", 0)), ("Canny.PNG", FieldRole("node", "canny", 0)),
    ("instantstyle.0.jpg", FieldRole("node", "instant_style", 0)),
    ("instantstyle_ref.0.jpg", FieldRole("node", "instant_style", 0, pair=True)),
    ("instant_style_ref.2.jpg", FieldRole("node", "instant_style", 2, pair=True)),
    ("filledit.4.jpg", FieldRole("node", "fill_edit", 4)),
    ("grounded_bbox.png", FieldRole("extra", "grounded_mask", extra="grounded_bbox")),
    ("background.jpg", None), ("blur.jpg", None), ("notes.md", None), ("depth.0.jpg", None),
])
def test_field_names_in_our_spelling_or_graph200k(field, role):
    assert resolve_field(field) == role


def test_release_columns_follow_the_catalog():
    assert release_column_role("ref") == FieldRole("node", "reference", 0)
    assert release_column_role("InstantStyle_ref_2") == FieldRole("node", "instant_style", 2, pair=True)
    assert release_column_role("FillEdit_image_3") == FieldRole("node", "fill_edit", 3)
    assert release_column_role("qwen_2_5_mask") == FieldRole("node", "grounded_mask", 0)
    assert release_column_role("ReduxStyle_image_1").node == "redux_style"
    assert release_metadata_key("FillEdit_meta") == "fill_edit"
    assert release_metadata_key("qwen_2_5_meta") == "grounding"
    assert release_metadata_key("quality_assessment") == "quality"
    assert release_column_role("unknown_column") is None


def test_folder_plan_groups_files_and_reports_strays(tmp_path):
    photo = bi.jpeg(bi.photo())
    for name in ("a.jpg", "a.depth.jpg", "a.json", "a.instantstyle.0.jpg", "a.instantstyle_ref.0.jpg",
                 "my.holiday.jpg", "b.png", "b.txt", "orphan.depth.jpg.bak", "lonely.json"):
        (tmp_path / name).write_bytes(photo)
    plan = plan_sources(tmp_path, samples_per_shard=2)
    items = {i["key"]: i for s in plan.shards for i in s.items}
    assert sorted(items) == ["a", "b", "my_holiday"]
    assert sorted(items["a"]["files"]) == ["depth.jpg", "instantstyle.0.jpg", "instantstyle_ref.0.jpg", "jpg", "json"]
    assert sorted(items["b"]["files"]) == ["png", "txt"]
    assert plan.unmatched == ["lonely.json", "orphan.depth.jpg.bak"]
    assert [len(s.items) for s in plan.shards] == [2, 1]
    again = plan_sources(tmp_path, samples_per_shard=2)
    assert [s.fingerprint for s in again.shards] == [s.fingerprint for s in plan.shards]


def test_an_annotation_without_its_photo_is_reported_not_made_a_photo(tmp_path):
    (tmp_path / "x.depth.jpg").write_bytes(bi.jpeg(bi.photo().convert("L")))
    (tmp_path / "y.reference.jpg").write_bytes(bi.jpeg(bi.photo()))
    (tmp_path / "z.jpg").write_bytes(bi.jpeg(bi.photo()))
    (tmp_path / "z.canny.png").write_bytes(bi.png(bi.photo().convert("L")))
    plan = plan_sources(tmp_path)
    assert [i["key"] for s in plan.shards for i in s.items] == ["z"]
    assert plan.unmatched == ["x.depth.jpg", "y.reference.jpg"]


def test_missing_or_empty_input_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        plan_sources(tmp_path / "nope")
    with pytest.raises(InputError, match="holds no samples"):
        plan_sources(tmp_path)


def test_a_bad_annotation_is_dropped_and_recorded_but_the_sample_kept():
    photo = bi.jpeg(bi.photo())
    sample = RawSample("k", "k.jpg", [
        (FieldRole("target"), "jpg", photo),
        (FieldRole("node", "depth", 0), "depth.jpg", bi.truncated_jpeg()),
        (FieldRole("node", "instant_style", 0), "instantstyle.0.jpg", photo),  # no style reference
        (FieldRole("node", "fill_edit", 7), "filledit.7.jpg", photo),  # beyond max_instances
        (FieldRole("json"), "json", b"{not json"),
        (None, "weird.bin", b"x"),
    ])
    fields, errors, ignored = check_sample(sample, DEFAULT_NODES)
    assert sorted(fields) == ["json", "target.jpg"]
    reasons = {e["field"]: e["reason"] for e in errors}
    assert "incomplete" in reasons["depth.jpg"]
    assert "lacks its style reference" in reasons["instant_style.0.jpg"]
    assert "max_instances=5" in reasons["filledit.7.jpg"]
    assert "not valid JSON" in reasons["json"]
    assert ignored == ["weird.bin"]
    assert all(e["source"] == "k.jpg" for e in errors), errors
    assert json.loads(fields["json"]) == {"key": "k", "source": "k.jpg"}
