"""Inputs -> a deterministic plan of source shards.

Three kinds of input, detected from the path:

- a folder laid out like an unpacked webdataset (`<key>.jpg`, `<key>.json`,
  `<key>.<node>.<ext>`, ...; see samples/README.md);
- webdataset shards (a `.tar`, a brace pattern, or a folder of `*.tar`) with
  the same field names: one source shard per input tar;
- Hugging Face `datasets` files ("arrow"): the Graph200K release's Arrow
  files, any `save_to_disk` folder (a Dataset or a DatasetDict), Parquet files
  (`graph200k export`, the Hub's layout), or one such file
  (`annotators.inputs.tables`); keys from a `__key__` column, else
  `<file stem>-<row>` as in the release's examples. Columns are read by their
  release names (`annotators.inputs.fields`) unless `--image-col` /
  `--caption-col` map them (`annotators.inputs.columns`).

Planning only lists names (no pixel is read), gives every input its key
(`annotators.inputs.keys`) and cuts the inputs into source shards of at most
`samples_per_shard` samples, numbered `000000`, `000001`, ... The plan is the
same on every run over the same input, so a rerun finds its completed shards.

Inputs stay inside their folder: a folder file that is a symbolic link out of
the input root keeps its place in its sample but is not read (the sample
records why) and linked folders outside the root are not entered, unless
`follow_symlinks`; links that stay inside the root are read as usual.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

from graph200k.catalog import DEFAULT_NODES
from graph200k.nodes import NodeRegistry

from .columns import ColumnMap, column_problem
from .fields import IMAGE_EXTS, resolve_field
from .keys import Collision, assign_keys
from .tables import KEY_COLUMN, TableError, is_table, num_rows, read_column, schema, table_files

DEFAULT_SAMPLES_PER_SHARD = 1000
UNREADABLE = "unreadable:"


def file_hash(path: str) -> str:
    """sha256 of the file's bytes (32 hex digits), or `unreadable:<errno>` / `not a file` when it cannot
    be read (ingest then records that sample's failure; `content_ids` never caches the marker)."""
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


class InputError(ValueError):
    """The input path is missing, empty or of an unknown kind; the message says which."""


@dataclass
class ShardPlan:
    """One source shard to write: its id and what goes in it."""

    shard: str
    kind: str  # "folder" | "webdataset" | "arrow"
    items: list[dict] = field(default_factory=list)
    url: str | None = None  # the input tar (webdataset) or .arrow/.parquet file (arrow)
    start: int = 0
    stop: int = 0
    hashes: dict[str, str] = field(default_factory=dict)  # input file -> content hash (`content_ids`)
    columns: dict[str, str] = field(default_factory=dict)  # arrow: `ColumnMap.to_json()` (--image-col, ...)

    @property
    def fingerprint(self) -> str:
        """The shard's content id: its samples' keys and names, each read file's content hash and the
        cut (rows of an Arrow file), never where the files sit or their mtimes. The same files under
        another path give the same id; one changed byte gives another, so only that shard is redone.
        Hashes missing from `hashes` (see `content_ids.ContentIds.attach`) are computed here."""
        def content(path: str) -> str:
            if path not in self.hashes:
                self.hashes[path] = file_hash(path)
            return self.hashes[path]

        if self.kind == "folder":
            what = [self.kind, [{"key": item["key"], "original": item["original"],
                                 "files": {f: content(p) for f, p in sorted(item["files"].items())},
                                 "refused": sorted(item.get("refused", ()))} for item in self.items]]
        else:
            what = [self.kind, content(self.url) if self.url else None, self.start, self.stop, self.items]
            what += [self.columns] if self.columns else []  # unmapped plans keep the ids they had
        return hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]

    def input_files(self) -> list[str]:
        """The files this shard reads (their content is its id)."""
        if self.kind == "folder":
            return sorted(p for item in self.items for p in item["files"].values())
        return [self.url] if self.url else []

    def to_json(self) -> dict:
        return {"shard": self.shard, "kind": self.kind, "url": self.url, "start": self.start,
                "stop": self.stop, "items": self.items, "hashes": self.hashes, "columns": self.columns}

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
        if is_table(path):
            return "arrow"
        raise InputError(f"input file {text!r} is neither a webdataset .tar nor a `datasets` .arrow or "
                         ".parquet file")
    if any(path.rglob("*.arrow")) or any(path.rglob("*.parquet")):
        return "arrow"
    if any(path.glob("*.tar")):
        return "webdataset"
    return "folder"


