"""The task graph: which paths through the node types are training tasks.

A family rule is a path pattern: a sequence of slots, each selecting node types
by group and traits. The rules say nothing about individual nodes; the node
declarations (`graph200k.catalog`) carry the traits. Expanding every rule over
the registry yields the tasks, and the union of their paths is a networkx
multigraph whose edges are keyed by family. A task's last node is its target,
the nodes before it are its conditions.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Iterable, Mapping, Sequence

import networkx as nx

from .catalog import DEFAULT_NODES
from .nodes import Graph200kError, Group, NodeRegistry, NodeType


@dataclass(frozen=True)
class Slot:
    """Selects the node types of `group` that carry every trait in `traits`."""

    group: Group
    traits: frozenset[str] = frozenset()

    def matches(self, node: NodeType) -> bool:
        return node.group is self.group and self.traits <= node.traits

    def __str__(self) -> str:
        return self.group.value + "".join(f"[{t}]" for t in sorted(self.traits))


def slot(group: Group, *traits: str) -> Slot:
    return Slot(group, frozenset(traits))


@dataclass(frozen=True)
class FamilyRule:
    """A task family: one or more path patterns."""

    name: str
    patterns: tuple[tuple[Slot, ...], ...]

    def describe(self) -> str:
        return " | ".join(" -> ".join(str(s) for s in p) for p in self.patterns)


T, R = slot(Group.TARGET), slot(Group.REFERENCE)
C, S, E, D = Group.CONDITION, Group.STYLE, Group.EDITING, Group.DEGRADATION

DEFAULT_FAMILIES: tuple[FamilyRule, ...] = (
    FamilyRule("conditional generation", ((slot(C, "generates_target"), T),)),
    FamilyRule("conditional generation with reference", ((R, slot(C, "pairs_with_reference"), T),)),
    FamilyRule("conditional generation with style", ((slot(C, "structural"), slot(S)),)),
    FamilyRule("image generation with reference", ((R, T),)),
    FamilyRule("subject extraction", ((T, R),)),
    FamilyRule("style transfer", ((T, slot(S)), (R, slot(S, "keeps_semantics")))),
    FamilyRule("style transfer with condition", ((R, slot(C, "structural"), slot(S, "keeps_semantics")),)),
    FamilyRule("image editing", ((slot(E), T),)),
    FamilyRule("image editing with reference", ((R, slot(E), T),)),
    FamilyRule("dense prediction", ((T, slot(C, "predictable")),)),
    FamilyRule("restoration", ((slot(D), T),)),
    FamilyRule("restoration with reference", ((R, slot(D), T),)),
)

# The test split: the paper's 36 held-out tasks (the reference implementation's
# `test_task_dicts`), named one by one. A list, not a rule, so adding a node type
# or a family never changes it; the graph checks every id names one of its tasks.
TEST_TASKS: tuple[str, ...] = (
    # conditional generation
    "canny->target", "depth->target", "hed->target", "normal->target", "mlsd->target",
    "openpose->target", "sam2_mask->target", "semantic_map->target", "grounded_mask->target",
    "foreground->target", "background->target",
    # image generation with reference
    "reference->target",
    # conditional generation with reference
    "reference+depth->target", "reference+openpose->target",
    # subject extraction
    "target->reference",
    # dense prediction
    "target->depth", "target->openpose",
    # restoration
    "gaussian_blur->target", "inpainting->target", "rotate90->target", "elastic->target",
    # restoration with reference
    "reference+inpainting->target",
    # image editing with reference
    "reference+depth_edit->target", "reference+fill_edit->target",
    # style transfer
    "target->instant_style", "target->redux_style", "reference->instant_style",
    # style transfer with condition
    "reference+canny->instant_style", "reference+depth->instant_style", "reference+hed->instant_style",
    "reference+normal->instant_style", "reference+mlsd->instant_style", "reference+openpose->instant_style",
    "reference+sam2_mask->instant_style", "reference+semantic_map->instant_style",
    "reference+grounded_mask->instant_style",
)


@dataclass(frozen=True)
class Task:
    """A path through the node graph: conditions, then the target."""

    family: str
    nodes: tuple[str, ...]
    graph200k_nodes: tuple[str, ...] = field(compare=False)

    @property
    def conditions(self) -> tuple[str, ...]:
        return self.nodes[:-1]

    @property
    def target(self) -> str:
        return self.nodes[-1]

    @property
    def id(self) -> str:
        return "+".join(self.conditions) + "->" + self.target

    def to_json(self) -> dict:
        return {"family": self.family, "id": self.id, "nodes": list(self.nodes),
                "graph200k_nodes": list(self.graph200k_nodes)}


class TaskGraph:
    """Tasks, families and their weights, expanded from rules over a node registry."""

    def __init__(
        self,
        nodes: NodeRegistry = DEFAULT_NODES,
        families: Sequence[FamilyRule] = DEFAULT_FAMILIES,
        weights: Mapping[str, float] | None = None,
        test_tasks: Sequence[str] = TEST_TASKS,
    ):
        self.nodes = nodes
        self.families = tuple(families)
        self._check_traits()
        self._tasks = self._expand()
        self.weights = self._check_weights(weights or {})
        self._test = self._named(test_tasks)
        self.graph = self._build_graph()

    def _check_traits(self) -> None:
        known = {t for f in self.families for p in f.patterns for s in p for t in s.traits}
        for node in self.nodes:
            unknown = node.traits - known
            if unknown:
                raise Graph200kError(
                    f"node {node.name!r}: trait(s) {sorted(unknown)} are read by no family rule "
                    f"(known traits: {sorted(known)})"
                )
        names = [f.name for f in self.families]
        for name in names:
            if names.count(name) > 1:
                raise Graph200kError(f"family rule {name!r} is declared twice")

    def _expand(self) -> list[Task]:
        tasks: list[Task] = []
        for family in self.families:
            found = 0
            for pattern in family.patterns:
                choices = [[n for n in self.nodes if s.matches(n)] for s in pattern]
                for combo in itertools.product(*choices):
                    if len({n.name for n in combo}) < len(combo):
                        continue  # a path never visits a node twice
                    tasks.append(Task(family.name, tuple(n.name for n in combo),
                                      tuple(n.graph200k_name for n in combo)))
                    found += 1
            if found == 0:
                raise Graph200kError(
                    f"family rule {family.name!r} ({family.describe()}) matches no node types"
                )
        used = {n for t in tasks for n in t.nodes}
        for node in self.nodes:
            if node.name not in used:
                raise Graph200kError(
                    f"node {node.name!r} (group {node.group.value}, traits {sorted(node.traits)}) "
                    "is unreachable: no family rule puts it on a task path"
                )
        return tasks

    def _check_weights(self, weights: Mapping[str, float]) -> dict[str, float]:
        names = {f.name for f in self.families}
        for name, weight in weights.items():
            if name not in names:
                raise Graph200kError(f"weight given for unknown family {name!r}; families: {sorted(names)}")
            if not weight >= 0:
                raise Graph200kError(f"family {name!r}: weight must be >= 0, got {weight!r}")
        return {f.name: float(weights.get(f.name, 1.0)) for f in self.families}

    def _named(self, ids: Sequence[str]) -> list[Task]:
        """The tasks named by `ids` (the test split), in that order; an id the graph lacks is an error."""
        by_id = {t.id: t for t in self._tasks}
        chosen: list[Task] = []
        for task_id in ids:
            if task_id not in by_id:
                raise Graph200kError(
                    f"test split: task {task_id!r} is not in the task graph (a node it uses is missing or "
                    "renamed); fix the id in TEST_TASKS (graph200k/tasks.py) or the node declarations")
            if by_id[task_id] in chosen:
                raise Graph200kError(f"test split: task {task_id!r} is named twice; "
                                     "remove one (TEST_TASKS, graph200k/tasks.py)")
            chosen.append(by_id[task_id])
        return chosen

    def _build_graph(self) -> nx.MultiDiGraph:
        graph = nx.MultiDiGraph()
        for node in self.nodes:
            graph.add_node(node.name, group=node.group.value, graph200k_name=node.graph200k_name)
        for task in self._tasks:
            for a, b in itertools.pairwise(task.nodes):
                if graph.has_edge(a, b, key=task.family):
                    graph.edges[a, b, task.family]["tasks"].append(task.id)
                else:
                    graph.add_edge(a, b, key=task.family, tasks=[task.id])
        return graph

    def family_names(self) -> list[str]:
        return [f.name for f in self.families]

    def tasks(self, split: str = "train", family: str | None = None) -> list[Task]:
        """Tasks of `split` ("train": all; "test": the named test tasks, `TEST_TASKS`)."""
        if split == "train":
            pool = self._tasks
        elif split == "test":
            pool = self._test
        else:
            raise Graph200kError(f"unknown split {split!r}; use 'train' or 'test'")
        if family is not None and family not in self.family_names():
            raise Graph200kError(f"unknown family {family!r}; families: {self.family_names()}")
        return [t for t in pool if family is None or t.family == family]

    def find(self, nodes: Iterable[str]) -> Task:
        """The task whose path is `nodes` (either spelling)."""
        path = tuple(self.nodes.canonical(n) for n in nodes)
        for task in self._tasks:
            if task.nodes == path:
                return task
        raise Graph200kError(f"no task follows the path {' -> '.join(path)}")


def default_task_graph() -> TaskGraph:
    return TaskGraph()
