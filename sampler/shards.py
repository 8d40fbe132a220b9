"""Training shards on disk: which tars a spec names, and random access to their samples.

A shard is a webdataset tar (docs/ARCHITECTURE.md, "Contract: training
shards"). The sampler indexes each tar once by reading its member headers
(tarfile seeks over the data), so that a sample can be read, or skipped, by
its position: resuming mid-epoch costs a few header reads, not a re-read of
everything before the resume point. The index also says where each field
lies, so the pool can hold (path, offset, size) references and `ShardFiles`
read a field's bytes only when a grid shows it.
"""

from __future__ import annotations

import glob
import logging
import os
import tarfile
from collections import OrderedDict
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

    @property
    def name(self) -> str:
        """The sample's key without the directories of its member names (what grids report)."""
        return self.key.rsplit("/", 1)[-1]


def _identity(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_ino, st.st_size, st.st_mtime_ns


class TarIndex:
    """The samples of one tar, in file order, grouped by key as webdataset groups them.

    `identity` is the tar's (inode, size, mtime) when it was indexed: offsets read
    later are only trusted while the file still has it."""

    def __init__(self, path: str):
        self.path = path
        self.samples: list[SampleEntry] = []
        self.error: str | None = None
        self.identity = _identity(os.stat(path))
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


class ShardFiles:
    """Reads fields of indexed tars by (path, offset, size), when a grid needs them.

    One open handle per shard (the `max_open` most recently used), opened on the
    first read in the process that reads: a pickled copy (a DataLoader worker's
    dataset) carries no handle and no cached bytes. Reads use `os.pread`, so a
    handle shared by forked processes has no file position to race on. The last
    `cache_bytes` of fields read are kept (least recently used out), so a field
    the planner reads and the renderer decodes is read once.

    A field is checked before it is trusted: the tar must still have the identity
    it had when indexed, and the tar header before the field must be a valid one of
    the field's size. Otherwise, or on an I/O error, `ShardError` names the tar."""

    def __init__(self, indexes: dict[str, TarIndex], *, max_open: int = 64, cache_bytes: int = 64 << 20):
        if max_open < 1:
            raise ValueError(f"max_open must be >= 1, got {max_open}")
        self._indexes = indexes
        self.max_open, self.cache_bytes = max_open, cache_bytes
        self._handles: OrderedDict[str, object] = OrderedDict()
        self._cache: OrderedDict[tuple[str, int], bytes] = OrderedDict()
        self._cached = 0

    def __getstate__(self) -> dict:
        return {"_indexes": self._indexes, "max_open": self.max_open, "cache_bytes": self.cache_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["_indexes"], max_open=state["max_open"], cache_bytes=state["cache_bytes"])

    @property
    def cached_bytes(self) -> int:
        """Bytes held by the cache now (at most `cache_bytes`)."""
        return self._cached

    def read(self, path: str, offset: int, size: int) -> bytes:
        """The `size` bytes of the field at `offset` of tar `path` (cached)."""
        hit = self._cache.get((path, offset))
        if hit is not None:
            self._cache.move_to_end((path, offset))
            return hit
        data = self._pread(path, offset, size, size)
        if size <= self.cache_bytes:
            self._cache[(path, offset)] = data
            self._cached += size
            while self._cached > self.cache_bytes:
                _, old = self._cache.popitem(last=False)
                self._cached -= len(old)
        return data

    def peek(self, path: str, offset: int, size: int, n: int) -> bytes:
        """The first `n` bytes of the field (an image header, a json record), not cached."""
        hit = self._cache.get((path, offset))
        return hit[:n] if hit is not None else self._pread(path, offset, size, min(n, size))

    def _pread(self, path: str, offset: int, size: int, n: int) -> bytes:
        try:
            fd = self._handle(path).fileno()
            if _identity(os.fstat(fd)) != self._indexes[path].identity:
                raise ShardError(f"{path} is not the file that was indexed (its inode, size or modification "
                                 "time differ): it was rewritten; restart the run to index it again")
            try:
                header = tarfile.TarInfo.frombuf(os.pread(fd, tarfile.BLOCKSIZE, offset - tarfile.BLOCKSIZE),
                                                 "utf-8", "surrogateescape")
            except tarfile.HeaderError as exc:
                raise ShardError(f"{path}: no tar header before offset {offset} ({exc}); the tar changed "
                                 "since it was indexed") from None
            if header.size != size:
                raise ShardError(f"{path}: the member at offset {offset} has {header.size} bytes, the index "
                                 f"says {size}; the tar changed since it was indexed")
            data = os.pread(fd, n, offset)
        except OSError as exc:
            raise ShardError(f"{path}: cannot read {n} bytes at offset {offset}: {exc}") from exc
        if len(data) != n:
            raise ShardError(f"{path}: the field at offset {offset} is truncated ({len(data)} of {n} bytes)")
        return data

    def _handle(self, path: str):
        handle = self._handles.get(path)
        if handle is not None:
            self._handles.move_to_end(path)
            return handle
        handle = self._handles[path] = open(path, "rb", buffering=0)
        while len(self._handles) > self.max_open:
            self._handles.popitem(last=False)[1].close()
        return handle

    def close(self) -> None:
        """Close every handle and drop the cache (a later read reopens)."""
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        self._cache.clear()
        self._cached = 0


def shard_keys(paths: Iterable[str]) -> list[str]:
    """Every sample key in these shards, in file order (for checks and tools)."""
    return [e.name for p in paths for e in TarIndex(p).samples]
