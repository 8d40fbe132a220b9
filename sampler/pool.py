"""The in-memory pool: the window of the stream that grids draw their rows from.

Samples are held as references, not bytes: what planning needs (key, node set,
caption, item, metadata, the target's size) plus where each field lies in its
tar (`SampleFields`), read when a grid uses the field. A pool of 1000
Graph200K samples (~5 MB encoded each) would otherwise hold ~5 GB per worker.
On entry only the json field and the target's header are read. Each sample's
node set is computed then, from its field names and the reference quality
rule (`graph200k.layout.usable_nodes`, the one packing applies), so finding
the samples that carry a task's nodes is a set test.
"""

from __future__ import annotations

import json
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Iterable, Iterator, Mapping

from PIL import UnidentifiedImageError

from graph200k import DEFAULT_NODES, NodeRegistry, Task
from graph200k.layout import METADATA_FIELD, usable_nodes

from .cells import image_size
from .shards import SampleEntry, ShardError, ShardFiles


class BadSample(ValueError):
    """A sample that cannot be used: a field it needs is missing or unreadable."""


class UnreadableSample(ValueError):
    """A field of a pooled sample turned out not to decode; `key` names the sample."""

    def __init__(self, key: str, message: str):
        super().__init__(message)
        self.key = key


class SampleFields(Mapping[str, bytes]):
    """A pooled sample's fields by name; a field's bytes are read from its tar on access.

    Reads go through the process's `ShardFiles` (its handles and small cache); a
    field that cannot be read any more (the tar changed or is damaged) raises
    `UnreadableSample`, which the planner and renderer already treat as a sample
    to exclude."""

    __slots__ = ("key", "path", "entry", "files")

    def __init__(self, key: str, path: str, entry: SampleEntry, files: ShardFiles):
        self.key, self.path, self.entry, self.files = key, path, entry, files

    def __getitem__(self, name: str) -> bytes:
        offset, size = self.entry.fields[name]
        try:
            return self.files.read(self.path, offset, size)
        except ShardError as exc:
            raise UnreadableSample(self.key, f"sample {self.key!r}: field {name!r} cannot be read ({exc})") from exc

    def peek(self, name: str, n: int | None = None) -> bytes:
        """The first `n` bytes of field `name` (all of it by default), read without
        entering the cache: what pool entry reads once (json, an image header)."""
        offset, size = self.entry.fields[name]
        try:
            return self.files.peek(self.path, offset, size, size if n is None else n)
        except ShardError as exc:
            raise UnreadableSample(self.key, f"sample {self.key!r}: field {name!r} cannot be read ({exc})") from exc

    def __iter__(self) -> Iterator[str]:
        return iter(self.entry.fields)

    def __len__(self) -> int:
        return len(self.entry.fields)

    def __contains__(self, name: object) -> bool:
        return name in self.entry.fields

    def __repr__(self) -> str:
        return f"SampleFields({self.key!r}, {self.path!r}, {sorted(self.entry.fields)})"


@dataclass
class PoolSample:
    """One sample held in the pool: its fields (references, see `SampleFields`) plus what
    was parsed from them."""

    key: str
    fields: Mapping[str, bytes]
    nodes: frozenset[str]
    target: str = "target.jpg"  # the target's field name
    target_size: tuple[int, int] = (0, 0)  # (w, h), from its header
    caption: str = ""
    item: str = ""
    meta: dict = field(default_factory=dict)


def _target_field(fields: Iterable[str]) -> str | None:
    return next((f for f in fields if f.split(".")[0] == "target" and f.count(".") == 1), None)


HEADER_BYTES = 1 << 16  # an image's size is in its first bytes (JPEG: after EXIF/ICC, rarely past 64 KiB)


def _image_size(fields: Mapping[str, bytes], name: str) -> tuple[int, int]:
    """(w, h) of image field `name`, reading only its header where the fields allow it."""
    if isinstance(fields, SampleFields):
        try:
            return image_size(fields.peek(name, HEADER_BYTES))
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
            pass  # a header past HEADER_BYTES, or a format that parses whole: read it all
    return image_size(fields[name])


def parse_sample(key: str, fields: Mapping[str, bytes], nodes: NodeRegistry = DEFAULT_NODES) -> PoolSample:
    """A `PoolSample`, or `BadSample` naming what is wrong (no json, bad json, no target).

    `fields` is kept as given: pass a `SampleFields` so the pool holds references
    (only the json field and the target's header are read here)."""
    if METADATA_FIELD not in fields:
        raise BadSample(f"sample {key!r} has no {METADATA_FIELD!r} field")
    try:
        raw = fields.peek(METADATA_FIELD) if isinstance(fields, SampleFields) else fields[METADATA_FIELD]
        meta = json.loads(raw)
    except UnreadableSample as exc:
        raise BadSample(str(exc)) from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadSample(f"sample {key!r}: its json field does not parse ({exc})") from None
    if not isinstance(meta, dict):
        raise BadSample(f"sample {key!r}: its json field is not an object")
    target = _target_field(fields)
    if target is None:
        raise BadSample(f"sample {key!r} has no target image field")
    try:
        target_size = _image_size(fields, target)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise BadSample(f"sample {key!r}: {target} is not a readable image ({exc})") from None
    present = usable_nodes(fields, meta, nodes)
    return PoolSample(key=key, fields=fields, nodes=frozenset(present), target=target, target_size=target_size,
                      caption=str(meta.get("caption") or ""), item=str(meta.get("item") or ""), meta=meta)


class Pool:
    """A bounded window of parsed samples, oldest first."""

    def __init__(self, capacity: int):
        if capacity < 1:
            raise ValueError(f"pool capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._samples: deque[tuple[int, PoolSample | None]] = deque()
        self._origins: deque[object] = deque()
        self._signatures: Counter[frozenset[str]] = Counter()

    def __len__(self) -> int:
        return sum(1 for _, s in self._samples if s is not None)

    def push(self, position: int, sample: PoolSample | None, origin: object = None) -> None:
        """Add the sample at stream `position` (None for a skipped one, which still
        occupies its place so the window stays a function of positions); `origin`
        says where it was read from, so a later epoch can reuse it (`by_origin`)."""
        self._samples.append((position, sample))
        self._origins.append(origin)
        if sample is not None:
            self._signatures[sample.nodes] += 1
        while len(self._samples) > self.capacity:
            _, old = self._samples.popleft()
            self._origins.popleft()
            if old is not None:
                self._signatures[old.nodes] -= 1
                if not self._signatures[old.nodes]:
                    del self._signatures[old.nodes]

    def signatures(self) -> frozenset[frozenset[str]]:
        """The distinct node sets in the pool (few; used to find servable tasks)."""
        return frozenset(self._signatures)

    def carriers(self, task: Task, exclude: set[str] = frozenset()) -> list[PoolSample]:
        """Samples that carry every node of `task`, in pool order."""
        need = set(task.nodes)
        return [s for _, s in self._samples if s is not None and need <= s.nodes and s.key not in exclude]

    def by_origin(self) -> dict[object, PoolSample | None]:
        """The held samples by where they were read from."""
        return {o: s for o, (_, s) in zip(self._origins, self._samples) if o is not None}

    @property
    def window(self) -> tuple[int, int]:
        """Stream positions [lo, hi) the pool holds."""
        if not self._samples:
            return (0, 0)
        return (self._samples[0][0], self._samples[-1][0] + 1)
