from collections import Counter, defaultdict
from dataclasses import replace

import pytest

from graph200k import DEFAULT_FAMILIES, DEFAULT_NODES, FamilyRule, Graph200kError, Group, NodeRegistry, TaskGraph, slot
from graph200k.catalog import CONDITIONS
from graph200k.tasks import TEST_TASKS


def _by_family(entries):
    out = defaultdict(set)
    for family, nodes in entries:
        out[family].add(tuple(nodes))
    return dict(out)


def _paper_graph(reference_tasks) -> TaskGraph:
    """The task graph over Graph200K's own node types (the reference's spellings), whatever else is declared."""
    spellings = set(reference_tasks["node_types_graph200k_spelling"])
    return TaskGraph(nodes=NodeRegistry(n for n in DEFAULT_NODES if n.graph200k_name in spellings))


def test_paper_counts_are_49_129_36(reference_tasks):
    """The one test that pins the paper's numbers; every other test derives its counts from the catalog."""
    paper = _paper_graph(reference_tasks)
    assert len(paper.nodes) == 49 and paper.graph.number_of_nodes() == 49
    assert Counter(n.group for n in paper.nodes) == {Group.TARGET: 1, Group.REFERENCE: 1, Group.CONDITION: 11,
                                                     Group.STYLE: 2, Group.EDITING: 2, Group.DEGRADATION: 32}
    assert len(paper.tasks()) == 129 and len(paper.family_names()) == 12
    assert len(paper.tasks("test")) == len(TEST_TASKS) == 36
    assert TaskGraph().tasks("test") == paper.tasks("test")  # the default graph's, whatever node is added


def test_train_tasks_are_exactly_the_reference_tasks(reference_tasks):
    paper = _paper_graph(reference_tasks).tasks("train")
    assert len({t.nodes for t in paper}) == len(paper)
    mine = _by_family((t.family, t.graph200k_nodes) for t in paper)
    theirs = _by_family((t["family"], t["nodes"]) for t in reference_tasks["train_tasks"])
    assert mine == theirs
    assert set(mine) == {f.name for f in DEFAULT_FAMILIES}
    every = {t.nodes for t in TaskGraph().tasks("train")}
    assert all(t.nodes in every for t in paper)  # nodes added to the catalog only add tasks


def test_test_split_is_the_reference_test_split(reference_tasks):
    tasks = TaskGraph().tasks("test")
    assert len({t.id for t in tasks}) == len(tasks) == len(TEST_TASKS)
    mine = _by_family((t.family, t.graph200k_nodes) for t in tasks)
    theirs = _by_family((t["family"], t["nodes"]) for t in reference_tasks["test_tasks"])
    assert mine == theirs
    train = {t.nodes for t in TaskGraph().tasks("train")}
    assert all(t.nodes in train for t in tasks)


def test_task_anatomy():
    graph = TaskGraph()
    task = graph.find(["reference", "canny", "InstantStyle"])
    assert task.family == "style transfer with condition"
    assert task.conditions == ("reference", "canny") and task.target == "instant_style"
    assert task.id == "reference+canny->instant_style"
    assert task.to_json()["graph200k_nodes"] == ["reference", "canny", "InstantStyle"]
    with pytest.raises(Graph200kError, match="canny -> canny"):
        graph.find(["canny", "canny"])


def test_every_task_is_a_path_in_the_graph():
    graph = TaskGraph()
    for task in graph.tasks():
        for a, b in zip(task.nodes, task.nodes[1:]):
            assert graph.graph.has_edge(a, b, key=task.family)
            assert task.id in graph.graph.edges[a, b, task.family]["tasks"]
    assert graph.graph.number_of_nodes() == len(graph.nodes)


def test_a_new_hed_like_node_brings_exactly_its_six_tasks():
    lineart = replace(
        CONDITIONS[2],  # hed: same traits, same production
        name="lineart", graph200k_name="lineart", producer="lineart",
        storage=replace(CONDITIONS[2].storage, field="lineart"),
        phrases=tuple(f"a line-art drawing, variant {i}" for i in range(8)),
    )
    before = {t.nodes for t in TaskGraph().tasks()}
    graph = TaskGraph(nodes=DEFAULT_NODES.extended(lineart))
    added = {(t.family, t.nodes) for t in graph.tasks() if t.nodes not in before}
    assert len(graph.tasks()) == len(before) + 6
    assert graph.tasks("test") == TaskGraph().tasks("test")  # the test split is a named list: it does not grow
    assert added == {
        ("conditional generation", ("lineart", "target")),
        ("conditional generation with reference", ("reference", "lineart", "target")),
        ("conditional generation with style", ("lineart", "instant_style")),
        ("conditional generation with style", ("lineart", "redux_style")),
        ("style transfer with condition", ("reference", "lineart", "instant_style")),
        ("dense prediction", ("target", "lineart")),
    }


