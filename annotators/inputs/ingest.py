"""Writing source shards: every input sample checked, normalised and stored, or recorded as failed.

A source shard (`<dataset>/source/<shard>.tar`) holds, per sample, the
target, the reference, the metadata `json` and every annotation the input
already had (imported nodes), under our field names. Accounting is per
sample, whatever breaks: a target that cannot be read (EIO, a tar member that
is a link, two different copies of it, an Arrow cell whose `path` is missing or
outside the Arrow file's folder) or does not decode fails that sample only; a
reference or annotation that cannot be read, does not decode or does not fit
its target (`_misfit`) is dropped from its sample; a reader that breaks part
way fails the planned samples it did not reach. All land in
`<shard>.errors.jsonl` with the key, the original name, the field, the file
when one is to blame, and the reason; `<shard>.stats.json` (written last)
counts planned inputs = succeeded + failed, and `field_errors` the fields
dropped from samples that were kept.

Input tars are read member by member with `tarfile` (webdataset's key rule,
`base_plus_ext`): a sample's members may sit anywhere in the tar and are
merged; hard links (GNU tar's way of storing a second copy) are resolved to
the member they name inside the same tar; symbolic links are never followed.
"""

from __future__ import annotations

import json
import os
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from graph200k.catalog import DEFAULT_NODES
from graph200k.dataset_dir import SOURCE, DatasetDir
from graph200k.decode import MAX_PIXELS, ImageDecodeError, NormalisedImage, normalise_image
from graph200k.nodes import Group, NodeRegistry, split_field
from graph200k.shardio import atomic_tar, stats_path, write_errors, write_json

from .columns import ColumnMap
from .fields import METADATA_JSON, FieldRole, release_metadata_key, resolve_field
from .sources import ShardPlan, is_inside
from .tables import read_rows

INGEST_VERSION = "1"


class UnreadableInput(Exception):
    """One input file (folder file, tar member, Arrow cell) could not or must not be read; the message says why."""


@dataclass(frozen=True)
class UnreadFile:
    """An input file of a sample that was not read: its role, field name, the file to blame, and why."""

    role: FieldRole | None
    field: str
    file: str
    reason: str


@dataclass
class RawSample:
    """One input sample before checking: its key, original name, (role, name, bytes) files and unread files."""

    key: str
    original: str
    files: list[tuple[FieldRole | None, str, bytes]] = field(default_factory=list)
    meta: dict = field(default_factory=dict)
    unread: list[UnreadFile] = field(default_factory=list)


def _read_local(path: str | os.PathLike) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as err:
        raise UnreadableInput(f"cannot read {path}: {err.strerror or err}") from None


def _read_folder(plan: ShardPlan, nodes: NodeRegistry) -> Iterator[RawSample]:
    for item in plan.items:
        sample = RawSample(item["key"], item["original"])
        for fld, path in sorted(item["files"].items()):
            try:
                sample.files.append((resolve_field(fld, nodes), fld, _read_local(path)))
            except UnreadableInput as err:
                sample.unread.append(UnreadFile(resolve_field(fld, nodes), fld, path, str(err)))
        for fld, refused in sorted(item.get("refused", {}).items()):  # links out of the input (sources.py)
            sample.unread.append(UnreadFile(resolve_field(fld, nodes), fld, refused["file"], refused["reason"]))
        yield sample


def _member_bytes(tar: tarfile.TarFile, member: tarfile.TarInfo) -> bytes:
    if member.issym():
        raise UnreadableInput(f"member {member.name!r} is a symbolic link (to {member.linkname!r}); "
                              "links in input tars are not followed: store the file itself")
    try:
        handle = tar.extractfile(member)  # a hard link resolves to the earlier member it names, in this tar only
    except KeyError:
        raise UnreadableInput(f"member {member.name!r} is a hard link to {member.linkname!r}, "
                              "which is not an earlier member of this tar") from None
    if handle is None:
        raise UnreadableInput(f"member {member.name!r} is not a regular file (tar type {member.type!r})")
    try:
        return handle.read()
    except (tarfile.TarError, OSError) as err:
        raise UnreadableInput(f"cannot read member {member.name!r}: {err}") from None


