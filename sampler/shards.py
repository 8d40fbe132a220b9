"""Training shards on disk: which tars a spec names, and random access to their samples.

A shard is a webdataset tar (docs/ARCHITECTURE.md, "Contract: training
shards"). The sampler indexes each tar once by reading its member headers
(tarfile seeks over the data), so that a sample can be read, or skipped, by
its position: resuming mid-epoch costs a few header reads, not a re-read of
everything before the resume point. The index also says where each field
lies, so the pool can hold (path, offset, size) references and `ShardFiles`
read a field's bytes only when a grid shows it.

A folder packed by `python -m graph200k shards` carries its index
(`index.jsonl`) and card (`dataset.json`: each tar's name, samples and bytes;
the index's size and hash). Its tars are only used when they agree with the
card (`check_pack`): none missing, none extra, each of the recorded size, and,
when a tar is indexed, of the recorded sample count. Tars without a card
(a folder of plain tars, a tar path, a pattern) are used as they are.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
import os
import tarfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from webdataset.shardlists import expand_urls
from webdataset.tariterators import base_plus_ext

from graph200k.dataset_dir import PACK_CARD, PACK_INDEX

log = logging.getLogger(__name__)


class ShardError(ValueError):
    """A shard spec names nothing readable, a tar cannot be indexed, or a packed folder disagrees with
    its index; the message says which."""


REPACK = "rerun `python -m graph200k shards --dataset DATASET` on the dataset it was packed from"
WHAT_SHARDS = ("give the folder `python -m graph200k shards --dataset DATASET` packed (DATASET/shards), a tar, "
               "a brace pattern or a glob")


def resolve_shards(spec: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """The tar paths named by `spec`: a directory (its `*.tar`, sorted), one path,
    a brace pattern (`train-{00000..00009}.tar`), a glob (`shards/*.tar`) or a list of these.

    A directory given through a symlink (a pack's `shards` -> `shards.<generation>`), alone or as the
    folder of a pattern (`shards/train-*.tar`), is resolved here, once, so a run reads one generation
    even when a re-pack switches the link meanwhile.
    Tars of a packed folder are checked against its card (`check_pack`)."""
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
            plain = os.path.normpath(item)
            folder = os.path.realpath(plain) if os.path.islink(plain) else item
            found = sorted(str(p) for p in Path(folder).glob("*.tar"))
            check_pack(folder, found, whole=True)
            if not found:
                raise ShardError(f"shard directory {item!r} holds no *.tar files; {WHAT_SHARDS}")
            paths.extend(found)
            continue
        for pattern in expand_urls(item):
            head, tail = os.path.split(pattern)
            if head and not glob.has_magic(head) and os.path.islink(os.path.normpath(head)):
                pattern = os.path.join(os.path.realpath(head), tail)  # one generation of a pack, as above
            matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else [pattern]
            if not matches:
                raise ShardError(f"shard pattern {pattern!r} matches no file; {WHAT_SHARDS}")
            paths.extend(_existing(matches, item))
            for folder in sorted({os.path.dirname(m) or "." for m in matches}):
                check_pack(folder, [m for m in matches if (os.path.dirname(m) or ".") == folder], whole=False)
    return paths


def pack_card(folder: str) -> dict | None:
    """The card of the pack in `folder`, or None for a folder of plain tars (no `index.jsonl`, and no
    `dataset.json` listing shards). A half-present pack (an index without its card) is an error."""
    card_path, index_path = os.path.join(folder, PACK_CARD), os.path.join(folder, PACK_INDEX)
    has_index = os.path.isfile(index_path)
    if not os.path.isfile(card_path):
        if has_index:
            raise ShardError(f"shard folder {folder} has {PACK_INDEX} but no {PACK_CARD} (an unfinished pack); "
                             f"{REPACK}")
        return None
    try:
        with open(card_path, encoding="utf-8") as f:
            card = json.load(f)
    except (OSError, ValueError) as exc:
        if not has_index:
            return None  # some other tool's dataset.json beside plain tars
        raise ShardError(f"{card_path} cannot be read ({exc}); {REPACK}") from None
    if not (isinstance(card, dict) and isinstance(card.get("shards"), list)):
        if not has_index:
            return None
        raise ShardError(f"{card_path} lists no shards: it is not the card of this pack; {REPACK}")
    if not has_index:
        raise ShardError(f"shard folder {folder} has {PACK_CARD} but no {PACK_INDEX} (an unfinished pack); {REPACK}")
    return card


def check_pack(folder: str, tars: list[str], *, whole: bool) -> None:
    """Raise `ShardError` when `tars` of `folder` disagree with its card: a listed tar missing (when
    `whole`, the folder is the spec), a tar it does not list, a tar of another size (another pack's,
    or damaged), or an index that is not the one the card was written with. No card: no check."""
    card = pack_card(folder)
    if card is None:
        return
    listed = {s.get("name"): s for s in card["shards"] if isinstance(s, dict)}
    names = {os.path.basename(t): t for t in tars}
    problems = []
    missing = sorted(set(listed) - set(names)) if whole else []
    if missing:
        problems.append(f"{_some(missing)} missing")
    extra = sorted(set(names) - set(listed))
    if extra:
        problems.append(f"{_some(extra)} not in its index")
    for name in sorted(set(names) & set(listed)):
        size, recorded = os.path.getsize(names[name]), listed[name].get("bytes")
        if size != recorded:
            problems.append(f"{name} has {size} bytes, the index says {recorded} (a tar of another pack, or "
                            "damaged)")
    problems += _index_problems(folder, card.get("index"))
    if problems:
        raise ShardError(f"shard folder {folder} disagrees with its index (generation "
                         f"{card.get('generation', 'unknown')}): {'; '.join(problems)}. Its files are not all "
                         f"from one pack (an older pack killed midway, or files copied in); {REPACK}")


def _index_problems(folder: str, record) -> list[str]:
    if not isinstance(record, dict):
        return []  # a card from before index records: nothing to compare
    path = os.path.join(folder, PACK_INDEX)
    size = os.path.getsize(path)
    if size != record.get("bytes"):
        return [f"{PACK_INDEX} has {size} bytes, the card says {record.get('bytes')} (an index of another pack)"]
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    if digest.hexdigest() != record.get("sha256"):
        return [f"{PACK_INDEX} is not the index the card was written with (its sha256 differs)"]
    return []


def _some(names: list[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _existing(paths: list[str], spec: str) -> list[str]:
    for path in paths:
        if not os.path.isfile(path):
            raise ShardError(f"shard {path!r} does not exist (from {spec!r}); {WHAT_SHARDS}")
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
        else:
            self._check_count()

    def _check_count(self) -> None:
        """A tar of a packed folder must hold the samples its card records (the size check at
        `resolve_shards` cannot see samples regrouped within the same bytes)."""
        folder, name = os.path.split(self.path)
        try:
            card = pack_card(folder or ".")
        except ShardError:
            return  # resolve_shards reports a broken pack; this tar alone is still readable
        if card is None:
            return
        entry = next((s for s in card["shards"] if isinstance(s, dict) and s.get("name") == name), None)
        if entry is not None and entry.get("samples") != len(self.samples):
            raise ShardError(f"{self.path} holds {len(self.samples)} samples, its index ({PACK_CARD}) says "
                             f"{entry.get('samples')}: it is not the tar that was packed; {REPACK}")

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
        except FileNotFoundError:
            raise ShardError(f"{path} was removed since it was indexed (a re-pack replaced it?); restart the "
                             "run to read the shards again") from None
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
