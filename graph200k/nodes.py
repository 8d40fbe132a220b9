"""Node types: what one image of a Graph200K sample can be.

A `NodeType` is the single declaration of a node: its names, its meta-task
group, how it is produced and stored, how many instances a sample may carry,
the traits the task rules read, and the phrases that describe it in prompts.
Everything else (task graph, shard fields, annotator order, prompts) is derived
from these declarations; `NodeRegistry` checks them and answers look-ups by
either spelling.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Iterable, Iterator, Mapping


class Graph200kError(ValueError):
    """A declaration, rule or look-up in `graph200k` is wrong; the message names it."""


class Group(str, Enum):
    """Meta-task group of a node type (the paper's grouping)."""

    TARGET = "target"
    REFERENCE = "reference"
    CONDITION = "condition"
    STYLE = "style"
    EDITING = "editing"
    DEGRADATION = "degradation"


class Production(str, Enum):
    """How the image of a node comes to exist."""

    SOURCE = "source"  # part of the input (the photo, its subject reference)
    ANNOTATOR = "annotator"  # written to the shards by an annotator
    DERIVED = "derived"  # computed at sampling time from stored fields
    ONLINE = "online"  # computed at sampling time from the target (degradations)


@dataclass(frozen=True)
class Storage:
    """How a node is stored in a shard: `<field>.<ext>`, or `<field>.<i>.<ext>` when
    the node carries several instances. `mode` is the PIL mode written ("RGB" or "L").
    `pair_field`, when set, names a second image stored beside each instance
    (a style node's style reference: `<pair_field>.<i>.<ext>`)."""

    field: str
    ext: str = "png"
    mode: str = "RGB"
    pair_field: str | None = None

    def names(self, max_instances: int) -> list[str]:
        """The shard field names this storage can occupy."""
        if max_instances == 1:
            return [f"{self.field}.{self.ext}"]
        names = []
        for i in range(max_instances):
            names.append(f"{self.field}.{i}.{self.ext}")
            if self.pair_field:
                names.append(f"{self.pair_field}.{i}.{self.ext}")
        return names


@dataclass(frozen=True)
class NodeType:
    """One node type, declared once.

    `traits` are the words the task rules (`graph200k.tasks`) select on; a new
    node with the same traits as an existing one joins the same tasks.
    `requires` lists the nodes whose stored images the producer reads
    (annotators run in that order; derived nodes read them at sampling time).
    `phrases` describe what the image looks like, for the task instruction; a
    style node also has `pair_phrases` for its style-reference column.
    `details` holds facts other stages must agree on (e.g. a rotation's direction).
    """

    name: str
    graph200k_name: str
    group: Group
    produced_by: Production
    phrases: tuple[str, ...]
    producer: str | None = None
    storage: Storage | None = None
    max_instances: int = 1
    traits: frozenset[str] = frozenset()
    requires: tuple[str, ...] = ()
    pair_phrases: tuple[str, ...] = ()
    details: Mapping[str, object] = field(default_factory=dict)

    @property
    def columns(self) -> int:
        """Grid columns this node fills: a style node shows its reference beside it."""
        return 2 if self.storage is not None and self.storage.pair_field else 1

    def produced_by_label(self) -> str:
        """`source`, `annotator:<name>`, `derived:<field>`, `online:<kind>`."""
        if self.producer:
            return f"{self.produced_by.value}:{self.producer}"
        return self.produced_by.value

    def to_json(self) -> dict:
        return {
            "name": self.name,
            "graph200k_name": self.graph200k_name,
            "group": self.group.value,
            "produced_by": self.produced_by_label(),
            "stored_as": self.storage.names(self.max_instances) if self.storage else None,
            "max_instances": self.max_instances,
            "columns": self.columns,
            "traits": sorted(self.traits),
            "requires": list(self.requires),
            "phrases": list(self.phrases),
            "pair_phrases": list(self.pair_phrases),
            "details": dict(self.details),
        }


_SNAKE = re.compile(r"^[a-z][a-z0-9]*(_[a-z0-9]+)*$")
MIN_PHRASES = 8


class NodeRegistry:
    """The checked set of node types; look-ups accept canonical or Graph200K names."""

    def __init__(self, nodes: Iterable[NodeType]):
        self._nodes: dict[str, NodeType] = {}
        self._alias: dict[str, str] = {}
        for node in nodes:
            self._check(node)
            self._nodes[node.name] = node
            self._alias[node.name] = node.name
            self._alias[node.graph200k_name] = node.name
        self._check_references()

    def _check(self, node: NodeType) -> None:
        if not _SNAKE.match(node.name):
            raise Graph200kError(f"node {node.name!r}: canonical names are snake_case")
        for spelling in (node.name, node.graph200k_name):
            owner = self._alias.get(spelling)
            if owner is not None:
                raise Graph200kError(
                    f"node {node.name!r}: name {spelling!r} is already declared by node {owner!r}"
                )
        if len(set(node.phrases)) < MIN_PHRASES:
            raise Graph200kError(
                f"node {node.name!r}: needs at least {MIN_PHRASES} distinct prompt phrases, "
                f"has {len(set(node.phrases))}"
            )
        if node.columns == 2 and len(set(node.pair_phrases)) < MIN_PHRASES:
            raise Graph200kError(
                f"node {node.name!r}: a paired node needs at least {MIN_PHRASES} pair_phrases"
            )
        stored = node.produced_by in (Production.SOURCE, Production.ANNOTATOR)
        if stored and node.storage is None:
            raise Graph200kError(f"node {node.name!r}: produced by {node.produced_by.value} but has no storage")
        if node.produced_by is Production.ANNOTATOR and not node.producer:
            raise Graph200kError(f"node {node.name!r}: an annotated node must name its producer")
        if node.max_instances < 1:
            raise Graph200kError(f"node {node.name!r}: max_instances must be >= 1")

    def _check_references(self) -> None:
        for node in self._nodes.values():
            for needed in node.requires:
                if needed not in self._alias:
                    raise Graph200kError(f"node {node.name!r}: requires unknown node {needed!r}")

    def __iter__(self) -> Iterator[NodeType]:
        return iter(self._nodes.values())

    def __len__(self) -> int:
        return len(self._nodes)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._alias

    def get(self, name: str) -> NodeType:
        """The node called `name` (canonical or Graph200K spelling)."""
        try:
            return self._nodes[self._alias[name]]
        except KeyError:
            folded = {k.lower(): v for k, v in self._alias.items()}
            if name.lower() in folded:
                return self._nodes[folded[name.lower()]]
            raise Graph200kError(
                f"unknown node type {name!r}; known: {', '.join(self._nodes)}"
            ) from None

    def canonical(self, name: str) -> str:
        return self.get(name).name

    def names(self) -> list[str]:
        return list(self._nodes)

    def in_group(self, group: Group) -> list[NodeType]:
        return [n for n in self._nodes.values() if n.group is group]

    def with_trait(self, trait: str) -> list[NodeType]:
        return [n for n in self._nodes.values() if trait in n.traits]

    def extended(self, *nodes: NodeType) -> "NodeRegistry":
        """A new registry with `nodes` added (how a project declares its own nodes)."""
        return NodeRegistry([*self._nodes.values(), *nodes])

    def topological_order(self) -> list[NodeType]:
        """Nodes ordered so that each comes after the nodes it requires."""
        import networkx as nx

        deps = nx.DiGraph()
        deps.add_nodes_from(self._nodes)
        for node in self._nodes.values():
            for needed in node.requires:
                deps.add_edge(self.canonical(needed), node.name)
        try:
            order = list(nx.lexicographical_topological_sort(deps, key=self.names().index))
        except nx.NetworkXUnfeasible:
            cycle = nx.find_cycle(deps)
            raise Graph200kError(f"node requirements form a cycle: {cycle}") from None
        return [self._nodes[n] for n in order]