def _tar_sample(tar: tarfile.TarFile, url: str, item: dict, members: list[tuple[int, str, tarfile.TarInfo]],
                nodes: NodeRegistry) -> RawSample:
    """A planned key from its (position, field, member) members, wherever they sit in the tar. A field given
    twice is kept once when the copies are identical; different copies are both refused, the record naming
    the two members."""
    sample = RawSample(item["key"], item["original"])
    found: dict[str, tuple[int, str, bytes]] = {}  # field -> (member position, member name, bytes)
    clashed: set[str] = set()
    for position, fld, member in members:
        role = resolve_field(fld, nodes)
        file = f"{url}#{member.name}"
        try:
            data = _member_bytes(tar, member)
        except UnreadableInput as err:
            sample.unread.append(UnreadFile(role, fld, file, str(err)))
            continue
        if fld in clashed or (fld in found and found[fld][2] == data):
            continue
        if fld in found:
            first, name, _ = found.pop(fld)
            clashed.add(fld)
            sample.unread.append(UnreadFile(role, fld, file, f"members #{first} {name!r} and #{position} "
                                            f"{member.name!r} both give field {fld!r} and differ; neither is used"))
            continue
        found[fld] = (position, member.name, data)
    sample.files = [(resolve_field(fld, nodes), fld, data) for fld, (_, _, data) in sorted(found.items())]
    return sample


def _read_webdataset(plan: ShardPlan, nodes: NodeRegistry) -> Iterator[RawSample]:
    from webdataset.tariterators import base_plus_ext

    planned = {item["original"] for item in plan.items}
    with tarfile.open(plan.url) as tar:
        members: dict[str, list[tuple[int, str, tarfile.TarInfo]]] = {}
        for position, member in enumerate(tar.getmembers()):
            prefix, suffix = base_plus_ext(member.name)
            if not member.isdir() and suffix is not None and prefix in planned:
                members.setdefault(prefix, []).append((position, suffix.lower(), member))
        for item in plan.items:
            yield _tar_sample(tar, plan.url, item, members.get(item["original"], []), nodes)


def _arrow_cell_bytes(cell: dict, folder: Path) -> bytes:
    """An Image cell's bytes; a cell holding only a path is read relative to the Arrow file's folder, never
    outside it (an absolute path, `..` or a link leading out is refused)."""
    if cell["bytes"] is not None:
        return cell["bytes"]
    path = cell["path"]
    if not path:
        raise UnreadableInput("the image cell holds neither bytes nor a path")
    if os.path.isabs(path):
        raise UnreadableInput(f"image path {path!r} is absolute; cells are read only relative to the Arrow "
                              f"file's folder {folder} (embed the images, or place them beside the Arrow file)")
    full = folder / path
    if not is_inside(os.path.realpath(full), os.path.realpath(folder)):
        raise UnreadableInput(f"image path {path!r} leads outside the Arrow file's folder {folder}; not read")
    return _read_local(full)


def _read_arrow(plan: ShardPlan, nodes: NodeRegistry) -> Iterator[RawSample]:
    """Rows of an Arrow or Parquet file. Image cells (`datasets.Image` or bytes) are files of the roles
    `ColumnMap.role` gives; `--caption-col`'s text is the caption; a `json` column (`graph200k export`)
    is metadata under the other columns'; `__key__` is the key (planned) and `__*` columns are skipped."""
    folder = Path(plan.url).parent
    columns = ColumnMap.from_json(plan.columns)
    for item, row in zip(plan.items, read_rows(Path(plan.url), plan.start, plan.stop)):
        sample = RawSample(item["key"], item["original"])
        stored: dict = {}
        for column, value in row.items():
            if value is None or column.startswith("__"):
                continue
            if column == columns.caption:
                sample.meta["caption"] = value
                continue
            if isinstance(value, bytes):
                value = {"bytes": value, "path": None}
            if isinstance(value, dict) and "bytes" in value and "path" in value:
                role = columns.role(column, nodes)
                try:
                    sample.files.append((role, column, _arrow_cell_bytes(value, folder)))
                except UnreadableInput as err:
                    file = str(folder / value["path"]) if value["path"] else f"{plan.url}#{item['original']}"
                    sample.unread.append(UnreadFile(role, column, file, str(err)))
                continue
            meta_key = release_metadata_key(column, nodes)
            if isinstance(value, str) and value[:1] in "{[":
                try:
                    value = json.loads(value)
                except json.JSONDecodeError:
                    pass
            if column == METADATA_JSON and isinstance(value, dict):
                stored = value
                continue
            if isinstance(value, dict):  # a struct column: fields this row lacks read as None
                value = {k: v for k, v in value.items() if v is not None}
                if not value:
                    continue
            sample.meta[meta_key or column] = value
        sample.meta = {**stored, **sample.meta}
        description = sample.meta.get("description")
        if isinstance(description, dict):
            sample.meta.setdefault("item", description.get("item"))
            caption = description.get("description_0")
            if caption:
                sample.meta.setdefault("caption", caption)
        yield sample