def test_a_node_no_rule_reaches_is_named():
    orphan = replace(CONDITIONS[2], name="thermal", graph200k_name="thermal", traits=frozenset(),
                     phrases=tuple(f"a thermal image {i}" for i in range(8)))
    with pytest.raises(Graph200kError, match="'thermal'.*unreachable"):
        TaskGraph(nodes=DEFAULT_NODES.extended(orphan))


def test_a_named_test_task_the_graph_lacks_is_named():
    with pytest.raises(Graph200kError, match="'lineart->target' is not in the task graph.*TEST_TASKS"):
        TaskGraph(test_tasks=(*TEST_TASKS, "lineart->target"))
    without_openpose = NodeRegistry(n for n in DEFAULT_NODES if n.name != "openpose")
    with pytest.raises(Graph200kError, match="'openpose->target'"):
        TaskGraph(nodes=without_openpose)
    kept = TaskGraph(nodes=without_openpose, test_tasks=TEST_TASKS[:3])  # a registry of one's own names its own
    assert kept.tasks("test") == TaskGraph().tasks("test")[:3]
    with pytest.raises(Graph200kError, match="'canny->target' is named twice"):
        TaskGraph(test_tasks=("canny->target", "canny->target"))


def test_an_empty_family_is_named():
    rules = (*DEFAULT_FAMILIES, FamilyRule("video prediction", ((slot(Group.CONDITION, "temporal"), slot(Group.TARGET)),)))
    with pytest.raises(Graph200kError, match="'video prediction'.*matches no node"):
        TaskGraph(families=rules)


def test_a_misspelt_trait_is_named():
    typo = replace(CONDITIONS[2], name="lineart", graph200k_name="lineart",
                   traits=CONDITIONS[2].traits | {"structual"},
                   phrases=tuple(f"line art {i}" for i in range(8)))
    with pytest.raises(Graph200kError, match="'lineart'.*structual"):
        TaskGraph(nodes=DEFAULT_NODES.extended(typo))


def test_family_weights_are_configurable_and_checked():
    graph = TaskGraph(weights={"restoration": 0.5})
    assert graph.weights["restoration"] == 0.5 and graph.weights["dense prediction"] == 1.0
    with pytest.raises(Graph200kError, match="'restauration'"):
        TaskGraph(weights={"restauration": 2})
    with pytest.raises(Graph200kError, match="'restoration'.*>= 0"):
        TaskGraph(weights={"restoration": -1})


def test_unknown_split_and_family_are_refused():
    graph = TaskGraph()
    with pytest.raises(Graph200kError, match="'val'"):
        graph.tasks("val")
    with pytest.raises(Graph200kError, match="'restorations'"):
        graph.tasks(family="restorations")


def test_task_selection_takes_splits_families_ids_paths_and_lists():
    from sampler.planner import _resolve_tasks

    graph = TaskGraph()
    dense = graph.tasks(family="dense prediction")
    assert _resolve_tasks(graph, "dense prediction") == dense
    assert _resolve_tasks(graph, "test") == graph.tasks(split="test")
    task = dense[0]
    assert _resolve_tasks(graph, task.id) == [task]
    assert _resolve_tasks(graph, " -> ".join(task.nodes)) == [task]  # the old listing's spelling
    assert _resolve_tasks(graph, [task.id, "dense prediction", task]) == dense  # in order, no repeats
    with pytest.raises(Graph200kError, match="did you mean 'dense prediction'.*") as err:
        _resolve_tasks(graph, "dense predictoin")
    assert "restoration with reference" in str(err.value)  # the families are listed
    with pytest.raises(Graph200kError, match=f"did you mean '{task.id}'"):
        _resolve_tasks(graph, task.id.replace("->", "=>"))
    with pytest.raises(Graph200kError, match="no tasks selected"):
        _resolve_tasks(graph, [])
