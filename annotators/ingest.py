"""Writing source shards: every input sample checked, normalised and stored, or recorded as failed.

A source shard (`<dataset>/source/<shard>.tar`) holds, per sample, the
target, the reference, the metadata `json` and every annotation the input
already had (imported nodes), under our field names. Each image is decoded in
full (`graph200k.decode`): a target that does not decode fails the whole
sample; a reference or annotation that does not decode is dropped from the
sample. Both land in `<shard>.errors.jsonl` with the key and the reason, and
`<shard>.stats.json` (written last) counts inputs = succeeded + failed.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from graph200k.catalog import DEFAULT_NODES
from graph200k.decode import MAX_PIXELS, ImageDecodeError, normalise_image
from graph200k.nodes import NodeRegistry
from graph200k.shardio import atomic_tar, write_errors, write_json

from .fields import FieldRole, release_column_role, release_metadata_key, resolve_field
from .sources import ShardPlan

INGEST_VERSION = "1"


@dataclass
class RawSample:
    """One input sample before checking: its key, original name and (role, name, bytes) files."""

    key: str
    original: str
    files: list[tuple[FieldRole | None, str, bytes]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)


def source_dir(dataset: Path) -> Path:
    return dataset / "source"


def source_tar(dataset: Path, shard: str) -> Path:
    return source_dir(dataset) / f"{shard}.tar"


def _read_folder(plan: ShardPlan, nodes: NodeRegistry) -> Iterator[RawSample]:
    for item in plan.items:
        sample = RawSample(item["key"], item["original"])
        for fld, path in sorted(item["files"].items()):
            sample.files.append((resolve_field(fld, nodes), fld, Path(path).read_bytes()))
        yield sample


def _read_webdataset(plan: ShardPlan, nodes: NodeRegistry) -> Iterator[RawSample]:
    from webdataset.tariterators import tarfile_samples

    keys = {item["original"]: item["key"] for item in plan.items}
    seen = set()
    for raw in tarfile_samples([{"url": plan.url}]):
        original = raw["__key__"]
        if original in seen:
            raise ValueError(f"{plan.url}: the fields of sample {original!r} are not contiguous in the tar")
        seen.add(original)
        sample = RawSample(keys[original], original)
        for fld, value in sorted(raw.items()):
            if not fld.startswith("__"):
                sample.files.append((resolve_field(fld, nodes), fld, bytes(value)))
        yield sample


def _read_arrow(plan: ShardPlan, nodes: NodeRegistry) -> Iterator[RawSample]:
    from datasets import Dataset, Image

    ds = Dataset.from_file(plan.url).select(range(plan.start, plan.stop))
    for column, feature in ds.features.items():
        if isinstance(feature, Image):
            ds = ds.cast_column(column, Image(decode=False))
    for item, row in zip(plan.items, ds):
        sample = RawSample(item["key"], item["original"])
        for column, value in row.items():
            if value is None:
                continue
            if isinstance(value, dict) and "bytes" in value and "path" in value:
                data = value["bytes"] if value["bytes"] is not None else Path(value["path"]).read_bytes()
                sample.files.append((release_column_role(column, nodes), column, data))
                continue
            meta_key = release_metadata_key(column, nodes)
            if isinstance(value, str) and value[:1] in "{[":
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            sample.meta[meta_key or column] = value
        description = sample.meta.get("description")
        if isinstance(description, dict):
            sample.meta.setdefault("item", description.get("item"))
            caption = description.get("description_0")
            if caption:
                sample.meta.setdefault("caption", caption)
        yield sample


READERS = {"folder": _read_folder, "webdataset": _read_webdataset, "arrow": _read_arrow}


def _metadata(sample: RawSample, errors: list[dict]) -> dict:
    meta: dict = {}
    for role, name, data in sample.files:
        if role is None or role.kind not in ("json", "txt"):
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            errors.append({"key": sample.key, "field": name, "reason": f"metadata is not UTF-8 ({err})"})
            continue
        if role.kind == "txt":
            meta["caption"] = text.strip()
            continue
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as err:
            errors.append({"key": sample.key, "field": name, "reason": f"metadata is not valid JSON ({err})"})
            continue
        if not isinstance(parsed, dict):
            errors.append({"key": sample.key, "field": name, "reason": "metadata JSON must be an object"})
            continue
        meta.update(parsed)
    meta.update(sample.meta)
    if "quality" not in meta and isinstance(meta.get("quality_assessment"), dict):
        meta["quality"] = meta.pop("quality_assessment")
    meta = {k: v for k, v in meta.items() if v is not None}
    return {"key": sample.key, "source": sample.original, **{k: v for k, v in meta.items() if k not in ("key", "source")}}


def check_sample(sample: RawSample, nodes: NodeRegistry, max_pixels: int = MAX_PIXELS) -> tuple[dict | None, list[dict], list[str]]:
    """(fields to store or None if the sample fails, errors, ignored input fields)."""
    errors: list[dict] = []
    ignored: list[str] = []
    fields: dict[str, bytes] = {}
    targets = [(r, n, d) for r, n, d in sample.files if r is not None and r.kind == "target"]
    if len(targets) != 1:
        reason = "no target image" if not targets else f"several target images: {[n for _, n, _ in targets]}"
        return None, [{"key": sample.key, "source": sample.original, "field": "target", "reason": reason}], ignored
    for role, name, data in sample.files:
        if role is None:
            ignored.append(name)
            continue
        if role.kind in ("json", "txt"):
            continue
        if role.kind == "node" and role.index is not None and role.index >= nodes.get(role.node).max_instances:
            errors.append({"key": sample.key, "source": sample.original, "field": name,
                           "reason": f"instance {role.index} of {role.node} is beyond its "
                                     f"max_instances={nodes.get(role.node).max_instances}"})
            continue
        try:
            image = normalise_image(data, role.storage_modes(nodes), max_pixels)
        except ImageDecodeError as err:
            errors.append({"key": sample.key, "source": sample.original, "field": name, "reason": str(err)})
            if role.kind == "target":
                return None, errors, ignored
            continue
        out = role.out_field(nodes, image.ext)
        fields[out] = image.data
    _drop_unpaired(fields, nodes, sample, errors)
    fields["json"] = json.dumps(_metadata(sample, errors), ensure_ascii=False, sort_keys=True).encode("utf-8")
    return fields, errors, ignored


def _drop_unpaired(fields: dict[str, bytes], nodes: NodeRegistry, sample: RawSample, errors: list[dict]) -> None:
    """A style instance without its reference (or the reverse) cannot be shown: drop and record it."""
    for node in nodes:
        if node.storage is None or not node.storage.pair_field:
            continue
        for i in range(node.max_instances):
            main = [f for f in fields if f.startswith(f"{node.storage.field}.{i}.")]
            pair = [f for f in fields if f.startswith(f"{node.storage.pair_field}.{i}.")]
            if bool(main) != bool(pair):
                for f in main + pair:
                    del fields[f]
                errors.append({"key": sample.key, "source": sample.original, "field": (main + pair)[0],
                               "reason": f"instance {i} of {node.name} lacks its "
                                         f"{'style reference' if main else 'stylised image'}"})


def write_source_shard(plan: ShardPlan, dataset: Path, nodes: NodeRegistry = DEFAULT_NODES,
                       max_pixels: int = MAX_PIXELS) -> dict:
    """Read, check and write one source shard; return its stats (also written, last)."""
    started = time.time()
    tar = source_tar(dataset, plan.shard)
    errors: list[dict] = []
    ignored: dict[str, list[str]] = {}
    succeeded = failed = 0
    seen = 0
    with atomic_tar(tar) as writer:
        for sample in READERS[plan.kind](plan, nodes):
            seen += 1
            fields, sample_errors, sample_ignored = check_sample(sample, nodes, max_pixels)
            errors += sample_errors
            if sample_ignored:
                ignored[sample.key] = sample_ignored
            if fields is None:
                failed += 1
                continue
            writer.write({"__key__": sample.key, **fields})
            succeeded += 1
    if seen != len(plan.items):
        raise ValueError(f"source shard {plan.shard}: planned {len(plan.items)} samples, read {seen}")
    write_errors(tar, errors)
    stats = {
        "shard": plan.shard,
        "stage": "source",
        "input": plan.url or "folder",
        "kind": plan.kind,
        "plan": plan.fingerprint,
        "ingest_version": INGEST_VERSION,
        "inputs": len(plan.items),
        "succeeded": succeeded,
        "failed": failed,
        "field_errors": sum(1 for e in errors if e.get("field") != "target"),
        "ignored_fields": ignored,
        "max_pixels": max_pixels,
        "duration_s": round(time.time() - started, 3),
    }
    write_json(tar.with_name(f"{plan.shard}.stats.json"), stats)
    return stats
