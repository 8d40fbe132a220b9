from graph200k import DEFAULT_NODES, DEGRADATION_NAMES, Group
from graph200k.layout import nodes_present, stored_instances


def test_a_photo_alone_serves_its_degradations():
    present = nodes_present(["target.jpg", "json"])
    assert present == {"target", *DEGRADATION_NAMES}


def test_stored_derived_and_paired_nodes():
    fields = ["target.jpg", "json", "canny.png", "foreground_mask.png", "reference.jpg",
              "instant_style.0.jpg", "instant_style_ref.0.jpg", "instant_style.1.jpg",
              "fill_edit.0.jpg", "fill_edit.3.jpg"]
    present = nodes_present(fields)
    assert {"canny", "foreground", "background", "reference", "instant_style", "fill_edit"} <= present
    assert "redux_style" not in present and "depth" not in present
    style = stored_instances(DEFAULT_NODES.get("instant_style"), fields)
    assert [(i.index, i.field, i.pair) for i in style] == [(0, "instant_style.0.jpg", "instant_style_ref.0.jpg")]
    assert [i.index for i in stored_instances(DEFAULT_NODES.get("fill_edit"), fields)] == [0, 3]


def test_no_target_no_derived_nodes():
    present = nodes_present(["foreground_mask.png", "canny.png"])
    assert present == {"canny"}
    assert not any(DEFAULT_NODES.get(n).group is Group.DEGRADATION for n in present)
