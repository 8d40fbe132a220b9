"""Inputs -> a deterministic plan of source shards.

Three kinds of input, detected from the path:

- a folder laid out like an unpacked webdataset (`<key>.jpg`, `<key>.json`,
  `<key>.<node>.<ext>`, ...; see samples/README.md);
- webdataset shards (a `.tar`, a brace pattern, or a folder of `*.tar`) with
  the same field names: one source shard per input tar;
- the Graph200K release as Hugging Face `datasets` Arrow files (a folder
  holding `*.arrow`, e.g. one written by `save_to_disk`, or one `.arrow` file),
  keys `<arrow file stem>-<row>` as in the release's examples.

Planning only lists names (no pixel is read), gives every input its key
(`annotators.keys`) and cuts the inputs into source shards of at most
`samples_per_shard` samples, numbered `000000`, `000001`, ... The plan is the
same on every run over the same input, so a rerun finds its completed shards.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from graph200k.catalog import DEFAULT_NODES
from graph200k.nodes import NodeRegistry

from .fields import IMAGE_EXTS, resolve_field
from .keys import Collision, assign_keys

DEFAULT_SAMPLES_PER_SHARD = 1000


class InputError(ValueError):
    """The input path is missing, empty or of an unknown kind; the message says which."""


@dataclass
class ShardPlan:
    """One source shard to write: its id and what goes in it."""

    shard: str
    kind: str  # "folder" | "webdataset" | "arrow"
    items: list[dict] = field(default_factory=list)
    url: str | None = None  # the input tar (webdataset) or .arrow file (arrow)
    start: int = 0
    stop: int = 0

    @property
    def fingerprint(self) -> str:
        """Changes when the shard's inputs change (names, sizes, mtimes), so stale shards are redone."""
        h = hashlib.sha1()
        h.update(json.dumps([self.kind, self.url, self.start, self.stop, self.items], sort_keys=True).encode())
        for path in self._paths():
            try:
                st = os.stat(path)
                h.update(f"{path}:{st.st_size}:{st.st_mtime_ns}".encode())
            except OSError:
                h.update(f"{path}:missing".encode())
        return h.hexdigest()[:16]

    def _paths(self) -> list[str]:
        if self.kind == "folder":
            return sorted(p for item in self.items for p in item["files"].values())
        return [self.url] if self.url else []

    def to_json(self) -> dict:
        return {"shard": self.shard, "kind": self.kind, "url": self.url, "start": self.start,
                "stop": self.stop, "items": self.items}

    @classmethod
    def from_json(cls, d: dict) -> "ShardPlan":
        return cls(**d)


@dataclass
class SourcePlan:
    """Every source shard of an input, plus the inputs the plan could not place."""

    input: str
    kind: str
    shards: list[ShardPlan]
    collisions: list[Collision]
    unmatched: list[str]  # files that belong to no sample (reported, never silently dropped)

    @property
    def num_inputs(self) -> int:
        return sum(len(s.items) for s in self.shards)


def detect_kind(path: Path) -> str:
    text = str(path)
    if "{" in text and ".tar" in text:
        return "webdataset"
    if not path.exists():
        raise InputError(f"input {text!r} does not exist")
    if path.is_file():
        if path.suffix == ".tar":
            return "webdataset"
        if path.suffix == ".arrow":
            return "arrow"
        raise InputError(f"input file {text!r} is neither a webdataset .tar nor an Arrow .arrow file")
    if any(path.rglob("*.arrow")):
        return "arrow"
    if any(path.glob("*.tar")):
        return "webdataset"
    return "folder"


def plan_sources(path: str | os.PathLike, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
                 nodes: NodeRegistry = DEFAULT_NODES) -> SourcePlan:
    """The source-shard plan for an input path (folder, webdataset tars or Arrow files)."""
    if samples_per_shard < 1:
        raise InputError(f"samples per shard must be >= 1, got {samples_per_shard}")
    path = Path(path)
    kind = detect_kind(path)
    planner = {"folder": _plan_folder, "webdataset": _plan_webdataset, "arrow": _plan_arrow}[kind]
    plan = planner(path, samples_per_shard, nodes)
    if not plan.shards:
        raise InputError(f"input {str(path)!r} ({kind}) holds no samples")
    return plan


