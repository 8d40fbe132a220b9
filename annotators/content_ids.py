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

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from graph200k.dataset_dir import DatasetDir
from graph200k.shardio import write_json

from .inputs.sources import UNREADABLE, SourcePlan, file_hash

HASH_THREADS = 8  # reading is I/O-bound (network filesystems); hashlib releases the GIL


def _stat_key(path: str) -> list[int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]


class ContentIds:
    """Gives each shard of a plan its files' hashes, from the cache in the dataset folder `dataset`
    (`DatasetDir.hashes`) where it still holds; without a folder, nothing is cached."""

    def __init__(self, dataset: Path | None):
        self.folder = DatasetDir(dataset) if dataset is not None else None
        self.hashed = 0  # files read by this object (0 on a rerun over an unchanged tree)
        self._changed: dict[str, dict[str, list]] = {}  # shard -> its cache, where it changed

    def _cache_file(self, shard: str) -> Path | None:
        return self.folder.hashes(shard) if self.folder is not None else None

    def _load(self, shard: str) -> dict[str, list]:
        path = self._cache_file(shard)
        try:
            cache = json.loads(path.read_text(encoding="utf-8")) if path else {}
        except (OSError, json.JSONDecodeError):
            return {}
        return cache if isinstance(cache, dict) else {}

    def attach(self, plan: SourcePlan) -> None:
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
            if self.folder is not None:
                write_json(self._cache_file(shard), entries)
        self._changed = {}