def plan_sources(path: str | os.PathLike, samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
                 nodes: NodeRegistry = DEFAULT_NODES, follow_symlinks: bool = False,
                 columns: ColumnMap | None = None) -> SourcePlan:
    """The source-shard plan for an input path (folder, webdataset tars, Arrow or Parquet files).

    `follow_symlinks`: read folder files and enter folders that links lead to outside the input root.
    `columns`: which table column is the target image and which the caption (`--image-col`, `--caption-col`)."""
    if samples_per_shard < 1:
        raise InputError(f"samples per shard must be >= 1, got {samples_per_shard}")
    path = Path(path)
    columns = columns or ColumnMap()
    kind = detect_kind(path)
    if kind != "arrow" and not columns.empty:
        raise InputError(f"--image-col/--caption-col name columns of a `datasets` input (Arrow or Parquet); "
                         f"input {str(path)!r} is {kind} input: name its files <key>.jpg and <key>.txt instead")
    if kind == "folder":
        plan = _plan_folder(path, samples_per_shard, nodes, follow_symlinks)
    elif kind == "arrow":
        plan = _plan_arrow(path, samples_per_shard, nodes, columns)
    else:
        plan = _plan_webdataset(path, samples_per_shard, nodes)
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


def is_inside(path: str, root: str) -> bool:
    """Whether the resolved `path` is `root` or lies under it (both resolved with os.path.realpath)."""
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _list_folder(root: Path, follow_symlinks: bool) -> tuple[list[str], dict[str, str], list[str]]:
    """(regular files, root-relative; those of them that links lead outside the root -> why they are
    not read; entries that are not read at all: dangling links, devices, pipes, linked folders outside)."""
    real_root = os.path.realpath(root)
    files, outside, skipped = [], {}, []
    entered: set[str] = set()
    for folder, dirs, names in os.walk(root, followlinks=True):
        entered.add(os.path.realpath(folder))
        keep = []
        for name in sorted(dirs):
            full = os.path.join(folder, name)
            real = os.path.realpath(full)
            if name.startswith(".") or real in entered:
                continue
            if os.path.islink(full) and is_inside(real, real_root):
                continue  # an alias of a folder that is listed under its own name
            if not follow_symlinks and not is_inside(real, real_root):
                skipped.append(f"{Path(full).relative_to(root).as_posix()}/ (a link to {real}, outside the "
                               "input folder; --follow-symlinks enters it)")
                continue
            keep.append(name)
        dirs[:] = keep
        for name in names:
            full = os.path.join(folder, name)
            rel = Path(full).relative_to(root).as_posix()
            if name.startswith("."):
                continue
            if not os.path.isfile(full):
                skipped.append(rel)
                continue
            files.append(rel)
            real = os.path.realpath(full)
            if not follow_symlinks and not is_inside(real, real_root):
                outside[rel] = (f"{full} is a link to {real}, outside the input folder {root}; not read "
                                "(pass --follow-symlinks to read it)")
    return sorted(files), outside, sorted(skipped)


def _place(item: dict, fld: str, root: Path, rel: str, outside: dict[str, str]) -> None:
    """File `rel` is field `fld` of `item`: read it, or record why it is not read (item["refused"])."""
    if rel in outside:
        item.setdefault("refused", {})[fld] = {"file": str(root / rel), "reason": outside[rel]}
    else:
        item["files"][fld] = str(root / rel)


