"""Input field names -> what they are: the target, metadata, or a node's image.

Inputs name their files in our spelling or Graph200K's (case-insensitive):
`<node>.<ext>`, `<node>.<i>.<ext>`, `<node>_ref.<i>.<ext>` (a style's
reference), `json`, `txt`; the target is the bare image extension (`jpg`,
`png`, `webp`) or `target.<ext>`. Every alias comes from the node declarations
(`graph200k.catalog`): canonical name, Graph200K name, storage field, pair
field and the release's column name (`details["release_field"]`), so a node
declared there is importable without touching this module.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from graph200k.catalog import DEFAULT_NODES
from graph200k.nodes import NodeRegistry, NodeType, field_name

IMAGE_EXTS = frozenset({"jpg", "jpeg", "png", "webp"})
METADATA_JSON = "json"
CAPTION_TXT = "txt"


@dataclass(frozen=True)
class FieldRole:
    """What one input file of a sample is.

    kind: "target", "json" (metadata), "txt" (bare caption), "node" (an image of
    `node`, instance `index`, the paired image when `pair`), or "extra" (an
    auxiliary image stored under `extra` as is, e.g. `grounded_bbox`)."""

    kind: str
    node: str | None = None
    index: int | None = None
    pair: bool = False
    extra: str | None = None

    def out_field(self, nodes: NodeRegistry, ext: str) -> str:
        """The shard field this input is stored under, for a normalised image with extension `ext`."""
        if self.kind == "target":
            return field_name("target", None, ext)
        if self.kind == "extra":
            return field_name(self.extra, None, ext)
        return nodes.get(self.node).field_name(self.index, self.pair, ext)

    def storage_modes(self, nodes: NodeRegistry) -> tuple[str, ...]:
        """Pillow modes kept as they are when importing (single-channel maps accept L or RGB)."""
        if self.kind == "node" and not self.pair:
            mode = nodes.get(self.node).storage.mode
            return ("L", "RGB") if mode == "L" else ("RGB",)
        return ("RGB",)


def _importable(node: NodeType) -> bool:
    return node.storage is not None and node.name != "target"


@lru_cache(maxsize=8)
def _aliases(nodes: NodeRegistry) -> dict[str, tuple[str, bool]]:
    """Lower-cased alias -> (canonical node, is the pair image)."""
    table: dict[str, tuple[str, bool]] = {}
    for node in nodes:
        if not _importable(node):
            continue
        names = {node.name, node.graph200k_name, node.storage.field}
        release = node.details.get("release_field")
        if isinstance(release, str) and "{" not in release:
            names.add(release)
        for name in names:
            table.setdefault(name.lower(), (node.name, False))
        if node.storage.pair_field:
            pair_names = {node.storage.pair_field} | {f"{n}_ref" for n in names}
            for name in pair_names:
                table.setdefault(name.lower(), (node.name, True))
    return table


def node_alias(name: str, nodes: NodeRegistry = DEFAULT_NODES) -> tuple[str, bool] | None:
    """(canonical node, is pair) for a node spelling, or None."""
    return _aliases(nodes).get(name.lower())


def resolve_field(field: str, nodes: NodeRegistry = DEFAULT_NODES) -> FieldRole | None:
    """The role of an input field name (the part of a file name after the sample key), or None."""
    parts = field.lower().split(".")
    ext = parts[-1]
    if len(parts) == 1:
        if ext in IMAGE_EXTS:
            return FieldRole("target")
        if ext == METADATA_JSON:
            return FieldRole("json")
        if ext == CAPTION_TXT:
            return FieldRole("txt")
        return None
    if ext not in IMAGE_EXTS:
        return None
    if len(parts) == 2:
        if parts[0] == "target":
            return FieldRole("target")
        found = node_alias(parts[0], nodes)
        if found and nodes.get(found[0]).max_instances == 1 and not found[1]:
            return FieldRole("node", found[0], 0)
        return _extra(parts[0], nodes)
    if len(parts) == 3 and parts[1].isdigit():
        found = node_alias(parts[0], nodes)
        if found and nodes.get(found[0]).max_instances > 1:
            return FieldRole("node", found[0], int(parts[1]), pair=found[1])
    return None


def _extra(name: str, nodes: NodeRegistry) -> FieldRole | None:
    """Auxiliary images a node declares (`details["extra_fields"]`, e.g. `grounded_bbox.png`)."""
    for node in nodes:
        for extra in node.details.get("extra_fields", ()):
            if not extra.startswith("json:") and extra.split(".")[0].lower() == name:
                return FieldRole("extra", node=node.name, extra=extra.split(".")[0])
    return None


@lru_cache(maxsize=8)
def _release_columns(nodes: NodeRegistry) -> list[tuple[re.Pattern, str, bool]]:
    columns = []
    for node in nodes:
        for key, pair in (("release_field", False), ("release_pair_field", True)):
            template = node.details.get(key)
            if isinstance(template, str):
                pattern = re.escape(template).replace(re.escape("{i}"), r"(?P<i>\d+)")
                columns.append((re.compile(f"^{pattern}$"), node.name, pair))
    return columns


def release_column_role(column: str, nodes: NodeRegistry = DEFAULT_NODES) -> FieldRole | None:
    """Role of a column of the Graph200K release (`ref`, `canny`, `InstantStyle_image_0`, ...)."""
    if column == "target":
        return FieldRole("target")
    for pattern, node, pair in _release_columns(nodes):
        match = pattern.match(column)
        if match:
            index = int(match.group("i")) if "i" in match.groupdict() else 0
            return FieldRole("node", node, index, pair=pair)
    for node in nodes:
        extra = dict(node.details.get("release_extra_fields", {})).get(column)
        if extra and not extra.startswith("json:"):
            return FieldRole("extra", node=node.name, extra=extra)
    return _export_columns(nodes).get(column)


@lru_cache(maxsize=8)
def _export_columns(nodes: NodeRegistry) -> dict[str, FieldRole]:
    """Columns `graph200k export` names after the shard field (a node declared without a release name)."""
    from graph200k.release_schema import image_columns

    return {c.name: FieldRole("node", c.node, c.index or 0, pair=c.stem != nodes.get(c.node).storage.field)
            for c in image_columns(nodes) if c.node != "target" and c.stem in
            {nodes.get(c.node).storage.field, nodes.get(c.node).storage.pair_field}}


def release_metadata_key(column: str, nodes: NodeRegistry = DEFAULT_NODES) -> str | None:
    """The `json` key a release metadata column is stored under (`FillEdit_meta` -> `fill_edit`)."""
    fixed = {"description": "description", "quality_assessment": "quality", "collection": "collection"}
    if column in fixed:
        return fixed[column]
    for node in nodes:
        if node.details.get("metadata") == column:
            return node.name
        extra = dict(node.details.get("release_extra_fields", {})).get(column)
        if extra and extra.startswith("json:"):
            return extra[len("json:"):]
    return None