READERS = {"folder": _read_folder, "webdataset": _read_webdataset, "arrow": _read_arrow}


def read_planned(plan: ShardPlan, nodes: NodeRegistry) -> Iterator[RawSample]:
    """Every planned sample of `plan` exactly once. When the reader breaks part way (the tar or Arrow file
    became unreadable, or changed since planning), the samples it did not reach come back unread, with the
    reason, instead of failing the shard."""
    reached: set[str] = set()
    failure = "it is no longer in the input (the input changed after planning)"
    try:
        for sample in READERS[plan.kind](plan, nodes):
            if sample.key not in reached:
                reached.add(sample.key)
                yield sample
    except Exception as err:  # any reader failure: the samples not reached are recorded with it
        failure = f"the input could not be read from here on ({type(err).__name__}: {err})"
    for item in plan.items:
        if item["key"] not in reached:
            yield RawSample(item["key"], item["original"],
                            unread=[UnreadFile(FieldRole("target"), "target", plan.url or item["original"], failure)])


def _error(sample: RawSample, fld: str, reason: str, file: str | None = None) -> dict:
    record = {"key": sample.key, "source": sample.original, "field": fld, "reason": reason}
    if file is not None:
        record["file"] = file
    return record


def _metadata(sample: RawSample, errors: list[dict]) -> dict:
    meta: dict = {}
    for role, name, data in sample.files:
        if role is None or role.kind not in ("json", "txt"):
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            errors.append(_error(sample, name, f"metadata is not UTF-8 ({err})"))
            continue
        if role.kind == "txt":
            meta["caption"] = text.strip()
            continue
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as err:
            errors.append(_error(sample, name, f"metadata is not valid JSON ({err})"))
            continue
        if not isinstance(parsed, dict):
            errors.append(_error(sample, name, "metadata JSON must be an object"))
            continue
        meta.update(parsed)
    meta.update(sample.meta)
    if "quality" not in meta and isinstance(meta.get("quality_assessment"), dict):
        meta["quality"] = meta.pop("quality_assessment")
    meta = {k: v for k, v in meta.items() if v is not None}
    return {"key": sample.key, "source": sample.original, **{k: v for k, v in meta.items() if k not in ("key", "source")}}


def _misfit(role: FieldRole, image: NormalisedImage, target: NormalisedImage, nodes: NodeRegistry) -> str | None:
    """Why an imported map cannot belong to its target, or None. Condition maps (edges, depth, masks, ...)
    are pixel-aligned with the target: they must have its aspect ratio (Graph200K's have its size; a map
    computed at another resolution is accepted, up to one pixel of rounding). References, styles and edits
    are free."""
    if role.kind not in ("node", "extra") or nodes.get(role.node).group is not Group.CONDITION:
        return None
    tw, th, w, h = target.width, target.height, image.width, image.height
    if abs(w * th - h * tw) <= (tw + th) / 2:
        return None
    return (f"a {w}x{h} {role.node} map cannot belong to a {tw}x{th} target: condition maps are aligned with "
            "the target (its size, or its aspect ratio at another size)")


