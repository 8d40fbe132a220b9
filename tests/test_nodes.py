import pytest

from graph200k import DEFAULT_NODES, DEGRADATION_NAMES, Graph200kError, Group, NodeRegistry, Production
from graph200k.catalog import CONDITIONS


def test_every_graph200k_node_type_is_declared(reference_tasks):
    """Graph200K's node types are all here (their counts: tests/test_tasks.py::test_paper_counts_are_49_129_36)."""
    assert set(reference_tasks["node_types_graph200k_spelling"]) <= {n.graph200k_name for n in DEFAULT_NODES}
    assert "salt_pepper_noise" in DEGRADATION_NAMES and DEFAULT_NODES.get("SPNoise").group is Group.DEGRADATION


def test_lookup_accepts_both_spellings():
    assert DEFAULT_NODES.get("InstantStyle").name == "instant_style"
    assert DEFAULT_NODES.get("instant_style").graph200k_name == "InstantStyle"
    assert DEFAULT_NODES.canonical("mask") == "grounded_mask"
    assert DEFAULT_NODES.canonical("uniformer") == "semantic_map"
    assert DEFAULT_NODES.canonical("SPNoise") == "salt_pepper_noise"
    assert "SRx4" in DEFAULT_NODES and "sr_x4" in DEFAULT_NODES and "nonsense" not in DEFAULT_NODES


def test_unknown_name_is_named_in_the_error():
    with pytest.raises(Graph200kError, match="'cany'"):
        DEFAULT_NODES.get("cany")


def test_every_node_has_eight_distinct_phrases_and_a_consistent_production():
    for node in DEFAULT_NODES:
        assert len(set(node.phrases)) >= 8, node.name
        if node.produced_by in (Production.SOURCE, Production.ANNOTATOR):
            assert node.storage is not None, node.name
        if node.group is Group.DEGRADATION:
            assert node.produced_by is Production.ONLINE and node.storage is None
        if node.group is Group.STYLE:
            assert node.columns == 2 and len(set(node.pair_phrases)) >= 8
    all_phrases = [p for n in DEFAULT_NODES for p in n.phrases]
    assert len(all_phrases) == len(set(all_phrases)), "a phrase is shared by two nodes"


def test_storage_names_follow_the_shard_contract():
    assert DEFAULT_NODES.get("canny").storage.names(1) == ["canny.png"]
    style = DEFAULT_NODES.get("instant_style")
    names = style.storage.names(style.max_instances)
    assert names[:2] == ["instant_style.0.jpg", "instant_style_ref.0.jpg"] and len(names) == 6
    fill = DEFAULT_NODES.get("fill_edit")
    assert fill.storage.names(fill.max_instances)[-1] == "fill_edit.4.jpg"
    assert DEFAULT_NODES.get("foreground").storage.names(1) == ["foreground_mask.png"]


def test_rotation_direction_is_declared_and_phrased_the_same_way():
    for name, degrees in (("rotate90", 90), ("rotate180", 180), ("rotate270", 270)):
        node = DEFAULT_NODES.get(name)
        assert node.details == {"rotation": "clockwise", "degrees": degrees}
    assert all("counter" not in p and "left" not in p for p in DEFAULT_NODES.get("rotate90").phrases)


def test_duplicate_declarations_are_refused_naming_both():
    with pytest.raises(Graph200kError, match=r"'hed'.*already declared by node 'hed'"):
        NodeRegistry([*DEFAULT_NODES, CONDITIONS[2]])
    from dataclasses import replace

    clash = replace(CONDITIONS[2], name="soft_edges")  # new name, Graph200K spelling already taken
    with pytest.raises(Graph200kError, match="soft_edges"):
        DEFAULT_NODES.extended(clash)


def test_bad_declarations_name_the_node():
    from dataclasses import replace

    base = CONDITIONS[2]
    with pytest.raises(Graph200kError, match="'lineart'.*phrases"):
        DEFAULT_NODES.extended(replace(base, name="lineart", graph200k_name="lineart", phrases=("a",)))
    with pytest.raises(Graph200kError, match="'LineArt'.*snake_case"):
        DEFAULT_NODES.extended(replace(base, name="LineArt", graph200k_name="LineArt"))
    with pytest.raises(Graph200kError, match="'lineart'.*unknown node 'sketch'"):
        DEFAULT_NODES.extended(replace(base, name="lineart", graph200k_name="lineart", requires=("sketch",)))


def test_topological_order_puts_requirements_first():
    order = [n.name for n in DEFAULT_NODES.topological_order()]
    assert order.index("depth") < order.index("redux_style")
    assert order.index("depth") < order.index("depth_edit")
    assert order.index("grounded_mask") < order.index("fill_edit")
    assert order[0] == "target"
