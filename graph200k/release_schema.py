"""The Graph200K release's column schema, derived from the node declarations.

The release (`VisualCloze/Graph200K` on the Hub) is a `datasets` dataset with
one image column per stored node instance (`target`, `ref`, `canny`, ...,
`InstantStyle_image_{i}` with its `InstantStyle_ref_{i}`, `FillEdit_image_{i}`),
auxiliary images (`qwen_2_5_bounding_box`), per-node metadata as JSON strings
(`FillEdit_meta`, `qwen_2_5_meta`) and the Subjects200K metadata
(`description` {item, description_0, ...}, `quality_assessment` {...},
`collection`). A node's columns come from its catalog entry:
`details["release_field"]` / `["release_pair_field"]` (`{i}`: the instance),
`["release_extra_fields"]` and `["metadata"]`; a stored node declared without
a release name gets its shard field's (`<field>`, `<field>_<i>`,
`<pair_field>_<i>`), which the import side (`annotators.inputs.fields`)
reads back as well.

Two columns are ours: `__key__`, the sample key (the name Hugging Face's
webdataset loader gives it), so that importing an export gives back the same
keys; and `json`, the sample's other metadata as a JSON object (webdataset's
field name), so that nothing the shards carry is lost.

`sample_row` turns one packed sample (shard fields -> bytes) into a row;
`features` types the columns for `datasets` (every image column a nullable
`datasets.Image()`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Iterable

from .catalog import DEFAULT_NODES
from .layout import METADATA_FIELD
from .nodes import NodeRegistry, split_field

KEY_COLUMN = "__key__"
JSON_COLUMN = "json"
DESCRIPTION, QUALITY, COLLECTION = "description", "quality_assessment", "collection"
DESCRIPTION_FIELDS = ("item", "description_0")  # Subjects200K: the item and the caption of the target
QUALITY_FIELDS = ("compositeStructure", "objectConsistency", "imageQuality")  # Subjects200K's ratings
# metadata keys the fixed columns hold (`key` is `__key__`; the others are in `description`)
_HELD_ELSEWHERE = frozenset({"key", "item", "caption", "quality", "collection", "description"})


@dataclass(frozen=True)
class ImageColumn:
    """One image column: its name in the release and the shard field it holds, as `nodes.split_field`
    reads a field: its stem and instance (`canny`/None, `instant_style_ref`/0, `grounded_bbox`/None);
    `node` owns it."""

    name: str
    stem: str
    index: int | None
    node: str


def image_columns(nodes: NodeRegistry = DEFAULT_NODES) -> list[ImageColumn]:
    """Every image column, `target` first, then the nodes in catalog order (a node's instances in order,
    each style image before its reference)."""
    columns: list[ImageColumn] = []
    for node in nodes:
        storage = node.storage
        if storage is None:
            continue
        if node.name == "target":
            columns.insert(0, ImageColumn("target", storage.field, None, node.name))
            continue
        main = node.details.get("release_field")
        pair = node.details.get("release_pair_field")
        if node.max_instances == 1:
            columns.append(ImageColumn(main if isinstance(main, str) else storage.field, storage.field, None,
                                       node.name))
        else:
            main = main if isinstance(main, str) and "{i}" in main else storage.field + "_{i}"
            pair = pair if isinstance(pair, str) and "{i}" in pair else f"{storage.pair_field}_{{i}}"
            for i in range(node.max_instances):
                columns.append(ImageColumn(main.format(i=i), storage.field, i, node.name))
                if storage.pair_field:
                    columns.append(ImageColumn(pair.format(i=i), storage.pair_field, i, node.name))
        for column, extra in dict(node.details.get("release_extra_fields", {})).items():
            if not extra.startswith("json:"):
                columns.append(ImageColumn(column, extra, None, node.name))
    return columns


def metadata_columns(nodes: NodeRegistry = DEFAULT_NODES) -> dict[str, str]:
    """Per-node metadata columns (JSON strings, as the release stores them) -> the `json` key they hold
    (`FillEdit_meta` -> `fill_edit`, `qwen_2_5_meta` -> `grounding`)."""
    columns: dict[str, str] = {}
    for node in nodes:
        if isinstance(node.details.get("metadata"), str):
            columns[node.details["metadata"]] = node.name
        for column, extra in dict(node.details.get("release_extra_fields", {})).items():
            if extra.startswith("json:"):
                columns[column] = extra[len("json:"):]
    return columns


def _text(value: object) -> str | None:
    return value if value is None or isinstance(value, str) else json.dumps(value, ensure_ascii=False, sort_keys=True)


def description(meta: dict) -> dict:
    """The release's `description` struct: the sample's own (if it came from the release) with `item` and
    `description_0` (the caption) taken from the metadata."""
    found = meta.get("description") if isinstance(meta.get("description"), dict) else {}
    value = {k: _text(v) for k, v in found.items()}
    value["item"] = _text(meta.get("item", value.get("item")))
    value["description_0"] = _text(meta.get("caption", value.get("description_0")))
    return value


def _value_type(values: list) -> str:
    """The `datasets` Value dtype that holds every one of `values` (None aside)."""
    seen = [v for v in values if v is not None]
    if all(isinstance(v, int) and not isinstance(v, bool) for v in seen):
        return "int64"
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seen):
        return "float64"
    return "string"


@dataclass(frozen=True)
class MetadataShape:
    """The struct fields the metadata of a whole export needs (a struct column has one field set)."""

    description: tuple[str, ...]
    quality: tuple[tuple[str, str], ...]  # (field, Value dtype)

    @classmethod
    def of(cls, metas: Iterable[dict]) -> "MetadataShape":
        described: dict[str, None] = dict.fromkeys(DESCRIPTION_FIELDS)
        rated: dict[str, list] = {f: [] for f in QUALITY_FIELDS}
        for meta in metas:
            described.update(dict.fromkeys(sorted(description(meta))))
            quality = meta.get("quality")
            for k, v in (quality.items() if isinstance(quality, dict) else ()):
                rated.setdefault(k, []).append(v)
        return cls(tuple(described), tuple((k, _value_type(v)) for k, v in rated.items()))


def features(shape: MetadataShape, nodes: NodeRegistry = DEFAULT_NODES):
    """The `datasets.Features` of an export: `__key__`, the image columns, the metadata columns, `json`."""
    from datasets import Features, Image, Value

    spec: dict = {KEY_COLUMN: Value("string")}
    spec.update({c.name: Image() for c in image_columns(nodes)})
    spec[DESCRIPTION] = {f: Value("string") for f in shape.description}
    spec[QUALITY] = {f: Value(dtype) for f, dtype in shape.quality}
    spec[COLLECTION] = Value("string")
    spec.update({c: Value("string") for c in metadata_columns(nodes)})
    spec[JSON_COLUMN] = Value("string")
    return Features(spec)


def _quality(meta: dict, shape: MetadataShape) -> dict | None:
    quality = meta.get("quality")
    if not isinstance(quality, dict):
        return None
    return {f: (quality.get(f) if dtype != "string" else _text(quality.get(f))) for f, dtype in shape.quality}


def sample_row(sample: dict[str, bytes], shape: MetadataShape,
               nodes: NodeRegistry = DEFAULT_NODES) -> tuple[dict, list[str]]:
    """(the export row of one packed sample, its fields no column holds). Image cells keep the shard's
    bytes as they are, named `<key>.<field>`; a column the sample has no image for is None."""
    key = sample["__key__"]
    by_field = {(c.stem, c.index): c.name for c in image_columns(nodes)}
    row: dict = {KEY_COLUMN: key, **{c.name: None for c in image_columns(nodes)}}
    left: list[str] = []
    for name, data in sorted(sample.items()):
        if name == "__key__" or name == METADATA_FIELD:
            continue
        split = split_field(name)
        column = by_field.get(split[:2]) if split else None
        if column is not None:
            row[column] = {"bytes": data, "path": f"{key}.{name}"}
        else:
            left.append(name)
    meta = json.loads(sample.get(METADATA_FIELD, b"{}"))
    node_meta = metadata_columns(nodes)
    described = description(meta)
    row[DESCRIPTION] = {f: described.get(f) for f in shape.description} if any(described.values()) else None
    row[QUALITY] = _quality(meta, shape)
    row[COLLECTION] = _text(meta.get("collection"))
    for column, meta_key in node_meta.items():
        row[column] = _text(meta.get(meta_key))
    rest = {k: v for k, v in meta.items() if k not in _HELD_ELSEWHERE and k not in node_meta.values()}
    row[JSON_COLUMN] = json.dumps(rest, ensure_ascii=False, sort_keys=True) if rest else None
    return row, left
