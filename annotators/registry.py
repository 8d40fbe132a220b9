"""Which annotator produces which node type, in dependency order.

Adding an annotator: write its class (see `annotators.base`) and add it to
`DEFAULT_ANNOTATORS` below. The order annotators run in comes from the node
declarations (`NodeType.requires`, `NodeRegistry.topological_order`), never
from this list.
"""

from __future__ import annotations

from typing import Iterable

from graph200k.catalog import DEFAULT_NODES
from graph200k.nodes import NodeRegistry, Production

from .base import Annotator
from .perception.canny import CannyAnnotator
from .generative.catalog import GENERATIVE_ANNOTATORS
from .perception.catalog import PERCEPTION_ANNOTATORS


class AnnotatorRegistry:
    """Annotator classes by name, each checked against the node registry."""

    def __init__(self, annotators: Iterable[type[Annotator]], nodes: NodeRegistry = DEFAULT_NODES):
        self.nodes = nodes
        self._by_name: dict[str, type[Annotator]] = {}
        self._by_node: dict[str, type[Annotator]] = {}
        for cls in annotators:
            cls.check_declaration(nodes)
            if cls.name in self._by_name:
                raise ValueError(f"annotator name {cls.name!r} is registered twice")
            self._by_name[cls.name] = cls
            for node in cls.produces:
                if node in self._by_node:
                    raise ValueError(f"node {node!r} is produced by both {self._by_node[node].name!r} and {cls.name!r}")
                self._by_node[node] = cls

    def names(self) -> list[str]:
        return list(self._by_name)

    def get(self, name: str) -> type[Annotator]:
        """The annotator called `name`, or the one producing node `name` (either spelling)."""
        if name in self._by_name:
            return self._by_name[name]
        if name in self.nodes:
            node = self.nodes.canonical(name)
            if node in self._by_node:
                return self._by_node[node]
            raise ValueError(f"no annotator produces node {node!r} yet; available: {', '.join(self._by_name)}")
        raise ValueError(f"unknown annotator {name!r}; available: {', '.join(self._by_name)}")

    def for_node(self, node: str) -> type[Annotator] | None:
        return self._by_node.get(self.nodes.canonical(node))

    def ordered(self, names: Iterable[str] | None = None) -> list[type[Annotator]]:
        """The chosen annotators (all if `names` is None), each after the annotators of the nodes it needs.

        Ties keep the node declaration order (`NodeRegistry.topological_order`)."""
        chosen = {self.get(n).name for n in names} if names is not None else set(self._by_name)
        rank = {node.name: i for i, node in enumerate(self.nodes.topological_order())}
        todo = sorted((self._by_name[n] for n in chosen), key=lambda c: min(rank[p] for p in c.produces))
        order: list[type[Annotator]] = []
        while todo:
            for cls in todo:
                before = {self._by_node[n].name for n in cls.reads(self.nodes)
                          if n in self._by_node and self._by_node[n].name in chosen}
                if before <= {c.name for c in order}:
                    order.append(cls)
                    todo.remove(cls)
                    break
            else:
                raise ValueError(f"annotators {[c.name for c in todo]} need each other's nodes (a cycle)")
        return order

    def unannotated_nodes(self) -> list[str]:
        """Stored, computed nodes (annotator-made, or derived from a stored mask) that no annotator writes yet."""
        return [n.name for n in self.nodes if n.storage is not None and n.name not in self._by_node
                and n.produced_by in (Production.ANNOTATOR, Production.DERIVED)]


DEFAULT_ANNOTATORS = AnnotatorRegistry([CannyAnnotator, *PERCEPTION_ANNOTATORS, *GENERATIVE_ANNOTATORS])
