"""Sample layout: which shard fields hold which node, and which nodes a sample carries.

The field names are the contract between annotators, packed shards and the
sampler (see docs/ARCHITECTURE.md): `<field>.<ext>` for a single-instance
node, `<field>.<i>.<ext>` for instance `i`, `<pair_field>.<i>.<ext>` for the
image paired with it (a style's reference), and `json` for the metadata. The
scheme is spelled once, in `graph200k.nodes` (`field_name`, `split_field`,
`NodeType.field_name`); this module reads samples with it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

from .catalog import DEFAULT_NODES
from .nodes import NodeRegistry, NodeType, Production, split_field
from .quality import reference_usable

METADATA_FIELD = "json"


@dataclass(frozen=True)
class Instance:
    """One stored instance of a node in a sample: its image field and, for a paired
    node, the field of the image that goes with it."""

    node: str
    index: int
    field: str
    pair: str | None = None


def stored_instances(node: NodeType, fields: Iterable[str]) -> list[Instance]:
    """The instances of `node` found among a sample's field names (any image extension)."""
    if node.storage is None:
        return []
    by_stem: dict[tuple[str, int | None], str] = {}
    for field in fields:
        split = split_field(field)
        if split:
            by_stem.setdefault((split[0], split[1]), field)
    storage = node.storage
    if node.max_instances == 1:
        field = by_stem.get((storage.field, None))
        return [Instance(node.name, 0, field)] if field else []
    found = []
    for i in range(node.max_instances):
        field = by_stem.get((storage.field, i))
        pair = by_stem.get((storage.pair_field, i)) if storage.pair_field else None
        if field and (pair or not storage.pair_field):
            found.append(Instance(node.name, i, field, pair))
    return found


def nodes_present(fields: Iterable[str], nodes: NodeRegistry = DEFAULT_NODES) -> set[str]:
    """Canonical names of the nodes a sample with these fields can show.

    Stored nodes need at least one complete instance; derived and online nodes
    need every node they require (a derived node with its own storage, like
    `foreground`, needs that field too)."""
    fields = list(fields)
    present: set[str] = set()
    for node in nodes.topological_order():
        if node.produced_by in (Production.SOURCE, Production.ANNOTATOR):
            ok = bool(stored_instances(node, fields))
        else:
            ok = all(nodes.canonical(r) in present for r in node.requires)
            if node.storage is not None:
                ok = ok and bool(stored_instances(node, fields))
        if ok:
            present.add(node.name)
    return present


def usable_nodes(fields: Iterable[str], meta: object, nodes: NodeRegistry = DEFAULT_NODES) -> set[str]:
    """The nodes a sample serves tasks with: `nodes_present` over its fields, without the reference
    (nor anything that needs it) when the reference-quality rule rejects it (`graph200k.quality`).
    Packing's index and card and the sampler's pool both ask this, so they never disagree."""
    fields = list(fields)
    if not reference_usable(meta) and "reference" in nodes:
        reference = nodes.get("reference").storage.field
        fields = [f for f in fields if f.split(".")[0] != reference]
    return nodes_present(fields, nodes)


def merge_metadata(fields: dict, *others: dict) -> dict:
    """`fields` with the `json` metadata of `others` merged into its own (theirs first, `fields`' keys win).

    Node shards may carry a `json` field with that node's metadata (`{node: ...}`,
    e.g. an edit's name and seeds); joined with the source sample, the dicts merge."""
    parts = [o[METADATA_FIELD] for o in others if METADATA_FIELD in o]
    if not parts:
        return fields
    merged: dict = {}
    for part in [*parts, fields.get(METADATA_FIELD, b"{}")]:
        merged.update(json.loads(part))
    return {**fields, METADATA_FIELD: json.dumps(merged, ensure_ascii=False, sort_keys=True).encode("utf-8")}