def _plan_folder(root: Path, per_shard: int, nodes: NodeRegistry, follow_symlinks: bool = False) -> SourcePlan:
    files, outside, skipped = _list_folder(root, follow_symlinks)
    # A file is a target when its stem has no other reading; `<stem>.<field>` belongs to
    # the target `<stem>.<image ext>` when `<field>` names a node, a reference or metadata,
    # and is an orphan (reported, not a target) when that target does not exist.
    image_stems: dict[str, list[str]] = {}
    for rel in files:
        stem, dot, ext = rel.rpartition(".")
        if dot and ext.lower() in IMAGE_EXTS and stem:
            image_stems.setdefault(stem, []).append(rel)
    owner: dict[str, tuple[str, str]] = {}  # file -> (stem, field)
    orphans: set[str] = set()
    for rel in files:
        readings = [(stem, fld) for stem, fld in _split_name(rel)
                    if (role := resolve_field(fld, nodes)) is not None and role.kind != "target"]
        owned = [(stem, fld) for stem, fld in readings if stem in image_stems]
        if owned:
            owner[rel] = owned[0]
        elif readings:
            orphans.add(rel)
    targets = [rel for rel in files if rel not in owner and rel not in orphans
               and rel.rpartition(".")[2].lower() in IMAGE_EXTS and rel.rpartition(".")[0]]
    stem_of = {rel: rel.rpartition(".")[0] for rel in targets}
    keys, collisions = assign_keys(stem_of)
    first_target: dict[str, str] = {}
    for rel in sorted(targets):
        first_target.setdefault(stem_of[rel], rel)
    items = {rel: {"key": keys[rel], "original": rel, "files": {}} for rel in targets}
    for rel in targets:
        _place(items[rel], rel.rpartition(".")[2], root, rel, outside)
    unmatched = list(skipped)
    for rel, (stem, fld) in owner.items():
        target = first_target.get(stem)
        if target is None:
            unmatched.append(rel)
            continue
        _place(items[target], fld, root, rel, outside)
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
    unmatched: list[str] = []
    for url in urls:
        try:
            with tarfile.open(url) as tar:
                names = [m.name for m in tar.getmembers() if not m.isdir()]  # links too: read or recorded
        except (tarfile.TarError, OSError) as err:
            raise InputError(f"webdataset shard {url!r} cannot be read: {err}") from None
        found: dict[str, None] = {}  # keys in order of first appearance; a key's members may be apart
        for name in names:
            prefix, _ = base_plus_ext(name)
            if not prefix:
                unmatched.append(f"{url}#{name}")  # no `<key>.<field>` reading
            elif not os.path.basename(prefix).startswith("__"):
                found.setdefault(prefix)
        tar_keys = list(found)
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
    return SourcePlan(str(path), "webdataset", shards, collisions, unmatched)


def _plan_arrow(path: Path, per_shard: int, nodes: NodeRegistry, columns: ColumnMap) -> SourcePlan:
    files = [path] if path.is_file() else table_files(path)
    rows: list[tuple[Path, int]] = []
    stems: dict[str, str] = {}
    for f in files:
        try:
            n, names = num_rows(f), schema(f)
            problem = column_problem(str(path), f, names, columns, nodes) if n else None
            saved = read_column(f, KEY_COLUMN) if KEY_COLUMN in names.names else [None] * n
        except TableError as err:
            raise InputError(str(err)) from None
        if problem:
            raise InputError(problem)
        rows.append((f, n))
        stems.update({f"{f}#{r}": f"{f.stem}-{r}" if saved[r] is None else str(saved[r]) for r in range(n)})
    keys, collisions = assign_keys(stems)
    shards = []
    for f, n in rows:
        for start in range(0, n, per_shard):
            stop = min(n, start + per_shard)
            items = [{"key": keys[f"{f}#{r}"], "original": f"{f.name}#{r}"} for r in range(start, stop)]
            shards.append(ShardPlan(f"{len(shards):06d}", "arrow", items, url=str(f), start=start, stop=stop,
                                    columns=columns.to_json()))
    return SourcePlan(str(path), "arrow", shards, collisions, [])
