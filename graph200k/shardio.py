"""Shard files on disk: atomic tar/JSON writes, completion markers, reading samples back.

A shard is complete when its `<shard>.stats.json` exists: the tar is written
under a temporary name, flushed and renamed, the errors record likewise, and
the stats file last. A run killed at any point leaves either a complete shard
or temporary files (`*.partial-*`) that the next run deletes; a truncated tar
is never found under a final name. Tars are byte-for-byte reproducible
(fixed mtime, owner and mode; members in the order written).

The tar format is webdataset's, member for member: `<key>.<field>`, a
sample's fields sorted and contiguous, the key ending at the first dot of the
basename (webdataset's `base_plus_ext` rule), field names lower-cased on
reading. It is written and read here with the standard library because
`import webdataset` imports torch (1-4 s in every Ray worker, more than a
whole canny shard takes); tests/test_packing.py reads our shards back with
`webdataset.WebDataset` to hold the two together.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Iterator

PARTIAL = ".partial-"
TAR_MTIME = 0
TAR_OWNER = "graph200k"
TAR_MODE = 0o444
_KEY_AND_FIELD = re.compile(r"^((?:.*/|)[^.]+)[.]([^/]*)$")  # webdataset.tariterators.base_plus_ext


class TarSampleWriter:
    """Writes samples to a tar stream as `webdataset.TarWriter` does: `<key>.<field>` members, fields sorted."""

    def __init__(self, fileobj):
        self._tar = tarfile.open(fileobj=fileobj, mode="w|")

    def write(self, sample: dict[str, Any]) -> int:
        key = sample.get("__key__")
        if not key or "." in key.rpartition("/")[2]:
            raise ValueError(f"sample key {key!r} must be non-empty and hold no dot (webdataset splits at the first dot)")
        total = 0
        for field in sorted(k for k in sample if not k.startswith("_")):
            data = sample[field]
            if isinstance(data, str):
                data = data.encode("utf-8")
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise ValueError(f"{key}.{field}: value must be bytes or str, got {type(data).__name__}")
            info = tarfile.TarInfo(f"{key}.{field}")
            info.size, info.mtime, info.mode = len(data), TAR_MTIME, TAR_MODE
            info.uname = info.gname = TAR_OWNER
            self._tar.addfile(info, io.BytesIO(data))
            total += len(data)
        return total

    def close(self) -> None:
        self._tar.close()


def stats_path(tar: Path) -> Path:
    """`000000.tar` -> `000000.stats.json`."""
    return tar.with_name(tar.name[: -len(".tar")] + ".stats.json")


def errors_path(tar: Path) -> Path:
    """`000000.tar` -> `000000.errors.jsonl`."""
    return tar.with_name(tar.name[: -len(".tar")] + ".errors.jsonl")


def _partial(path: Path) -> Path:
    return path.with_name(f"{path.name}{PARTIAL}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _publish(tmp: Path, final: Path) -> None:
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)


@contextmanager
def atomic_tar(final: Path) -> Iterator[TarSampleWriter]:
    """A sample writer whose tar appears under `final` only once it is complete."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(final)
    try:
        with open(tmp, "wb") as f:
            writer = TarSampleWriter(f)
            yield writer
            writer.close()
        _publish(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def atomic_file(path: Path) -> Iterator[BinaryIO]:
    """A binary file that appears under `path` only once it is complete and synced (pictures, pages):
    a kill leaves the old file or none, never half a PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    try:
        with open(tmp, "wb") as f:
            yield f
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, fsync, rename)."""
    write_text(path, json.dumps(obj, indent=1, ensure_ascii=False) + "\n")


def write_text(path: Path, text: str) -> None:
    """Write text atomically (temporary file, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _partial(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_errors(tar: Path, errors: list[dict]) -> Path | None:
    """Write the shard's errors record (JSON lines), or remove a stale one when there are none."""
    path = errors_path(tar)
    if not errors:
        path.unlink(missing_ok=True)
        return None
    write_text(path, "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in errors))
    return path


def read_errors(tar: Path) -> list[dict]:
    path = errors_path(tar)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def read_stats(tar: Path) -> dict | None:
    """The shard's stats (its completion marker), or None if the shard is not complete."""
    path = stats_path(tar)
    if not path.exists() or not tar.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def invalidate(tar: Path) -> None:
    """Remove the completion marker first, then the shard, so a half-removed shard reads as incomplete."""
    stats_path(tar).unlink(missing_ok=True)
    errors_path(tar).unlink(missing_ok=True)
    tar.unlink(missing_ok=True)


def remove_partials(folder: Path) -> int:
    """Delete temporary files left by killed runs; return how many."""
    if not folder.exists():
        return 0
    removed = 0
    for path in folder.rglob(f"*{PARTIAL}*"):
        path.unlink(missing_ok=True)
        removed += 1
    return removed


def sample_fields(tar: Path) -> dict[str, list[str]]:
    """Each sample's field names, read from the tar's headers alone (no member is read)."""
    fields: dict[str, list[str]] = {}
    with tarfile.open(tar, mode="r") as archive:
        for member in archive.getmembers():
            match = _KEY_AND_FIELD.match(member.name) if member.isfile() else None
            if match is not None:
                fields.setdefault(match.group(1), []).append(match.group(2).lower())
    return fields


def iter_samples(tar: Path) -> Iterator[dict]:
    """Samples of a webdataset tar, grouped as webdataset groups them: dicts of `__key__` and field -> bytes."""
    current: dict | None = None
    with tarfile.open(tar, mode="r|") as stream:
        for member in stream:
            match = _KEY_AND_FIELD.match(member.name) if member.isfile() else None
            if match is None:
                continue
            key, field = match.group(1), match.group(2).lower()
            data = stream.extractfile(member).read()
            if current is None or current["__key__"] != key:
                if current is not None:
                    yield current
                current = {"__key__": key}
            if field in current:
                raise ValueError(f"{tar}: sample {key!r} has field {field!r} twice")
            current[field] = data
    if current is not None:
        yield current
