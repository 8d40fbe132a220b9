"""Content hashes of input files, so that a source shard's id depends on bytes, not on paths or mtimes.

Hashing every input on every run would read the whole input again, so each
hash is cached by the file's path, size, mtime, ctime and inode, per source
shard, in `<dataset>/source/<shard>.hashes.json`. A rerun over an unchanged
tree reads no input byte (one `stat` per file); the same tree under another
path (a cluster mount, a copy, a relative path) or with new mtimes is hashed
once (each byte read once, in `HASH_THREADS` threads), then is up to date; a
file whose bytes changed changes its shard's id, and only that shard is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

from graph200k.shardio import write_json

if TYPE_CHECKING:
    from .inputs.sources import SourcePlan

HASH_THREADS = 8  # reading is I/O-bound (network filesystems); hashlib releases the GIL
UNREADABLE = "unreadable:"


def file_hash(path: str) -> str:
    """sha256 of the file's bytes (32 hex digits), or `unreadable:<errno>` / `not a file` when it cannot
    be read (ingest then records that sample's failure; the marker is never cached)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a pipe or device must not block planning
    except OSError as err:
        return f"{UNREADABLE}{err.errno}"
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return f"{UNREADABLE}not a file"
        try:
            return hashlib.file_digest(f, "sha256").hexdigest()[:32]
        except OSError as err:
            return f"{UNREADABLE}{err.errno}"


def _stat_key(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class ContentIds:
    """Gives each shard of a plan its files' hashes, from the cache in `cache_dir` where it still holds."""

    def __init__(self, cache_dir: Path | None):
        self.cache_dir = cache_dir
        self.hashed = 0  # files read by this object (0 on a rerun over an unchanged tree)
        self._changed: dict[str, dict[str, list]] = {}  # shard -> its cache, where it changed

    def _cache_file(self, shard: str) -> Path | None:
        return self.cache_dir / f"{shard}.hashes.json" if self.cache_dir else None

    def _load(self, shard: str) -> dict[str, list]:
        path = self._cache_file(shard)
        try:
            cache = json.loads(path.read_text(encoding="utf-8")) if path else {}
        except (OSError, json.JSONDecodeError):
            return {}
        return cache if isinstance(cache, dict) else {}

    def attach(self, plan: "SourcePlan") -> None:
        """Set `shard.hashes` for every shard of `plan`, so that its fingerprint reads nothing more
        (`save` writes the caches back)."""
        files = {s.shard: s.input_files() for s in plan.shards}
        keys = {p: _stat_key(p) for paths in files.values() for p in paths}
        cached = {s: self._load(s) for s in files}
        known: dict[str, str] = {}
        for shard, paths in files.items():
            for p in paths:
                entry = cached[shard].get(p)
                if keys[p] is not None and isinstance(entry, list) and entry[:-1] == keys[p]:
                    known[p] = entry[-1]
        todo = sorted(p for p in keys if p not in known)
        if todo:
            with ThreadPoolExecutor(min(HASH_THREADS, len(todo))) as pool:
                known.update(zip(todo, pool.map(file_hash, todo)))
        self.hashed += len(todo)
        for shard in plan.shards:
            shard.hashes = {p: known[p] for p in files[shard.shard]}
            entries = {p: [*keys[p], known[p]] for p in files[shard.shard]
                       if keys[p] is not None and not known[p].startswith(UNREADABLE)}
            if entries != cached[shard.shard]:
                self._changed[shard.shard] = entries

    def save(self) -> None:
        """Write the caches that `attach` changed."""
        for shard, entries in self._changed.items():
            if self.cache_dir is not None:
                write_json(self._cache_file(shard), entries)
        self._changed = {}
