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


def field_name(stem: str, index: int | None, ext: str) -> str:
    """The shard field naming scheme, the one place it is spelled: `<stem>.<ext>`, or
    `<stem>.<i>.<ext>` for instance `i` of a node that carries several. `split_field` reads it back."""
    return f"{stem}.{ext}" if index is None else f"{stem}.{index}.{ext}"


def split_field(field: str) -> tuple[str, int | None, str] | None:
    """`canny.png` -> ("canny", None, "png"); `fill_edit.0.jpg` -> ("fill_edit", 0, "jpg");
    None for a name outside the scheme (`json`, `a.b.c`)."""
    parts = field.split(".")
    if len(parts) == 2:
        return parts[0], None, parts[1]
    if len(parts) == 3 and parts[1].isdigit():
        return parts[0], int(parts[1]), parts[2]
    return None


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

    def field_name(self, index: int | None = None, pair: bool = False, ext: str | None = None) -> str:
        """The field of instance `index` (None: a single-instance node), of its paired image when `pair`,
        with extension `ext` (default the storage's: an imported image may keep its own)."""
        if pair and not self.pair_field:
            raise Graph200kError(f"storage {self.field!r} has no pair field")
        return field_name(self.pair_field if pair else self.field, index, ext or self.ext)

    def names(self, max_instances: int) -> list[str]:
        """The shard field names this storage can occupy (each instance followed by its pair)."""
        if max_instances == 1:
            return [self.field_name()]
        names = []
        for i in range(max_instances):
            names.append(self.field_name(i))
            if self.pair_field:
                names.append(self.field_name(i, pair=True))
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

    def field_name(self, index: int = 0, pair: bool = False, ext: str | None = None) -> str:
        """The shard field of instance `index` (of its paired image when `pair`) with extension `ext`
        (default the storage's): `<field>.<ext>` for a single-instance node, else
        `<field>.<i>.<ext>` / `<pair_field>.<i>.<ext>`."""
        if self.storage is None:
            raise Graph200kError(f"node {self.name!r} is not stored in shards")
        if self.max_instances == 1:
            return self.storage.field_name(ext=ext)
        return self.storage.field_name(index, pair, ext)

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