def check_sample(sample: RawSample, nodes: NodeRegistry, max_pixels: int = MAX_PIXELS) -> tuple[dict | None, list[dict], list[str]]:
    """(fields to store or None if the sample fails, errors, ignored input fields)."""
    errors: list[dict] = []
    ignored: list[str] = [u.field for u in sample.unread if u.role is None]
    errors += [_error(sample, u.field, u.reason, u.file) for u in sample.unread if u.role is not None]
    unread_targets = [u.field for u in sample.unread if u.role is not None and u.role.kind == "target"]
    targets = [(r, n, d) for r, n, d in sample.files if r is not None and r.kind == "target"]
    if len(targets) + len(unread_targets) != 1:
        names = [n for _, n, _ in targets] + unread_targets
        reason = "no target image" if not names else f"several target images: {names}"
        return None, errors + [_error(sample, "target", reason)], ignored
    if unread_targets:
        return None, errors, ignored
    [(target_role, target_name, target_data)] = targets
    try:
        target = normalise_image(target_data, target_role.storage_modes(nodes), max_pixels)
    except ImageDecodeError as err:
        return None, errors + [_error(sample, target_name, str(err))], ignored
    fields: dict[str, bytes] = {target_role.out_field(nodes, target.ext): target.data}
    for role, name, data in sample.files:
        if role is None:
            ignored.append(name)
            continue
        if role.kind in ("json", "txt", "target"):
            continue
        if role.kind == "node" and role.index is not None and role.index >= nodes.get(role.node).max_instances:
            errors.append(_error(sample, name, f"instance {role.index} of {role.node} is beyond its "
                                               f"max_instances={nodes.get(role.node).max_instances}"))
            continue
        try:
            image = normalise_image(data, role.storage_modes(nodes), max_pixels)
        except ImageDecodeError as err:
            errors.append(_error(sample, name, str(err)))
            continue
        misfit = _misfit(role, image, target, nodes)
        if misfit:
            errors.append(_error(sample, name, misfit))
            continue
        fields[role.out_field(nodes, image.ext)] = image.data
    _drop_unpaired(fields, nodes, sample, errors)
    fields["json"] = json.dumps(_metadata(sample, errors), ensure_ascii=False, sort_keys=True).encode("utf-8")
    return fields, errors, ignored


def _drop_unpaired(fields: dict[str, bytes], nodes: NodeRegistry, sample: RawSample, errors: list[dict]) -> None:
    """A style instance without its reference (or the reverse) cannot be shown: drop and record it."""
    stem_index = {f: (split_field(f) or (f, None))[:2] for f in fields}
    for node in nodes:
        if node.storage is None or not node.storage.pair_field:
            continue
        for i in range(node.max_instances):
            main = [f for f in fields if stem_index[f] == (node.storage.field, i)]
            pair = [f for f in fields if stem_index[f] == (node.storage.pair_field, i)]
            if bool(main) != bool(pair):
                for f in main + pair:
                    del fields[f]
                errors.append(_error(sample, (main + pair)[0], f"instance {i} of {node.name} lacks its "
                                                               f"{'style reference' if main else 'stylised image'}"))


def write_source_shard(plan: ShardPlan, dataset: Path, nodes: NodeRegistry = DEFAULT_NODES,
                       max_pixels: int = MAX_PIXELS, on_sample: Callable[[int], None] | None = None) -> dict:
    """Read, check and write one source shard; return its stats (also written, last).
    `on_sample(1)` after each planned sample, written or failed (the run's progress bar)."""
    started = time.time()
    tar = DatasetDir(dataset).source_tar(plan.shard)
    errors: list[dict] = []
    ignored: dict[str, list[str]] = {}
    succeeded = failed = dropped = 0
    with atomic_tar(tar) as writer:
        for sample in read_planned(plan, nodes):
            fields, sample_errors, sample_ignored = check_sample(sample, nodes, max_pixels)
            errors += sample_errors
            if sample_ignored:
                ignored[sample.key] = sample_ignored
            if fields is None:
                failed += 1
            else:
                writer.write({"__key__": sample.key, **fields})
                succeeded += 1
                dropped += len(sample_errors)
            if on_sample is not None:
                on_sample(1)
    write_errors(tar, errors)
    stats = {
        "shard": plan.shard,
        "stage": SOURCE,
        "input": plan.url or "folder",
        "kind": plan.kind,
        "plan": plan.fingerprint,
        "ingest_version": INGEST_VERSION,
        "inputs": len(plan.items),
        "succeeded": succeeded,
        "failed": failed,
        "field_errors": dropped,
        "ignored_fields": ignored,
        "max_pixels": max_pixels,
        "duration_s": round(time.time() - started, 3),
    }
    write_json(stats_path(tar), stats)
    return stats