def _chunks(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def _split_name(rel: str) -> list[tuple[str, str]]:
    """`dir/a.b.jpg` -> candidate (stem, field) splits, leftmost first."""
    folder, _, base = rel.rpartition("/")
    parts = base.split(".")
    prefix = f"{folder}/" if folder else ""
    return [(prefix + ".".join(parts[:k]), ".".join(parts[k:])) for k in range(1, len(parts))]


def _plan_folder(root: Path, per_shard: int, nodes: NodeRegistry) -> SourcePlan:
    files = sorted(
        p.relative_to(root).as_posix() for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    # A file is a target when its stem has no other reading; `<stem>.<field>` belongs to
    # the target `<stem>.<image ext>` when `<field>` names a node, a reference or metadata.
    image_stems: dict[str, list[str]] = {}
    for rel in files:
        stem, dot, ext = rel.rpartition(".")
        if dot and ext.lower() in IMAGE_EXTS and stem:
            image_stems.setdefault(stem, []).append(rel)
    owner: dict[str, tuple[str, str]] = {}  # file -> (stem, field)
    for rel in files:
        for stem, fld in _split_name(rel):
            role = resolve_field(fld, nodes)
            if role is not None and role.kind != "target" and stem in image_stems:
                owner[rel] = (stem, fld)
                break
    targets = [rel for rel in files if rel not in owner and rel.rpartition(".")[2].lower() in IMAGE_EXTS
               and rel.rpartition(".")[0]]
    stem_of = {rel: rel.rpartition(".")[0] for rel in targets}
    keys, collisions = assign_keys(stem_of)
    first_target: dict[str, str] = {}
    for rel in sorted(targets):
        first_target.setdefault(stem_of[rel], rel)
    items = {rel: {"key": keys[rel], "original": rel, "files": {rel.rpartition(".")[2]: str(root / rel)}}
             for rel in targets}
    unmatched = []
    for rel, (stem, fld) in owner.items():
        target = first_target.get(stem)
        if target is None:
            unmatched.append(rel)
            continue
        items[target]["files"][fld] = str(root / rel)
    unmatched += [rel for rel in files if rel not in owner and rel not in items]
    ordered = [items[rel] for rel in sorted(items, key=lambda r: items[r]["key"])]
    shards = [ShardPlan(f"{i:06d}", "folder", chunk) for i, chunk in enumerate(_chunks(ordered, per_shard))]
    return SourcePlan(str(root), "folder", shards, collisions, sorted(unmatched))


def _tar_urls(path: Path) -> list[str]:
    from webdataset.shardlists import expand_urls  # imported here: webdataset imports torch

    if path.is_dir():
        return sorted(str(p) for p in path.glob("*.tar"))
    urls = expand_urls(str(path))
    for url in urls:
        if not os.path.isfile(url):
            raise InputError(f"webdataset shard {url!r} does not exist (from {str(path)!r})")
    return urls


def _plan_webdataset(path: Path, per_shard: int, nodes: NodeRegistry) -> SourcePlan:
    from webdataset.tariterators import base_plus_ext

    urls = _tar_urls(path)
    per_tar: list[tuple[str, list[str]]] = []
    stems: dict[str, str] = {}
    for url in urls:
        try:
            with tarfile.open(url) as tar:
                names = [m.name for m in tar.getmembers() if m.isfile()]
        except (tarfile.TarError, OSError) as err:
            raise InputError(f"webdataset shard {url!r} cannot be read: {err}") from None
        tar_keys: list[str] = []
        for name in names:
            prefix, _ = base_plus_ext(name)
            if prefix and not os.path.basename(prefix).startswith("__") and prefix not in tar_keys:
                tar_keys.append(prefix)
        per_tar.append((url, tar_keys))
        for k in tar_keys:
            stems[f"{url}#{k}"] = k
    keys, collisions = assign_keys(stems)
    shards = []
    for i, (url, tar_keys) in enumerate(per_tar):
        if not tar_keys:
            continue
        items = [{"key": keys[f"{url}#{k}"], "original": k} for k in tar_keys]
        shards.append(ShardPlan(f"{len(shards):06d}", "webdataset", items, url=url))
    return SourcePlan(str(path), "webdataset", shards, collisions, [])


def _plan_arrow(path: Path, per_shard: int, nodes: NodeRegistry) -> SourcePlan:
    from datasets import Dataset

    files = [path] if path.is_file() else sorted(path.rglob("*.arrow"))
    rows: list[tuple[Path, int]] = []
    for f in files:
        try:
            n = Dataset.from_file(str(f)).num_rows
        except Exception as err:
            raise InputError(f"Arrow file {str(f)!r} cannot be read: {err}") from None
        rows.append((f, n))
    stems = {f"{f}#{r}": f"{f.stem}-{r}" for f, n in rows for r in range(n)}
    keys, collisions = assign_keys(stems)
    shards = []
    for f, n in rows:
        for start in range(0, n, per_shard):
            stop = min(n, start + per_shard)
            items = [{"key": keys[f"{f}#{r}"], "original": f"{f.name}#{r}"} for r in range(start, stop)]
            shards.append(ShardPlan(f"{len(shards):06d}", "arrow", items, url=str(f), start=start, stop=stop))
    return SourcePlan(str(path), "arrow", shards, collisions, [])
