"""Training shards on disk: which tars a spec names, and random access to their samples.

A shard is a webdataset tar (docs/ARCHITECTURE.md, "Contract: training
shards"). The sampler indexes each tar once by reading its member headers
(tarfile seeks over the data), so that a sample can be read, or skipped, by
its position: resuming mid-epoch costs a few header reads, not a re-read of
everything before the resume point.
"""

from __future__ import annotations

import glob
import logging
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext

log = logging.getLogger(__name__)


class ShardError(ValueError):
    """A shard spec names nothing readable, or a tar cannot be indexed; the message says which."""


def resolve_shards(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The tar paths named by `spec`: a directory (its `*.tar`, sorted), one path,
    a brace pattern (`train-{00000..00009}.tar`), a glob (`shards/*.tar`) or a list of these."""
    if isinstance(spec, (str, os.PathLike)):
        specs = [spec]
    else:
        specs = list(spec)
    if not specs:
        raise ShardError("no shards given (empty list)")
    paths: list[str] = []
    for item in specs:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = sorted(str(p) for p in Path(item).glob("*.tar"))
            if not found:
                raise ShardError(f"shard directory {item!r} holds no *.tar files")
            paths.extend(found)
            continue
        for pattern in expand_urls(item):
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if not matches:
                raise ShardError(f"shard pattern {pattern!r} matches no file")
            paths.extend(_existing(matches, item))
    return paths


def _existing(paths: list[str], spec: str) -> list[str]:
    for path in paths:
        if not os.path.isfile(path):
            raise ShardError(f"shard {path!r} does not exist (from {spec!r})")
    return paths


@dataclass(frozen=True)
class SampleEntry:
    """Where one sample's fields lie in its tar: field name -> (offset, size)."""

    key: str
    fields: dict[str, tuple[int, int]]


class TarIndex:
    """The samples of one tar, in file order, grouped by key as webdataset groups them."""

    def __init__(self, path: str):
        self.path = path
        self.samples: list[SampleEntry] = []
        self.error: str | None = None
        self._build()

    def _build(self) -> None:
        current_key, fields = None, {}
        try:
            with tarfile.open(self.path, mode="r:") as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, field = base_plus_ext(member.name)
                    if key is None or field is None:
                        continue
                    if key != current_key:
                        if current_key is not None:
                            self.samples.append(SampleEntry(current_key, fields))
                        current_key, fields = key, {}
                    fields[field] = (member.offset_data, member.size)
        except (tarfile.TarError, OSError, EOFError) as exc:
            # A truncated or damaged tar keeps the samples before the damage.
            self.error = f"{type(exc).__name__}: {exc}"
            fields = {}  # the sample being read when the damage hit is incomplete
        if current_key is not None and fields:
            self.samples.append(SampleEntry(current_key, fields))
        size = os.path.getsize(self.path)
        for entry in self.samples:
            cut = [f for f, (off, n) in entry.fields.items() if off + n > size]
            for field in cut:  # data past the end of a truncated file
                del entry.fields[field]
                self.error = self.error or f"truncated tar: {entry.key}.{field} is incomplete"
        self.samples = [e for e in self.samples if e.fields]
        if self.error:
            log.warning("shard %s is damaged (%s); using its %d readable samples", self.path, self.error,
                        len(self.samples))

    def __len__(self) -> int:
        return len(self.samples)

    def read(self, index: int, handle=None) -> tuple[str, dict[str, bytes]]:
        """(key, {field: bytes}) of sample `index`; `handle` is an open binary file of this tar."""
        entry = self.samples[index]
        own = handle is None
        f = open(self.path, "rb") if own else handle
        try:
            out = {}
            for field, (offset, size) in entry.fields.items():
                f.seek(offset)
                data = f.read(size)
                if len(data) != size:
                    raise ShardError(f"{self.path}: sample {entry.key!r} field {field!r} is truncated")
                out[field] = data
            return entry.key.rsplit("/", 1)[-1], out
        finally:
            if own:
                f.close()


def shard_keys(paths: Iterable[str]) -> list[str]:
    """Every sample key in these shards, in file order (for checks and tools)."""
    return [e.key.rsplit("/", 1)[-1] for p in paths for e in TarIndex(p).samples]
